// RFC 6455 §4.2: the opening handshake, over real TCP against server.ts in
// this process, and checkUpgradeRequest, the rules alone. Every refusal must
// carry a one-line reason and end the TCP connection; every acceptance must
// carry the right Sec-WebSocket-Accept.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { RawClient, type RawClientOptions } from "./support/raw-client.ts";
import { serveInProcess, withServer, type InProcessServer } from "./support/in-process.ts";
import {
  Opcode,
  checkUpgradeRequest,
  computeAcceptKey,
  encodeFrame,
  hostIsAllowed,
  originIsAllowed,
  type HandshakePolicy,
  type HandshakeRequest,
} from "../server.ts";

const SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

let server: InProcessServer;
let port: number;
const clients: RawClient[] = [];

before(async () => {
  server = await serveInProcess({ keepaliveIntervalMs: 0 });
  port = server.port;
});

after(async () => {
  for (const client of clients) client.destroy();
  await server.stop();
});

async function open(options: RawClientOptions = {}, onPort = port): Promise<RawClient> {
  const client = await RawClient.open(onPort, options);
  clients.push(client);
  return client;
}

/** A request with exactly these header lines (no defaults). */
function rawRequest(requestLine: string, headerLines: string[]): string {
  return `${requestLine}\r\n${headerLines.map((line) => `${line}\r\n`).join("")}\r\n`;
}

function standardHeaders(overrides: Record<string, string> = {}): string[] {
  const headers: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": SAMPLE_KEY,
    "Sec-WebSocket-Version": "13",
    ...overrides,
  };
  return Object.entries(headers)
    .filter(([, value]) => value !== "")
    .map(([name, value]) => `${name}: ${value}`);
}

/** A refusal: the status, one line of reason, and the TCP connection ended by the server. */
async function assertRefused(client: RawClient, status: number, closeWithinMs = 3000): Promise<void> {
  assert.ok(client.handshake, "an HTTP response arrived");
  assert.equal(client.handshake.status, status, `status; body: ${client.handshake.body}`);
  assert.equal(client.handshake.headers["sec-websocket-accept"], undefined, "no Accept on a refusal");
  await client.waitForClose(closeWithinMs);
  const body = client.handshake.body;
  assert.match(body, /^[^\r\n]+\n$/, `a one-line reason: ${JSON.stringify(body)}`);
  assert.equal(
    Buffer.byteLength(body),
    Number(client.handshake.headers["content-length"]),
    "Content-Length matches the body",
  );
}

function assertAccepted(client: RawClient, key?: string): void {
  assert.ok(client.handshake, "an HTTP response arrived");
  assert.equal(client.handshake.status, 101, `status; body: ${client.handshake.body}`);
  assert.equal(client.handshake.headers["upgrade"]?.toLowerCase(), "websocket");
  assert.equal(client.handshake.headers["connection"]?.toLowerCase(), "upgrade");
  if (key !== undefined) assert.equal(client.handshake.headers["sec-websocket-accept"], computeAcceptKey(key));
  else assert.ok(client.handshake.headers["sec-websocket-accept"]);
}

/** The connection works: a text message comes back from /echo. */
async function assertConnectionWorks(client: RawClient, text = "are you there?"): Promise<void> {
  client.sendText(text);
  const echoed = await client.next("text");
  assert.equal(echoed.text, text);
}

