// Limits and defences, against real server processes: slow and oversized
// handshakes, connection limits, slow consumers, floods, cross-site
// WebSocket hijacking, fragment floods, and a handler that throws.
// Figures (RSS, counts) are printed, never timed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { CloseCode, Opcode, encodeFrame, type DecoderEvent } from "../server.ts";
import { repositoryRoot, spawnServer, spawnTypeScript, type SpawnedServer } from "./support/spawn.ts";
import { waitUntil } from "./support/wait.ts";
import { RawClient } from "./support/raw-client.ts";
import { echoStillWorks } from "../scripts/lib/live-fuzz.ts";
import { megabytes, readProcessMemory, RssSampler } from "./support/memory.ts";
import { HandshakeError } from "./support/raw-client.ts";

const MB = 1024 * 1024;
const maskKey = Buffer.from([0x12, 0x34, 0x56, 0x78]);

function rss(pid: number | undefined): number {
  return readProcessMemory(pid)?.rss ?? 0;
}

/** A raw TCP connection for HTTP-level abuse: what it received, and whether it is closed. */
async function openRaw(port: number): Promise<{ socket: Socket; received: () => string; closed: () => boolean }> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let received = "";
  let closed = false;
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  socket.on("error", () => {});
  socket.on("close", () => (closed = true));
  return { socket, received: () => received, closed: () => closed };
}

function statusOf(response: string): number | undefined {
  const match = response.match(/^HTTP\/1\.1 (\d{3})/);
  return match ? Number(match[1]) : undefined;
}

function closeEvents(client: RawClient): Array<Extract<DecoderEvent, { type: "close" }>> {
  return client.events.filter((event): event is Extract<DecoderEvent, { type: "close" }> => event.type === "close");
}

function maskedFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, maskKey });
}

// ── The opening handshake's limits ──────────────────────────────────────────

