// RFC 6455 §4.2: the opening handshake, over real TCP against a real server
// process. Every refusal must carry a one-line reason and end the TCP
// connection; every acceptance must carry the right Sec-WebSocket-Accept.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect } from "node:net";
import { spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { RawClient, type RawClientOptions } from "./support/raw-client.ts";
import { FrameDecoder, Opcode, computeAcceptKey, encodeFrame, hostIsAllowed, originIsAllowed, type DecoderEvent } from "../server.ts";

const SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

let server: SpawnedServer;
let port: number;
const clients: RawClient[] = [];

before(async () => {
  server = await spawnServer(["--keepalive-interval", "0"]);
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
  assert.equal(Buffer.byteLength(body), Number(client.handshake.headers["content-length"]), "Content-Length matches the body");
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
async function assertEchoes(client: RawClient, text = "are you there?"): Promise<void> {
  client.sendText(text);
  const echoed = await client.next("text");
  assert.equal(echoed.text, text);
}

describe("§4.2.2 accepted handshakes", () => {
  test("§4.2.2 a valid handshake gets 101 with base64(SHA-1(key + GUID)) as Sec-WebSocket-Accept", async () => {
    const client = await open();
    assertAccepted(client);
    // RawClient chose a random key; check the header against our own computation through a known key too.
    await assertEchoes(client);
    client.destroy();
  });

  test("§1.3 the RFC's sample key dGhlIHNhbXBsZSBub25jZQ== is answered s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", async () => {
    const client = await open({ headers: { "Sec-WebSocket-Key": SAMPLE_KEY } });
    assertAccepted(client);
    assert.equal(client.handshake!.headers["sec-websocket-accept"], SAMPLE_ACCEPT);
    await assertEchoes(client);
    client.destroy();
  });

  test("§4.2.1 Connection is a token list, compared case-insensitively: \"keep-alive, Upgrade\" is accepted", async () => {
    for (const connection of ["keep-alive, Upgrade", "upgrade", "UPGRADE, keep-alive", "keep-alive,upgrade"]) {
      const client = await open({ headers: { Connection: connection, Upgrade: "WebSocket", "Sec-WebSocket-Key": SAMPLE_KEY } });
      assertAccepted(client, SAMPLE_KEY);
      await assertEchoes(client, connection);
      client.destroy();
    }
  });

  test("§4.2.2 bytes sent in the same TCP write right after the request are processed (the upgrade's head)", async () => {
    const request = Buffer.from(rawRequest("GET /echo HTTP/1.1", standardHeaders()), "latin1");
    const frame = encodeFrame(Opcode.Text, "sent with the request", { maskKey: Buffer.from([1, 2, 3, 4]) });
    const ping = encodeFrame(Opcode.Ping, "and a ping", { maskKey: Buffer.from([5, 6, 7, 8]) });
    const { head, events } = await exchange(Buffer.concat([request, frame, ping]), (seen) => seen.some((event) => event.type === "pong"));
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.ok(head.includes(`Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}`));
    const simple = events.map((event) => (event.type === "text" ? `text:${event.text}` : event.type === "pong" ? `pong:${event.data}` : event.type));
    assert.deepEqual(simple, ["text:sent with the request", "pong:and a ping"]);
  });
});

/** Sends `bytes` in one write on a fresh TCP connection; returns the response
 * head and the frames that follow, once `done(events)` holds. */
function exchange(bytes: Buffer, done: (events: DecoderEvent[]) => boolean, timeoutMs = 5000): Promise<{ head: string; events: DecoderEvent[] }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({ expectMasked: false, maxPayload: 1 << 20 });
    const events: DecoderEvent[] = [];
    let pending = Buffer.alloc(0);
    let head: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out; head ${JSON.stringify(head)}, events ${JSON.stringify(events.map((event) => event.type))}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ head: head ?? "", events });
    };
    socket.on("connect", () => socket.write(bytes));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      if (head !== undefined && done(events)) resolve({ head, events });
      else reject(new Error(`closed early; head ${JSON.stringify(head)}, events ${JSON.stringify(events.map((event) => event.type))}`));
    });
    socket.on("data", (chunk: Buffer) => {
      if (head === undefined) {
        pending = Buffer.concat([pending, chunk]);
        const end = pending.indexOf("\r\n\r\n");
        if (end === -1) return;
        head = pending.subarray(0, end).toString("latin1");
        chunk = pending.subarray(end + 4);
      }
      if (chunk.length > 0) events.push(...decoder.receive(Buffer.from(chunk)));
      if (done(events)) finish();
    });
  });
}

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
      assert.equal(client.handshake?.status, 400, `Connection: ${JSON.stringify(connection)}; body ${client.handshake?.body}`);
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
    const client = await open({ request: rawRequest("GET /echo HTTP/1.1", [...standardHeaders(), `Sec-WebSocket-Key: ${other}`]) });
    await assertRefused(client, 400);
  });

  test("§4.2.1 an upgrade to an unknown path gets 404", async () => {
    const client = await open({ path: "/nope" });
    await assertRefused(client, 404);
    assert.match(client.handshake!.body, /\/nope/);
  });

  test("§4.2.1 a plain GET of /echo (no upgrade) gets 426 Upgrade Required", async () => {
    const client = await open({ request: rawRequest("GET /echo HTTP/1.1", [`Host: 127.0.0.1:${port}`, "Connection: close"]) });
    assert.equal(client.handshake?.status, 426);
    assert.equal(client.handshake!.headers["upgrade"], "websocket");
    await client.waitForClose(3000);
    assert.match(client.handshake!.body, /^[^\r\n]+\n$/);
  });

  test("§4.2.1 a plain GET of an unknown path gets 404", async () => {
    const client = await open({ request: rawRequest("GET /nope HTTP/1.1", [`Host: 127.0.0.1:${port}`, "Connection: close"]) });
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
      await assertEchoes(client);
      client.destroy();
    });
  }

  const refused: Array<[string, Record<string, string>]> = [
    ["http://evil.example", { Origin: "http://evil.example" }],
    // A server on loopback is reached by a loopback name only: this is a page whose name was rebound to 127.0.0.1.
    ["DNS rebinding: the Host and the Origin agree on a name that is not this machine's", { Host: "chat.example:8080", Origin: "http://chat.example:8080" }],
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
    const second = await spawnServer(["--keepalive-interval", "0", "--allow-origin", "http://evil.example"]);
    try {
      const client = await open({ headers: { Origin: "http://evil.example" } }, second.port);
      assertAccepted(client);
      await assertEchoes(client);
      client.destroy();
      const other = await open({ headers: { Origin: "http://other.example" } }, second.port);
      await assertRefused(other, 403);
    } finally {
      await second.stop();
    }
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
    await assertEchoes(client);
    client.destroy();
  });
});

describe("§10.2 the origin and host rules as pure functions", () => {
  test("§10.2 a server reached under its own name (bound to a public address) accepts pages from that name only", () => {
    assert.equal(originIsAllowed("http://chat.example:8080", "chat.example:8080", []), true);
    assert.equal(originIsAllowed("https://chat.example", "chat.example", []), true);
    assert.equal(originIsAllowed("http://chat.example:9090", "chat.example:8080", []), false);
    assert.equal(originIsAllowed("http://evil.example", "chat.example", []), false);
    assert.equal(originIsAllowed("http://evil.example", "chat.example", ["http://evil.example"]), true);
  });

  test("§10.2 DNS rebinding: on loopback only loopback names, or the names of allowed origins, are accepted as Host", () => {
    for (const host of ["127.0.0.1:5500", "localhost:5500", "LOCALHOST", "[::1]:5500"]) assert.equal(hostIsAllowed(host, []), true, host);
    for (const host of ["evil.example:5500", "127.0.0.1.nip.io:5500", "", undefined]) assert.equal(hostIsAllowed(host, []), false, String(host));
    assert.equal(hostIsAllowed("mybox.lan:5500", ["http://mybox.lan:5500"]), true);
  });
});