describe("§4.2.2 accepted handshakes", () => {
  test("§4.2.2 a valid handshake gets 101 with base64(SHA-1(key + GUID)) as Sec-WebSocket-Accept", async () => {
    const client = await open();
    assertAccepted(client);
    // RawClient chose a random key; check the header against our own computation through a known key too.
    await assertConnectionWorks(client);
    client.destroy();
  });

  test("§1.3 the RFC's sample key dGhlIHNhbXBsZSBub25jZQ== is answered s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", async () => {
    const client = await open({ headers: { "Sec-WebSocket-Key": SAMPLE_KEY } });
    assertAccepted(client);
    assert.equal(client.handshake!.headers["sec-websocket-accept"], SAMPLE_ACCEPT);
    await assertConnectionWorks(client);
    client.destroy();
  });

  test(
    '§4.2.1 Connection is a token list, compared case-insensitively: "keep-alive, Upgrade" is ' + "accepted",
    async () => {
      for (const connection of ["keep-alive, Upgrade", "upgrade", "UPGRADE, keep-alive", "keep-alive,upgrade"]) {
        const client = await open({
          headers: { Connection: connection, Upgrade: "WebSocket", "Sec-WebSocket-Key": SAMPLE_KEY },
        });
        assertAccepted(client, SAMPLE_KEY);
        await assertConnectionWorks(client, connection);
        client.destroy();
      }
    },
  );

  test(
    "§4.2.2 bytes sent in the same TCP write right after the request are processed " + "(the upgrade's head)",
    async () => {
      const request = Buffer.from(rawRequest("GET /echo HTTP/1.1", standardHeaders()), "latin1");
      const frame = encodeFrame(Opcode.Text, "sent with the request", { maskKey: Buffer.from([1, 2, 3, 4]) });
      const ping = encodeFrame(Opcode.Ping, "and a ping", { maskKey: Buffer.from([5, 6, 7, 8]) });
      // One write: the request, a text frame and a ping.
      const client = await open({ request: Buffer.concat([request, frame, ping]) });
      assert.equal(client.handshake?.status, 101);
      assert.equal(client.handshake?.headers["sec-websocket-accept"], SAMPLE_ACCEPT);
      await client.next("pong");
      const simple = client.events.map((event) =>
        event.type === "text" ? `text:${event.text}` : event.type === "pong" ? `pong:${event.data}` : event.type,
      );
      assert.deepEqual(simple, ["text:sent with the request", "pong:and a ping"]);
      client.destroy();
    },
  );
});