describe("slow and oversized handshakes (RFC 6455 §4.1, §10.4)", () => {
  let server: SpawnedServer;
  before(async () => {
    server = await spawnServer(["--handshake-timeout", "1000"]);
  });
  after(async () => {
    await server.stop();
  });

  test("slowloris: half a request line, then silence: disconnected after the handshake timeout (408 or a plain close)", async () => {
    const raw = await openRaw(server.port);
    raw.socket.write("GET /echo HTT");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(raw.closed(), false, "the server waits for the rest of the request at first");
    await waitUntil(raw.closed, 4000, "the server to drop the stalled request");
    const status = statusOf(raw.received());
    assert.ok(raw.received() === "" || status === 408, `got ${JSON.stringify(raw.received().slice(0, 80))}`);
  });

  test("slowloris that trickles: a header line every 200 ms does not extend the deadline", async () => {
    const raw = await openRaw(server.port);
    raw.socket.write("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (let line = 0; line < 25 && !raw.closed(); line++) {
      raw.socket.write(`X-Trickle-${line}: ${"a".repeat(10)}\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await waitUntil(raw.closed, 4000, "the server to drop the trickling request");
    const status = statusOf(raw.received());
    assert.ok(raw.received() === "" || status === 408, `got ${JSON.stringify(raw.received().slice(0, 80))}`);
  });

  /** A keep-alive connection: one full request answered, then half of a second one. */
  async function keepAliveSlowloris(): Promise<{ closed: boolean; secondAnswer: string }> {
    const raw = await openRaw(server.port);
    raw.socket.write("GET /client.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await waitUntil(() => /\r\n\r\n/.test(raw.received()), 4000, "the first answer");
    const contentLength = Number(/Content-Length: (\d+)/i.exec(raw.received())?.[1]);
    const firstLength = raw.received().indexOf("\r\n\r\n") + 4 + contentLength;
    await waitUntil(() => raw.received().length >= firstLength, 4000, "the first body");
    raw.socket.write("GET / HTT");
    await waitUntil(raw.closed, 5000, "the server to drop the stalled second request");
    return { closed: raw.closed(), secondAnswer: raw.received().slice(firstLength) };
  }

  test("slowloris on a keep-alive connection: the second request's half line is dropped too", async () => {
    const { closed, secondAnswer } = await keepAliveSlowloris();
    assert.ok(closed);
    const status = statusOf(secondAnswer);
    assert.ok(secondAnswer === "" || status === 408 || status === 400, JSON.stringify(secondAnswer.slice(0, 80)));
  });

  test("slowloris on a keep-alive connection is answered 408 (RFC 9110 §15.5.9), not 400", async () => {
    const { secondAnswer } = await keepAliveSlowloris();
    assert.ok(secondAnswer === "" || statusOf(secondAnswer) === 408, JSON.stringify(secondAnswer.slice(0, 80)));
  });

  test("200 slowloris connections at once: all dropped, and /echo keeps working meanwhile", async () => {
    const stalled = await Promise.all(Array.from({ length: 200 }, () => openRaw(server.port)));
    for (const raw of stalled) raw.socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    assert.ok(await echoStillWorks(server.port), "echo works while 200 requests hang");
    await waitUntil(() => stalled.every((raw) => raw.closed()), 5000, "every stalled connection to be dropped");
    for (const raw of stalled) raw.socket.destroy();
  });

  for (const [name, headers] of [
    ["64 KiB of headers in 1,024 lines", Array.from({ length: 1024 }, (_, index) => `X-Padding-${String(index).padStart(4, "0")}: ${"p".repeat(48)}\r\n`).join("")],
    ["one header line of 64 KiB", `X-Huge: ${"h".repeat(64 * 1024)}\r\n`],
  ] as const) {
    test(`request headers are bounded: ${name} get 431 (or 400) and the connection closes; the server survives`, async () => {
      const raw = await openRaw(server.port);
      raw.socket.write(
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          headers +
          "\r\n",
      );
      await waitUntil(raw.closed, 5000, "the server to close the connection");
      const status = statusOf(raw.received());
      assert.ok(status === 431 || status === 400, `status ${status}: ${JSON.stringify(raw.received().slice(0, 80))}`);
      if (status === 431) assert.match(raw.received(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      assert.ok(!/Sec-WebSocket-Accept/i.test(raw.received()));
      assert.equal(server.child.exitCode, null);
      assert.ok(await echoStillWorks(server.port));
    });
  }
});

// ── Connection limits ───────────────────────────────────────────────────────

describe("connection limits: 503 with Retry-After before any WebSocket state (RFC 6455 §4.2.2, RFC 9110 §10.2.3)", () => {
  test("--max-connections 5: the 6th WebSocket gets 503 and Retry-After; after two close, two more are accepted", async () => {
    const server = await spawnServer(["--max-connections", "5"]);
    const clients: RawClient[] = [];
    try {
      for (let index = 0; index < 5; index++) {
        const client = await RawClient.open(server.port, { path: "/echo" });
        assert.equal(client.handshake?.status, 101);
        clients.push(client);
      }
      const sixth = await RawClient.open(server.port, { path: "/echo" });
      assert.equal(sixth.handshake?.status, 503);
      assert.ok(Number(sixth.handshake?.headers["retry-after"]) > 0, "Retry-After is a number of seconds");
      assert.equal(sixth.handshake?.headers["sec-websocket-accept"], undefined);
      await sixth.waitForClose();
      // The five still work.
      clients[4]!.sendText("still open");
      assert.equal((await clients[4]!.next("text")).text, "still open");
      // Two leave with a closing handshake (§7.1.2)...
      for (const client of clients.splice(0, 2)) {
        client.sendFrame(Opcode.Close, Buffer.from([0x03, 0xe8]));
        await client.waitForClose();
      }
      // ...and two may come: the server forgets a connection when its socket closes, a moment later.
      for (let admitted = 0; admitted < 2; ) {
        let client: RawClient | undefined;
        for (let attempt = 0; attempt < 40; attempt++) {
          client = await RawClient.open(server.port, { path: "/echo" });
          if (client.handshake?.status === 101) break;
          client.destroy();
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.equal(client?.handshake?.status, 101);
        clients.push(client!);
        admitted++;
      }
      const again = await RawClient.open(server.port, { path: "/echo" });
      assert.equal(again.handshake?.status, 503, "full again");
      again.destroy();
    } finally {
      for (const client of clients) client.destroy();
      await server.stop();
    }
  });

  test("--max-connections-per-ip 3: a 4th from the same address gets 503 and Retry-After; another address is not counted with it", async () => {
    const server = await spawnServer(["--max-connections-per-ip", "3"]);
    const clients: RawClient[] = [];
    try {
      for (let index = 0; index < 3; index++) clients.push(await RawClient.open(server.port, { path: "/echo" }));
      assert.deepEqual(clients.map((client) => client.handshake?.status), [101, 101, 101]);
      const fourth = await RawClient.open(server.port, { path: "/echo" });
      assert.equal(fourth.handshake?.status, 503);
      assert.ok(Number(fourth.handshake?.headers["retry-after"]) > 0);
      await fourth.waitForClose();
      // 127.0.0.2 is another address on Linux's loopback: it has its own count.
      let other: RawClient | undefined;
      try {
        other = await RawClient.connect(server.port, { path: "/echo", localAddress: "127.0.0.2" });
      } catch (error) {
        if (error instanceof HandshakeError) throw error;
        console.log(`(skipped the second address: ${error instanceof Error ? error.message : String(error)})`);
      }
      other?.destroy();
      clients.shift()!.destroy();
      let admitted: RawClient | undefined;
      for (let attempt = 0; attempt < 40; attempt++) {
        admitted = await RawClient.open(server.port, { path: "/echo" });
        if (admitted.handshake?.status === 101) break;
        admitted.destroy();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(admitted?.handshake?.status, 101, "a place freed by a closed connection is given again");
      clients.push(admitted!);
    } finally {
      for (const client of clients) client.destroy();
      await server.stop();
    }
  });
});

// ── Slow consumers ──────────────────────────────────────────────────────────

describe("a slow consumer (RFC 6455 §7.4.1: 1008 policy violation)", () => {
  test("one chat client never reads, 50 do, a 20 MB burst: every reader gets every message once, the stalled one is closed with 1008, server memory stays bounded", async () => {
    const server = await spawnServer(["--message-rate", "1000000", "--message-burst", "1000000", "--history-size", "100"]);
    const TOTAL = 10_000;
    const READERS = 50;
    const WINDOW = 1000; // messages sent ahead of the slowest reader: about 2 MB
    const sampler = new RssSampler(server.child.pid, 100);
    const baseline = rss(server.child.pid);
    interface Reader {
      client: RawClient;
      seen: Uint8Array;
      count: number;
      duplicates: number;
      closedWith: number | undefined;
    }
    const readers: Reader[] = [];
    let stalled: RawClient | undefined;
    try {
      stalled = await RawClient.open(server.port, { path: "/?name=stalled" });
      assert.equal(stalled.handshake?.status, 101);
      await stalled.next("text"); // the welcome
      stalled.socket.pause(); // and from now on it never reads
      const filler = "慢".repeat(50) + "x".repeat(1900);
      let sent = 0;
      let started = false;
      const pump = () => {
        if (!started) return;
        let slowest = TOTAL;
        for (const reader of readers) slowest = Math.min(slowest, reader.count);
        while (sent < TOTAL && sent - slowest < WINDOW) {
          const reader = readers[sent % READERS]!;
          const head = `#${sent} `;
          reader.client.sendText(JSON.stringify({ type: "say", id: `burst-${sent}`, text: head + filler.slice(head.length) }));
          sent++;
        }
      };
      const drain = (reader: Reader) => {
        for (const event of reader.client.events) {
          if (event.type === "text" && event.text.startsWith('{"type":"message"')) {
            const seq = Number(/"seq":(\d+)/.exec(event.text.slice(0, 48))?.[1]);
            if (reader.seen[seq]) reader.duplicates++;
            else {
              reader.seen[seq] = 1;
              reader.count++;
            }
          } else if (event.type === "close") reader.closedWith = event.code;
        }
        reader.client.events.length = 0; // keep nothing: 20 MB x 50 readers
      };
      for (let index = 0; index < READERS; index++) {
        const client = await RawClient.open(server.port, { path: `/?name=reader${index}` });
        assert.equal(client.handshake?.status, 101);
        const reader: Reader = { client, seen: new Uint8Array(TOTAL + 1), count: 0, duplicates: 0, closedWith: undefined };
        readers.push(reader);
        drain(reader);
        client.socket.on("data", () => {
          drain(reader);
          pump();
        });
      }
      // When the server gives up on the stalled client, read what it had queued: a close frame must end it.
      const slowConsumerLogged = server.waitForOutput(/closing a slow consumer/, 120_000).then(() => stalled!.socket.resume());
      started = true;
      pump();
      await waitUntil(() => readers.every((reader) => reader.count === TOTAL || reader.client.closed), 150_000, "every reader to get every message");
      await slowConsumerLogged;
      await stalled.waitForClose(15_000);
      const peak = sampler.stop();
      const stalledMessages = stalled.events.filter((event) => event.type === "text" && event.text.startsWith('{"type":"message"')).length;
      const stalledClose = closeEvents(stalled);
      console.log(
        `slow consumer: ${READERS} readers x ${TOTAL} messages of 2000 characters; the stalled client got ${stalledMessages} before its close ${stalledClose.map((event) => event.code).join(",") || "(TCP only)"}; server RSS ${megabytes(baseline)} -> peak ${megabytes(peak)}`,
      );
      for (const [index, reader] of readers.entries()) {
        assert.equal(reader.closedWith, undefined, `reader ${index} was closed`);
        assert.equal(reader.client.closed, false, `reader ${index} lost its connection`);
        assert.equal(reader.count, TOTAL, `reader ${index} got ${reader.count} messages`);
        assert.equal(reader.duplicates, 0, `reader ${index} got duplicates`);
      }
      assert.ok(stalledMessages < TOTAL, "the stalled client did not get the whole burst");
      assert.ok(stalled.closed, "the stalled client's TCP connection is closed");
      if (stalledClose.length > 0) assert.equal(stalledClose[stalledClose.length - 1]!.code, CloseCode.PolicyViolation);
      assert.ok(peak < 400 * MB, `server peak RSS ${megabytes(peak)}`);
    } finally {
      sampler.stop();
      stalled?.destroy();
      for (const reader of readers) reader.client.destroy();
      await server.stop();
    }
  });
});