describe("§4.2.1 refused handshakes: a status, a one-line reason, and the TCP connection closed", () => {
  test("§4.2.1 a method other than GET gets 405", async () => {
    const client = await open({ request: rawRequest("POST /echo HTTP/1.1", standardHeaders()) });
    await assertRefused(client, 405);
    assert.equal(client.handshake!.headers["allow"], "GET");
  });

  test("§4.2.1 an HTTP/1.0 request gets 400", async () => {
    const client = await open({ request: rawRequest("GET /echo HTTP/1.0", standardHeaders()) });
    await assertRefused(client, 400);
    assert.match(client.handshake!.body, /HTTP\/1\.1/);
  });

  test("§4.2.1 a request without Host gets 400", async () => {
    const client = await open({ headers: { Host: "" } });
    await assertRefused(client, 400);
    assert.match(client.handshake!.body, /Host/);
  });

  test("§4.2.1 an Upgrade header without the websocket token gets 400", async () => {
    for (const upgrade of ["h2c", "websocket2", "web socket"]) {
      const client = await open({ headers: { Upgrade: upgrade } });
      await assertRefused(client, 400);
      assert.match(client.handshake!.body, /Upgrade/);
    }
  });

  test("§4.2.1 Upgrade: websocket among other tokens is accepted", async () => {
    const client = await open({ headers: { Upgrade: "h2c, websocket" } });
    assertAccepted(client);
    client.destroy();
  });

  test("§4.2.1 a Connection header without the Upgrade token gets 400 with its reason", async () => {
    for (const connection of ["keep-alive", ""]) {
      const client = await open({ headers: { Connection: connection } });
      assert.equal(
        client.handshake?.status,
        400,
        `Connection: ${JSON.stringify(connection)}; body ${client.handshake?.body}`,
      );
      await client.waitFor(() => client.handshake!.body.endsWith("\n"), 3000, "the reason");
      assert.match(client.handshake!.body, /^[^\r\n]*Connection[^\r\n]*\n$/);
      client.destroy();
    }
  });

  test("§4.2.1 a refused handshake without Connection: Upgrade also ends the TCP connection", async () => {
    // node:http sends this one down its request path, not as an upgrade: it must still say Connection: close.
    const client = await open({ headers: { Connection: "keep-alive" } });
    await assertRefused(client, 400, 2000);
    assert.equal(client.handshake!.headers["connection"]?.toLowerCase(), "close");
  });

  test("§4.2.1 Sec-WebSocket-Version 8 gets 426 with Sec-WebSocket-Version: 13", async () => {
    for (const version of ["8", "12", "14", ""]) {
      const client = await open({ headers: { "Sec-WebSocket-Version": version } });
      await assertRefused(client, 426);
      assert.equal(client.handshake!.headers["sec-websocket-version"], "13");
    }
  });

  const badKeys: Array<[string, string]> = [
    ["missing", ""],
    ["15 bytes", Buffer.alloc(15, 7).toString("base64")],
    ["17 bytes", Buffer.alloc(17, 7).toString("base64")],
    ["not base64", "!!!!!!!!!!!!!!!!!!!!!!=="],
    ["24 characters decoding to 16 bytes, but not canonical", "dGhlIHNhbXBsZSBub25jZR=="],
  ];
  for (const [name, key] of badKeys) {
    test(`§4.2.1 a Sec-WebSocket-Key that is ${name} gets 400`, async () => {
      const client = await open({ headers: { "Sec-WebSocket-Key": key } });
      await assertRefused(client, 400);
      assert.match(client.handshake!.body, /Sec-WebSocket-Key/);
    });
  }

  test("§4.2.1 two Sec-WebSocket-Key headers get 400", async () => {
    const other = Buffer.alloc(16, 9).toString("base64");
    const client = await open({
      request: rawRequest("GET /echo HTTP/1.1", [...standardHeaders(), `Sec-WebSocket-Key: ${other}`]),
    });
    await assertRefused(client, 400);
  });

  test("§4.2.1 an upgrade to an unknown path gets 404", async () => {
    const client = await open({ path: "/nope" });
    await assertRefused(client, 404);
    assert.match(client.handshake!.body, /\/nope/);
  });

  test("§4.2.1 a plain GET of /echo (no upgrade) gets 426 Upgrade Required", async () => {
    const client = await open({
      request: rawRequest("GET /echo HTTP/1.1", [`Host: 127.0.0.1:${port}`, "Connection: close"]),
    });
    assert.equal(client.handshake?.status, 426);
    assert.equal(client.handshake!.headers["upgrade"], "websocket");
    await client.waitForClose(3000);
    assert.match(client.handshake!.body, /^[^\r\n]+\n$/);
  });

  test("§4.2.1 a plain GET of an unknown path gets 404", async () => {
    const client = await open({
      request: rawRequest("GET /nope HTTP/1.1", [`Host: 127.0.0.1:${port}`, "Connection: close"]),
    });
    assert.equal(client.handshake?.status, 404);
    await client.waitForClose(3000);
    assert.match(client.handshake!.body, /^[^\r\n]+\n$/);
  });
});

describe("§10.2 Origin", () => {
  const allowed: Array<[string, () => Record<string, string>]> = [
    ["no Origin (not a browser)", () => ({})],
    ["Origin: null (a page opened from disk)", () => ({ Origin: "null" })],
    ["Origin: http://localhost:1234", () => ({ Origin: "http://localhost:1234" })],
    ["Origin: http://127.0.0.1:<the server's port>", () => ({ Origin: `http://127.0.0.1:${port}` })],
    ["the server's own Host", () => ({ Host: `localhost:${port}`, Origin: `http://localhost:${port}` })],
  ];
  for (const [name, headers] of allowed) {
    test(`§10.2 ${name} is accepted`, async () => {
      const client = await open({ headers: headers() });
      assertAccepted(client);
      await assertConnectionWorks(client);
      client.destroy();
    });
  }

  const refused: Array<[string, Record<string, string>]> = [
    ["http://evil.example", { Origin: "http://evil.example" }],
    // A server on loopback is reached by a loopback name only: this is a page whose name was rebound to 127.0.0.1.
    [
      "DNS rebinding: the Host and the Origin agree on a name that is not this machine's",
      { Host: "chat.example:8080", Origin: "http://chat.example:8080" },
    ],
    ["a look-alike of localhost (http://localhost.evil.example)", { Origin: "http://localhost.evil.example" }],
    ["the server's host name on another port", { Host: "chat.example:8080", Origin: "http://chat.example:9090" }],
    ["a non-http scheme (file://)", { Origin: "file:///home/me/page.html" }],
    ["something that is not a URL", { Origin: "evil" }],
  ];
  for (const [name, headers] of refused) {
    test(`§10.2 Origin ${name} gets 403`, async () => {
      const client = await open({ headers });
      await assertRefused(client, 403);
    });
  }

  test("§10.2 --allow-origin http://evil.example lets that origin in, and only that one", async () => {
    await withServer({ keepaliveIntervalMs: 0, allowedOrigins: ["http://evil.example"] }, async (second) => {
      const client = await open({ headers: { Origin: "http://evil.example" } }, second.port);
      assertAccepted(client);
      await assertConnectionWorks(client);
      client.destroy();
      const other = await open({ headers: { Origin: "http://other.example" } }, second.port);
      await assertRefused(other, 403);
    });
  });
});

describe("§4.2.2 subprotocols and extensions", () => {
  test("§4.2.2 Sec-WebSocket-Protocol: foo, chat on / is answered chat", async () => {
    const client = await open({ path: "/", headers: { "Sec-WebSocket-Protocol": "foo, chat" } });
    assertAccepted(client);
    assert.equal(client.handshake!.headers["sec-websocket-protocol"], "chat");
    const welcome = await client.next("text");
    assert.equal((JSON.parse(welcome.text) as { type: string }).type, "welcome");
    client.destroy();
  });

  test("§4.2.2 Sec-WebSocket-Protocol: foo alone gets no Sec-WebSocket-Protocol header", async () => {
    const client = await open({ path: "/", headers: { "Sec-WebSocket-Protocol": "foo" } });
    assertAccepted(client);
    assert.equal(client.handshake!.headers["sec-websocket-protocol"], undefined);
    client.destroy();
  });

  test("§4.2.2 /echo speaks echo, not chat", async () => {
    const echo = await open({ headers: { "Sec-WebSocket-Protocol": "chat, echo" } });
    assert.equal(echo.handshake!.headers["sec-websocket-protocol"], "echo");
    echo.destroy();
    const chat = await open({ headers: { "Sec-WebSocket-Protocol": "chat" } });
    assertAccepted(chat);
    assert.equal(chat.handshake!.headers["sec-websocket-protocol"], undefined);
    chat.destroy();
  });

  test("§9.1 an unknown extension (x-foo) is ignored: 101 and no Sec-WebSocket-Extensions", async () => {
    const client = await open({ headers: { "Sec-WebSocket-Extensions": "x-foo; bar=1" } });
    assertAccepted(client);
    assert.equal(client.handshake!.headers["sec-websocket-extensions"], undefined);
    await assertConnectionWorks(client);
    client.destroy();
  });
});

describe("§10.2 the origin and host rules as pure functions", () => {
  test(
    "§10.2 a server reached under its own name " + "(bound to a public address) accepts pages from that name only",
    () => {
      assert.equal(originIsAllowed("http://chat.example:8080", "chat.example:8080", []), true);
      assert.equal(originIsAllowed("https://chat.example", "chat.example", []), true);
      assert.equal(originIsAllowed("http://chat.example:9090", "chat.example:8080", []), false);
      assert.equal(originIsAllowed("http://evil.example", "chat.example", []), false);
      assert.equal(originIsAllowed("http://evil.example", "chat.example", ["http://evil.example"]), true);
    },
  );

  test(
    "§10.2 DNS rebinding: on loopback only loopback names, " + "or the names of allowed origins, are accepted as Host",
    () => {
      for (const host of ["127.0.0.1:5500", "localhost:5500", "LOCALHOST", "[::1]:5500"])
        assert.equal(hostIsAllowed(host, []), true, host);
      for (const host of ["evil.example:5500", "127.0.0.1.nip.io:5500", "", undefined])
        assert.equal(hostIsAllowed(host, []), false, String(host));
      assert.equal(hostIsAllowed("mybox.lan:5500", ["http://mybox.lan:5500"]), true);
    },
  );
});