// ── Floods ──────────────────────────────────────────────────────────────────

describe("floods (RFC 6455 §5.5.2, §10.4)", () => {
  test("chat rate limit (--message-rate 5 --message-burst 5): a burst of 40 gets rate_limited errors, then 1008; the bystander is unaffected", async () => {
    const server = await spawnServer(["--message-rate", "5", "--message-burst", "5"]);
    try {
      const bystander = await RawClient.open(server.port, { path: "/?name=bystander" });
      const flooder = await RawClient.open(server.port, { path: "/?name=flooder" });
      await flooder.next("text"); // welcome
      const frames = Array.from({ length: 40 }, (_, index) => maskedFrame(Opcode.Text, JSON.stringify({ type: "say", id: `flood-${index}`, text: `flood ${index}` })));
      flooder.write(Buffer.concat(frames));
      await flooder.waitForClose();
      const texts = flooder.events.filter((event) => event.type === "text").map((event) => JSON.parse(event.text) as { type: string; code?: string });
      const accepted = texts.filter((message) => message.type === "message").length;
      const limited = texts.filter((message) => message.type === "error" && message.code === "rate_limited").length;
      const closes = closeEvents(flooder);
      console.log(`rate limit: ${accepted} accepted, ${limited} rate_limited, then close ${closes.map((event) => event.code).join(",")}`);
      assert.ok(accepted >= 5 && accepted <= 6, `${accepted} accepted`);
      assert.ok(limited >= 1, "rate_limited errors came first");
      assert.equal(closes[closes.length - 1]?.code, CloseCode.PolicyViolation);
      // The bystander saw what was accepted, and can talk.
      bystander.sendText(JSON.stringify({ type: "say", id: "calm-1", text: "hello" }));
      await bystander.waitFor(() => bystander.events.some((event) => event.type === "text" && event.text.includes('"id":"calm-1"')), 5000, "the bystander's own message");
      const seen = bystander.events.filter((event) => event.type === "text" && event.text.includes('"id":"flood-')).length;
      assert.equal(seen, accepted, "the bystander got exactly the accepted flood messages");
      bystander.destroy();
    } finally {
      await server.stop();
    }
  });

  test("chat rate limit: sustained sending at several times the rate is rate-limited, then closed with 1008", async () => {
    const server = await spawnServer(["--message-rate", "5", "--message-burst", "5"]);
    try {
      const abuser = await RawClient.open(server.port, { path: "/?name=abuser" });
      for (let index = 0; index < 100 && !abuser.closed; index++) {
        // Two every 50 ms: 40 a second, eight times the rate, even if the timers here run late.
        for (const half of [0, 1]) abuser.sendText(JSON.stringify({ type: "say", id: `steady-${index}-${half}`, text: `steady ${index}` }));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await abuser.waitForClose(5000);
      const limited = abuser.events.filter((event) => event.type === "text" && event.text.includes('"rate_limited"')).length;
      const closes = closeEvents(abuser);
      console.log(`sustained flood: ${limited} rate_limited errors before close ${closes.map((event) => event.code).join(",")}`);
      assert.ok(limited >= 1);
      assert.equal(closes[closes.length - 1]?.code, CloseCode.PolicyViolation);
    } finally {
      await server.stop();
    }
  });

  for (const kind of ["ping", "pong"] as const) {
    test(`a ${kind} flood (5,000 in one write, from a client that does not read) is not answered without bound: closed with 1008, RSS bounded, other clients unaffected`, async () => {
      const server = await spawnServer();
      try {
        const bystander = await RawClient.open(server.port, { path: "/echo" });
        const flooder = await RawClient.open(server.port, { path: "/echo" });
        flooder.socket.pause();
        const before = rss(server.child.pid);
        const payload = Buffer.alloc(125, 0x70);
        const frame = maskedFrame(kind === "ping" ? Opcode.Ping : Opcode.Pong, payload);
        flooder.write(Buffer.concat(new Array<Buffer>(5000).fill(frame)));
        bystander.sendText("are you there?");
        assert.equal((await bystander.next("text")).text, "are you there?");
        await new Promise((resolve) => setTimeout(resolve, 500));
        const during = rss(server.child.pid);
        flooder.socket.resume();
        await flooder.waitForClose(10_000);
        const pongs = flooder.events.filter((event) => event.type === "pong").length;
        const closes = closeEvents(flooder);
        console.log(`${kind} flood: ${pongs} pongs for 5000 ${kind}s, close ${closes.map((event) => event.code).join(",") || "(TCP only)"}; server RSS ${megabytes(before)} -> ${megabytes(during)}`);
        assert.ok(pongs <= 200, `${pongs} pongs`);
        if (kind === "pong") assert.equal(pongs, 0, "§5.5.3: an unsolicited pong is not answered");
        assert.equal(closes[closes.length - 1]?.code, CloseCode.PolicyViolation);
        assert.ok(during - before < 50 * MB, `RSS grew by ${megabytes(during - before)}`);
        bystander.sendText("still there?");
        assert.equal((await bystander.next("text")).text, "still there?");
        bystander.destroy();
      } finally {
        await server.stop();
      }
    });
  }
});

// ── Origins ─────────────────────────────────────────────────────────────────

describe("cross-site WebSocket hijacking (RFC 6455 §10.2)", () => {
  let server: SpawnedServer;
  before(async () => {
    server = await spawnServer();
  });
  after(async () => {
    await server.stop();
  });

  for (const [name, headers] of [
    ["a foreign Origin", { Origin: "http://evil.example" }],
    ["a foreign Origin with the user's cookie", { Origin: "http://evil.example", Cookie: "session=secret" }],
    ["a foreign https Origin on the chat room", { Origin: "https://evil.example:443" }],
    ["an Origin that only starts like ours", { Origin: "http://127.0.0.1.evil.example" }],
  ] as const) {
    test(`${name} gets 403 and no WebSocket`, async () => {
      for (const path of ["/", "/echo"]) {
        const client = await RawClient.open(server.port, { path, headers });
        assert.equal(client.handshake?.status, 403, `${path}: ${client.handshake?.status}`);
        assert.equal(client.handshake?.headers["sec-websocket-accept"], undefined);
        await client.waitForClose();
      }
    });
  }

  test("the server's own origin gets 101", async () => {
    for (const origin of [`http://127.0.0.1:${server.port}`, `http://localhost:${server.port}`]) {
      const client = await RawClient.open(server.port, { path: "/", headers: { Origin: origin } });
      assert.equal(client.handshake?.status, 101, origin);
      client.destroy();
    }
  });
});

// ── Fragment floods ─────────────────────────────────────────────────────────

describe("fragment floods (RFC 6455 §5.4)", () => {
  let server: SpawnedServer;
  before(async () => {
    server = await spawnServer();
  });
  after(async () => {
    await server.stop();
  });

  /** One text message as `count` masked fragments of one byte each, with a ping every `pingEvery` fragments. */
  function fragmentedMessage(count: number, pingEvery = 0): { bytes: Buffer; text: string; pings: string[] } {
    const frameSize = 7;
    const pings: string[] = [];
    const parts: Buffer[] = [];
    const fragments = Buffer.allocUnsafe(count * frameSize);
    let text = "";
    let start = 0;
    for (let index = 0; index < count; index++) {
      const character = String.fromCharCode(0x61 + (index % 26));
      text += character;
      const at = index * frameSize;
      fragments[at] = (index === count - 1 ? 0x80 : 0) | (index === 0 ? Opcode.Text : Opcode.Continuation);
      fragments[at + 1] = 0x80 | 1;
      maskKey.copy(fragments, at + 2);
      fragments[at + 6] = character.charCodeAt(0) ^ maskKey[0]!;
      if (pingEvery > 0 && index % pingEvery === pingEvery - 1 && index < count - 1) {
        parts.push(fragments.subarray(start, at + frameSize));
        start = at + frameSize;
        const ping = `ping ${pings.length}`;
        pings.push(ping);
        parts.push(maskedFrame(Opcode.Ping, ping)); // §5.5: control frames may be injected between fragments
      }
    }
    parts.push(fragments.subarray(start));
    return { bytes: Buffer.concat(parts), text, pings };
  }

  test("one message in 100,000 one-byte fragments is echoed whole; server RSS stays bounded", async () => {
    const client = await RawClient.open(server.port, { path: "/echo" });
    const before = rss(server.child.pid);
    const sampler = new RssSampler(server.child.pid, 50);
    const { bytes, text } = fragmentedMessage(100_000);
    client.write(bytes);
    const echoed = await client.next("text", 60_000);
    const peak = sampler.stop();
    console.log(`100,000 fragments (${megabytes(bytes.length)} on the wire): server RSS ${megabytes(before)} -> peak ${megabytes(peak)}`);
    assert.equal(echoed.text.length, text.length);
    assert.equal(echoed.text, text);
    assert.ok(peak - before < 100 * MB, `RSS grew by ${megabytes(peak - before)}`);
    client.destroy();
  });

  test("the same with 50 pings between the fragments: 50 pongs, in order, before the whole message", async () => {
    const client = await RawClient.open(server.port, { path: "/echo" });
    const { bytes, text, pings } = fragmentedMessage(100_000, 2000);
    assert.equal(pings.length, 49);
    client.write(bytes);
    const echoed = await client.next("text", 60_000);
    assert.equal(echoed.text, text);
    const pongs = client.events.filter((event) => event.type === "pong").map((event) => event.data.toString());
    assert.deepEqual(pongs, pings);
    const textIndex = client.events.findIndex((event) => event.type === "text");
    const lastPong = client.events.map((event) => event.type).lastIndexOf("pong");
    assert.ok(lastPong < textIndex, "each pong was sent as its ping arrived, not after the message");
    client.destroy();
  });

  test("200,000 empty fragments: closed with 1009 once past the fragment limit (131,072)", async () => {
    const client = await RawClient.open(server.port, { path: "/echo" });
    const count = 200_000;
    const bytes = Buffer.allocUnsafe(count * 6);
    for (let index = 0; index < count; index++) {
      bytes[index * 6] = index === 0 ? Opcode.Text : Opcode.Continuation; // FIN never set
      bytes[index * 6 + 1] = 0x80;
      maskKey.copy(bytes, index * 6 + 2);
    }
    client.write(bytes);
    await client.waitForClose(30_000);
    const closes = closeEvents(client);
    assert.equal(closes.length, 1);
    assert.equal(closes[0]!.code, CloseCode.MessageTooBig);
    assert.ok(await echoStillWorks(server.port));
  });
});

// ── Crash isolation ─────────────────────────────────────────────────────────

describe("crash isolation: a handler that throws (RFC 6455 §7.4.1: 1011)", () => {
  let server: SpawnedServer;
  before(async () => {
    server = await spawnTypeScript(join(repositoryRoot, "test", "fixtures", "throwing-server.ts"), ["--port", "0", "--verbose"]);
  });
  after(async () => {
    await server.stop();
  });

  /** The id of the `index`-th connection the server logged (--verbose) as opened on `path`. */
  async function connectionIdOpenedOn(path: string, index: number): Promise<number> {
    const ids = () => [...server.output().matchAll(new RegExp(`connection (\\d+) opened from \\S+ on ${path}$`, "gm"))].map((match) => Number(match[1]));
    await waitUntil(() => ids().length > index, 5000, `the log line of connection ${index} on ${path}`);
    return ids()[index]!;
  }

  test("an Error thrown by onText closes that connection with 1011, is logged with the connection's id, and the process and /echo go on", async () => {
    const echo = await RawClient.open(server.port, { path: "/echo" });
    const client = await RawClient.open(server.port, { path: "/throw" });
    assert.equal(client.handshake?.status, 101);
    const id = await connectionIdOpenedOn("/throw", 0);
    client.sendText("hello");
    const close = await client.next("close");
    assert.equal(close.code, CloseCode.InternalError);
    await client.waitForClose();
    const logged = await server.waitForOutput(new RegExp(`connection ${id}: handler failed: Error: boom`));
    assert.ok(logged, "the error is logged with the connection's id");
    await server.waitForOutput(new RegExp(`connection ${id}: close handler failed`));
    assert.ok(server.alive(), "the process survived");
    echo.sendText("after the crash");
    assert.equal((await echo.next("text")).text, "after the crash");
    echo.destroy();
    assert.ok(await echoStillWorks(server.port));
  });

  test("a thrown string (not an Error) from onBinary: 1011 too", async () => {
    const client = await RawClient.open(server.port, { path: "/throw" });
    const id = await connectionIdOpenedOn("/throw", 1);
    client.sendFrame(Opcode.Binary, Buffer.from([1, 2, 3]));
    assert.equal((await client.next("close")).code, CloseCode.InternalError);
    await server.waitForOutput(new RegExp(`connection ${id}: handler failed: a thrown string`));
    assert.ok(server.alive());
  });

  test("50 connections throwing at once while an echo client talks: every one 1011, the echo unaffected", async () => {
    const echo = await RawClient.open(server.port, { path: "/echo" });
    const throwers = await Promise.all(Array.from({ length: 50 }, () => RawClient.open(server.port, { path: "/throw" })));
    for (const [index, client] of throwers.entries()) client.sendText(`throw ${index}`);
    for (let index = 0; index < 20; index++) echo.sendText(`echo ${index}`);
    for (let index = 0; index < 20; index++) assert.equal((await echo.next("text")).text, `echo ${index}`);
    for (const client of throwers) assert.equal((await client.next("close")).code, CloseCode.InternalError);
    assert.ok(server.alive());
    echo.destroy();
  });

  test("open() throwing after the 101: the client sees only valid frames (a 1011 close), never HTTP bytes", async () => {
    const client = await RawClient.open(server.port, { path: "/throw-on-open" });
    await client.waitForClose();
    assert.ok(server.alive());
    if (client.handshake?.status === 101) {
      const violations = client.events.filter((event) => event.type === "violation");
      assert.deepEqual(violations, [], "the bytes after the 101 are not WebSocket frames");
      const closes = closeEvents(client);
      if (closes.length > 0) assert.equal(closes[0]!.code, CloseCode.InternalError);
    } else {
      assert.ok((client.handshake?.status ?? 0) >= 500);
    }
  });
});