describe("§4.2.1 checkUpgradeRequest: the rules alone, without a socket", () => {
  const key = SAMPLE_KEY;
  /** A valid request from a page of the server itself, with `headers` over it ("" drops one). */
  function request(headers: Record<string, string> = {}, method = "GET", httpVersion = "1.1"): HandshakeRequest {
    const all: Record<string, string> = {
      host: "127.0.0.1:5500",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": key,
      "sec-websocket-version": "13",
      ...Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value])),
    };
    return {
      method,
      httpVersion,
      headers: Object.fromEntries(Object.entries(all).filter(([, value]) => value !== "")),
    };
  }
  const chat: HandshakePolicy = { allowedOrigins: [], subprotocols: ["chat"], loopbackOnly: true };

  test(
    "§4.2.2 a valid request is accepted with base64(SHA-1(key + GUID)) " + "and no subprotocol unless one is offered",
    () => {
      assert.deepEqual(checkUpgradeRequest(request(), chat), {
        accepted: true,
        acceptKey: SAMPLE_ACCEPT,
        protocol: undefined,
      });
      const offered = checkUpgradeRequest(request({ "Sec-WebSocket-Protocol": "foo, chat" }), chat);
      assert.deepEqual(offered, { accepted: true, acceptKey: SAMPLE_ACCEPT, protocol: "chat" });
      const http2 = checkUpgradeRequest(request({}, "GET", "2.0"), chat);
      assert.equal(http2.accepted, true, "a later HTTP version is fine");
    },
  );

  const refusals: Array<[string, HandshakeRequest, number, RegExp]> = [
    ["POST", request({}, "POST"), 405, /GET/],
    ["HTTP/1.0", request({}, "GET", "1.0"), 400, /HTTP\/1\.1/],
    ["no Host", request({ Host: "" }), 400, /Host/],
    ["Upgrade: h2c", request({ Upgrade: "h2c" }), 400, /Upgrade/],
    ["Connection: keep-alive", request({ Connection: "keep-alive" }), 400, /Connection/],
    ["Sec-WebSocket-Version: 8", request({ "Sec-WebSocket-Version": "8" }), 426, /13/],
    ["no Sec-WebSocket-Version", request({ "Sec-WebSocket-Version": "" }), 426, /13/],
    [
      "a key of 15 bytes",
      request({ "Sec-WebSocket-Key": Buffer.alloc(15, 7).toString("base64") }),
      400,
      /Sec-WebSocket-Key/,
    ],
    ["no key", request({ "Sec-WebSocket-Key": "" }), 400, /Sec-WebSocket-Key/],
    ["a foreign Origin", request({ Origin: "http://evil.example" }), 403, /Origin/],
    [
      "a Host that is not this machine (DNS rebinding)",
      request({ Host: "evil.example", Origin: "http://evil.example" }),
      403,
      /Host/,
    ],
  ];
  for (const [name, refused, status, reason] of refusals) {
    test(`§4.2.1 ${name} is refused with ${status} and a one-line reason`, () => {
      const verdict = checkUpgradeRequest(refused, chat);
      assert.equal(verdict.accepted, false);
      if (verdict.accepted) return;
      assert.equal(verdict.status, status);
      assert.match(verdict.reason, reason);
      assert.doesNotMatch(verdict.reason, /[\r\n]/, "one line");
      if (status === 405) assert.deepEqual(verdict.headers, { Allow: "GET" });
      if (status === 426) assert.deepEqual(verdict.headers, { "Sec-WebSocket-Version": "13" });
    });
  }

  test("§10.2 a server listening beyond loopback accepts its own name as Host, and pages of that name only", () => {
    const open: HandshakePolicy = { allowedOrigins: [], subprotocols: [], loopbackOnly: false };
    const own = request({ Host: "chat.example:8080", Origin: "http://chat.example:8080" });
    assert.equal(checkUpgradeRequest(own, open).accepted, true);
    assert.equal(
      checkUpgradeRequest(own, chat).accepted,
      false,
      "the same request to a loopback-only server is refused",
    );
    const foreign = checkUpgradeRequest(request({ Host: "chat.example:8080", Origin: "http://evil.example" }), open);
    assert.equal(foreign.accepted, false);
    const allowed: HandshakePolicy = { ...open, allowedOrigins: ["http://evil.example"] };
    assert.equal(
      checkUpgradeRequest(request({ Host: "chat.example:8080", Origin: "http://evil.example" }), allowed).accepted,
      true,
    );
  });
});
