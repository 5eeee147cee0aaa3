// Limits and defences: slow and oversized handshakes, connection limits,
// slow consumers, floods, cross-site WebSocket hijacking, fragment floods,
// and a handler that throws. server.ts runs in this process, so a test can
// give it endpoints of its own (the throwing handlers) and see its side of a
// connection. Memory is measured two ways, each bound below what a server
// that buffered without limit would need: what stays allocated after a full
// garbage collection (retainedBytes), or the peak RSS while the server works
// (RssSampler); both fail loudly when they cannot be read. Figures are
// printed, never timed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { CloseCode, Opcode, encodeFrame, type Endpoint } from "../server.ts";
import { echoStillWorks } from "../scripts/lib/live-fuzz.ts";
import { serveInProcess, useServer, withServer, type InProcessServer } from "./support/in-process.ts";
import { MB, megabytes, retainedBytes, rssOf, RssSampler } from "./support/memory.ts";
import { RawClient, textHead, textStartsWith } from "./support/raw-client.ts";
import { waitUntil } from "./support/wait.ts";

const maskKey = Buffer.from([0x12, 0x34, 0x56, 0x78]);
const noRateLimit = { messageRate: 1_000_000, messageBurst: 1_000_000 };

function maskedFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, maskKey });
}

/** A TCP connection that has sent `request` (some or all of an HTTP request) and reads what comes back. */
function sendRaw(port: number, request: string): Promise<RawClient> {
  return RawClient.open(port, { request, awaitAnswer: false });
}

/** The status of the first HTTP answer on `client`, if one came. */
function statusOf(client: RawClient): number | undefined {
  return client.handshake?.status;
}

/** Waits until the server has forgotten every connection but `keep` (its count drops when a socket closes). */
async function connectionsDropTo(server: InProcessServer, keep: number): Promise<void> {
  await waitUntil(() => server.running.connections.size <= keep, 5000, `the server to hold ${keep} connections`);
}

// ── The opening handshake's limits ──────────────────────────────────────────

describe("slow and oversized handshakes (RFC 6455 §4.1, §10.4)", () => {
  const timeoutMs = 500;
  const server = useServer({ handshakeTimeoutMs: timeoutMs });

  test(
    "slowloris: half a request line, then silence: answered 408 and disconnected, not before the handshake " +
      "timeout",
    async () => {
      const connectedAt = Date.now();
      const raw = await sendRaw(server().port, "GET /echo HTT");
      await raw.waitForClose(timeoutMs + 4000);
      const waited = Date.now() - connectedAt;
      // The server's clock starts when it accepts the connection, after ours: it cannot have waited longer than we did.
      assert.ok(waited >= timeoutMs - 20, `dropped after ${waited} ms; the handshake timeout is ${timeoutMs} ms`);
      assert.equal(statusOf(raw), 408, `got ${JSON.stringify(raw.handshake)}`);
    },
  );

  test("slowloris that trickles: a header line every 200 ms does not extend the deadline", async () => {
    const raw = await sendRaw(server().port, "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    // The trickle is the stimulus: one line every 200 ms while the connection lasts, at most 25 (5 s).
    let lines = 0;
    for (; lines < 25 && !raw.closed; lines++) {
      raw.write(`X-Trickle-${lines}: ${"a".repeat(10)}\r\n`);
      await raw.waitFor(() => raw.closed, 200).catch(() => undefined);
    }
    await raw.waitForClose(timeoutMs + 4000);
    // A deadline reset by each line would have let all 25 through (and then some).
    assert.ok(lines <= 8, `${lines} lines were sent before the server closed (${timeoutMs} ms at 200 ms a line is 3)`);
    assert.equal(statusOf(raw), 408, `got ${JSON.stringify(raw.handshake)}`);
  });

  /** A keep-alive connection: one full request answered, then half of a second one; what came back for it. */
  async function keepAliveSlowloris(): Promise<{ closed: boolean; secondAnswer: Buffer }> {
    const raw = await RawClient.open(server().port, { request: "GET /client.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" });
    assert.equal(statusOf(raw), 200);
    const contentLength = Number(raw.handshake!.headers["content-length"]);
    await raw.waitFor(() => raw.handshake!.bodyBytes.length >= contentLength, 4000, "the first body");
    raw.write("GET / HTT");
    await raw.waitForClose(timeoutMs + 4000);
    return { closed: raw.closed, secondAnswer: raw.handshake!.bodyBytes.subarray(contentLength) };
  }

  test("slowloris on a keep-alive connection: the second request's half line is dropped too", async () => {
    const { closed, secondAnswer } = await keepAliveSlowloris();
    assert.ok(closed);
    assert.match(secondAnswer.toString("latin1"), /^HTTP\/1\.1 408 /, JSON.stringify(secondAnswer.toString("latin1")));
  });

  test("slowloris on a keep-alive connection is answered 408 (RFC 9110 §15.5.9), not 400", async () => {
    const { secondAnswer } = await keepAliveSlowloris();
    const text = secondAnswer.toString("latin1");
    assert.match(
      text,
      /^HTTP\/1\.1 408 Request Timeout\r\n/,
      `the second answer: ${JSON.stringify(text.slice(0, 80))}`,
    );
  });

  test("200 slowloris connections at once: all dropped, and /echo keeps working meanwhile", async () => {
    const stalled = await Promise.all(
      Array.from({ length: 200 }, () => sendRaw(server().port, "GET / HTTP/1.1\r\nHost: x\r\n")),
    );
    assert.ok(await echoStillWorks(server().port), "echo works while 200 requests hang");
    await waitUntil(
      () => stalled.every((raw) => raw.closed),
      timeoutMs + 5000,
      "every stalled connection to be dropped",
    );
    assert.deepEqual(new Set(stalled.map(statusOf)), new Set([408]), "each one answered 408");
  });

  for (const [name, headers] of [
    [
      "64 KiB of headers in 1,024 lines",
      Array.from(
        { length: 1024 },
        (_, index) => `X-Padding-${String(index).padStart(4, "0")}: ${"p".repeat(48)}\r\n`,
      ).join(""),
    ],
    ["one header line of 64 KiB", `X-Huge: ${"h".repeat(64 * 1024)}\r\n`],
  ] as const) {
    test(`request headers are bounded: ${name} get 431 and the connection closes; the server survives`, async () => {
      const raw = await sendRaw(
        server().port,
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          headers +
          "\r\n",
      );
      await raw.waitForClose(5000);
      assert.equal(statusOf(raw), 431, JSON.stringify(raw.handshake));
      assert.equal(raw.handshake?.headers["sec-websocket-accept"], undefined);
      assert.ok(await echoStillWorks(server().port));
    });
  }
});

// ── Connection limits ───────────────────────────────────────────────────────

describe(
  "connection limits: 503 with Retry-After before any WebSocket state " + "(RFC 6455 §4.2.2, RFC 9110 §10.2.3)",
  () => {
    test(
      "--max-connections 5: the 6th WebSocket gets 503 and Retry-After; " + "after two close, two more are accepted",
      async () => {
        await withServer({ maxConnections: 5 }, async (server) => {
          const clients: RawClient[] = [];
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
          assert.equal(server.running.connections.size, 5, "no WebSocket state for the refused one");
          // The five still work.
          clients[4]!.sendText("still open");
          assert.equal((await clients[4]!.next("text")).text, "still open");
          // Two leave with a closing handshake (§7.1.2), and the server forgets them when their sockets close...
          for (const client of clients.splice(0, 2)) {
            client.close(1000);
            await client.waitForClose();
          }
          await connectionsDropTo(server, 3);
          // ...so two may come.
          for (let index = 0; index < 2; index++) {
            const client = await RawClient.open(server.port, { path: "/echo" });
            assert.equal(client.handshake?.status, 101);
            clients.push(client);
          }
          const again = await RawClient.open(server.port, { path: "/echo" });
          assert.equal(again.handshake?.status, 503, "full again");
        });
      },
    );

    test(
      "--max-connections-per-ip 3: a 4th from the same address gets 503 and Retry-After; another address is not " +
        "counted with it",
      async () => {
        await withServer({ maxConnectionsPerIp: 3 }, async (server) => {
          const clients: RawClient[] = [];
          for (let index = 0; index < 3; index++) clients.push(await RawClient.open(server.port, { path: "/echo" }));
          assert.deepEqual(
            clients.map((client) => client.handshake?.status),
            [101, 101, 101],
          );
          const fourth = await RawClient.open(server.port, { path: "/echo" });
          assert.equal(fourth.handshake?.status, 503);
          assert.ok(Number(fourth.handshake?.headers["retry-after"]) > 0);
          await fourth.waitForClose();
          // 127.0.0.2 is another address on Linux's loopback: it has its own count.
          const other = await RawClient.connect(server.port, { path: "/echo", localAddress: "127.0.0.2" });
          assert.equal(other.handshake?.status, 101);
          other.destroy();
          clients.shift()!.destroy();
          await connectionsDropTo(server, 2);
          const admitted = await RawClient.open(server.port, { path: "/echo" });
          assert.equal(admitted.handshake?.status, 101, "a place freed by a closed connection is given again");
        });
      },
    );
  },
);

// ── Slow consumers ──────────────────────────────────────────────────────────

describe("a slow consumer (RFC 6455 §7.4.1: 1008 policy violation)", () => {
  test(
    "one chat client never reads, 20 do, a 20 MB burst: every reader gets every message once, the stalled one is " +
      "closed with 1008",
    async () => {
      // A long closing timeout: the server must not drop the stalled client before it has read its backlog
      // and the close frame behind it (this process is busy with 20 readers); the client answers the close.
      const server = await serveInProcess({ ...noRateLimit, historySize: 100, closingTimeoutMs: 60_000 });
      const TOTAL = 10_000;
      const READERS = 20;
      const WINDOW = 1000; // messages sent ahead of the slowest reader: about 2 MB
      interface Reader {
        client: RawClient;
        seen: Uint8Array;
        count: number;
        duplicates: number;
        closedWith: number | undefined;
      }
      const readers: Reader[] = [];
      try {
        const stalled = await RawClient.open(server.port, { path: "/?name=stalled", respond: true });
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
            reader.client.sendText(
              JSON.stringify({ type: "say", id: `burst-${sent}`, text: head + filler.slice(head.length) }),
            );
            sent++;
          }
        };
        for (let index = 0; index < READERS; index++) {
          const client = await RawClient.open(server.port, { path: `/?name=reader${index}` });
          assert.equal(client.handshake?.status, 101);
          const reader: Reader = {
            client,
            seen: new Uint8Array(TOTAL + 1),
            count: 0,
            duplicates: 0,
            closedWith: undefined,
          };
          readers.push(reader);
          // Counted as they come, not kept: 20 MB x 20 readers.
          client.onEvent = (event) => {
            if (event.type === "text" && textStartsWith(event, '{"type":"message"')) {
              const seq = Number(/"seq":(\d+)/.exec(textHead(event, 48))?.[1]);
              if (reader.seen[seq]) reader.duplicates++;
              else {
                reader.seen[seq] = 1;
                reader.count++;
              }
            } else if (event.type === "close") reader.closedWith = event.code;
          };
          client.socket.on("data", pump);
        }
        // When the server gives up on the stalled client, it reads what it had queued: a close frame must end it.
        const slowConsumerLogged = server
          .waitForOutput(/closing a slow consumer/, 120_000)
          .then(() => stalled.socket.resume());
        started = true;
        pump();
        const everyone = () => readers.every((reader) => reader.count === TOTAL || reader.client.closed);
        await waitUntil(everyone, 150_000, "every reader to get every message");
        await slowConsumerLogged;
        await stalled.waitForClose(15_000);
        const stalledMessages = stalled.events.filter((event) => textStartsWith(event, '{"type":"message"')).length;
        const stalledCloses = stalled.closeFrames();
        console.log(
          `slow consumer: ${READERS} readers x ${TOTAL} messages of 2000 characters; the stalled client got ` +
            `${stalledMessages} before its close ${stalledCloses.map((event) => event.code).join(",")}`,
        );
        for (const [index, reader] of readers.entries()) {
          assert.equal(reader.closedWith, undefined, `reader ${index} was closed`);
          assert.equal(reader.client.closed, false, `reader ${index} lost its connection`);
          assert.equal(reader.count, TOTAL, `reader ${index} got ${reader.count} messages`);
          assert.equal(reader.duplicates, 0, `reader ${index} got duplicates`);
        }
        assert.ok(stalledMessages < TOTAL, "the stalled client did not get the whole burst");
        assert.ok(stalled.closed, "the stalled client's TCP connection is closed");
        assert.deepEqual(
          stalledCloses.map((event) => event.code),
          [CloseCode.PolicyViolation],
          "one close frame, 1008",
        );
        assert.equal(stalled.events.at(-1)?.type, "close", "nothing after it");
      } finally {
        await server.stop();
      }
    },
  );

  test(
    "server memory stays bounded: " + "a 48 MB burst for a client that never reads leaves less than 24 MB held",
    async (t) => {
      // A server that queued everything for the stalled client would hold the whole burst.
      const config = { ...noRateLimit, historySize: 100, keepaliveIntervalMs: 0, closingTimeoutMs: 60_000 };
      await withServer(config, async (server) => {
        const stalled = await RawClient.open(server.port, { path: "/?name=stalled", respond: true });
        await stalled.next("text");
        stalled.socket.pause();
        const sender = await RawClient.open(server.port, { path: "/?name=sender" });
        await sender.next("text");
        let received = 0;
        sender.onEvent = (event) => {
          if (textStartsWith(event, '{"type":"message"')) received++;
        };
        const text = "😀".repeat(2000); // 8,000 bytes of UTF-8, the longest message allowed
        const total = 6000; // 48 MB for the stalled client
        const before = retainedBytes();
        let sent = 0;
        while (received < total) {
          for (; sent < total && sent - received < 64; sent++)
            sender.sendText(JSON.stringify({ type: "say", id: `m${sent}`, text }));
          const ready = () => (sent < total && sent - received < 64) || received >= total;
          await sender.waitFor(ready, 10_000, `the echo of message ${received}`);
        }
        const held = retainedBytes() - before;
        t.diagnostic(`${megabytes(total * 8000)} said while one client did not read; ${megabytes(held)} still held`);
        assert.ok(held < 24 * MB, `the server holds ${megabytes(held)} more than before the burst`);
        await server.waitForOutput(/closing a slow consumer/);
        stalled.socket.resume();
        assert.equal((await stalled.next("close", 10_000)).code, CloseCode.PolicyViolation);
      });
    },
  );
});

// ── Floods ──────────────────────────────────────────────────────────────────

describe("floods (RFC 6455 §5.5.2, §10.4)", () => {
  test(
    "chat rate limit (--message-rate 5 --message-burst 5): a burst of 40 gets rate_limited errors, then 1008; the " +
      "bystander is unaffected",
    async () => {
      await withServer({ messageRate: 5, messageBurst: 5 }, async (server) => {
        const bystander = await RawClient.open(server.port, { path: "/?name=bystander" });
        const flooder = await RawClient.open(server.port, { path: "/?name=flooder" });
        await flooder.next("text"); // welcome
        const say = (index: number) => JSON.stringify({ type: "say", id: `flood-${index}`, text: `flood ${index}` });
        flooder.write(Buffer.concat(Array.from({ length: 40 }, (_, index) => maskedFrame(Opcode.Text, say(index)))));
        await flooder.waitForClose();
        const texts = flooder.events.flatMap((event) =>
          event.type === "text" ? [JSON.parse(event.text) as { type: string; code?: string }] : [],
        );
        const accepted = texts.filter((message) => message.type === "message").length;
        const limited = texts.filter((message) => message.type === "error" && message.code === "rate_limited").length;
        const closes = flooder.closeFrames().map((event) => event.code);
        console.log(`rate limit: ${accepted} accepted, ${limited} rate_limited, then close ${closes.join(",")}`);
        assert.ok(accepted >= 5 && accepted <= 6, `${accepted} accepted`);
        assert.ok(limited >= 1, "rate_limited errors came first");
        assert.deepEqual(closes, [CloseCode.PolicyViolation]);
        // The bystander saw what was accepted, and can talk.
        bystander.sendText(JSON.stringify({ type: "say", id: "calm-1", text: "hello" }));
        const own = () =>
          bystander.events.some((event) => event.type === "text" && event.text.includes('"id":"calm-1"'));
        await bystander.waitFor(own, 5000, "the bystander's own message");
        const seen = bystander.events.filter(
          (event) => event.type === "text" && event.text.includes('"id":"flood-'),
        ).length;
        assert.equal(seen, accepted, "the bystander got exactly the accepted flood messages");
      });
    },
  );

  test("chat rate limit: sustained sending far above the rate is rate-limited, then closed with 1008", async () => {
    await withServer({ messageRate: 5, messageBurst: 5 }, async (server) => {
      const abuser = await RawClient.open(server.port, { path: "/?name=abuser" });
      await abuser.next("text"); // welcome
      // One say after the answer to the previous one, as fast as the room answers: at most 200.
      const answers = () => abuser.events.filter((event) => event.type === "text").length;
      const before = answers();
      for (let index = 0; index < 200 && abuser.closeFrames().length === 0; index++) {
        abuser.sendText(JSON.stringify({ type: "say", id: `steady-${index}`, text: `steady ${index}` }));
        const answered = () => answers() > before + index || abuser.closeFrames().length > 0;
        await abuser.waitFor(answered, 5000, `the answer to say ${index}`);
      }
      await abuser.waitForClose(5000);
      const limited = abuser.events.filter(
        (event) => event.type === "text" && event.text.includes('"rate_limited"'),
      ).length;
      const closes = abuser.closeFrames().map((event) => event.code);
      console.log(`sustained flood: ${limited} rate_limited errors before close ${closes.join(",")}`);
      assert.ok(limited >= 1);
      assert.deepEqual(closes, [CloseCode.PolicyViolation]);
    });
  });

  for (const kind of ["ping", "pong"] as const) {
    test(
      `a ${kind} flood (48 MB, from a client that does not read) is not answered without bound: closed with 1008, ` +
        `memory bounded, other clients unaffected`,
      async (t) => {
        await withServer({ keepaliveIntervalMs: 0 }, async (server) => {
          const bystander = await RawClient.open(server.port, { path: "/echo" });
          const flooder = await RawClient.open(server.port, { path: "/echo" });
          flooder.socket.pause();
          // 48 MB of 125-byte frames, a megabyte at a time as fast as the server takes them: a server
          // that answered every ping would hold 48 MB of pongs for a client that does not read.
          const frame = maskedFrame(kind === "ping" ? Opcode.Ping : Opcode.Pong, Buffer.alloc(125, 0x70));
          const chunk = Buffer.concat(new Array<Buffer>(Math.floor(MB / frame.length)).fill(frame));
          const side = server.connectionOf(flooder);
          const stopped = () => flooder.closed || side.state !== "open";
          const before = retainedBytes();
          let written = 0;
          for (let index = 0; index < 48 && !stopped(); index++) {
            written += chunk.length;
            if (flooder.socket.write(chunk)) continue;
            let drained = false;
            flooder.socket.once("drain", () => (drained = true));
            await waitUntil(() => drained || stopped(), 10_000, "the server to take more, or to give up");
          }
          bystander.sendText("are you there?");
          assert.equal((await bystander.next("text")).text, "are you there?");
          const held = retainedBytes() - before;
          flooder.socket.resume();
          await flooder.waitForClose(10_000);
          const pongs = flooder.events.filter((event) => event.type === "pong").length;
          const closes = flooder.closeFrames().map((event) => event.code);
          const figures = `${pongs} pongs; close ${closes.join(",")}; ${megabytes(held)} held`;
          t.diagnostic(`${megabytes(written)} of ${kind}s written; ${figures}`);
          assert.ok(pongs <= 200, `${pongs} pongs`);
          if (kind === "pong") assert.equal(pongs, 0, "§5.5.3: an unsolicited pong is not answered");
          assert.deepEqual(closes, [CloseCode.PolicyViolation]);
          assert.ok(held < 24 * MB, `the server holds ${megabytes(held)} more than before the flood`);
          bystander.sendText("still there?");
          assert.equal((await bystander.next("text")).text, "still there?");
        });
      },
    );
  }
});

// ── Origins ─────────────────────────────────────────────────────────────────

describe("cross-site WebSocket hijacking (RFC 6455 §10.2)", () => {
  const server = useServer();

  for (const [name, headers] of [
    ["a foreign Origin", { Origin: "http://evil.example" }],
    ["a foreign Origin with the user's cookie", { Origin: "http://evil.example", Cookie: "session=secret" }],
    ["a foreign https Origin on the chat room", { Origin: "https://evil.example:443" }],
    ["an Origin that only starts like ours", { Origin: "http://127.0.0.1.evil.example" }],
  ] as const) {
    test(`${name} gets 403 and no WebSocket`, async () => {
      for (const path of ["/", "/echo"]) {
        const client = await RawClient.open(server().port, { path, headers });
        assert.equal(client.handshake?.status, 403, `${path}: ${client.handshake?.status}`);
        assert.equal(client.handshake?.headers["sec-websocket-accept"], undefined);
        await client.waitForClose();
      }
    });
  }

  test("the server's own origin gets 101", async () => {
    for (const origin of [`http://127.0.0.1:${server().port}`, `http://localhost:${server().port}`]) {
      const client = await RawClient.open(server().port, { path: "/", headers: { Origin: origin } });
      assert.equal(client.handshake?.status, 101, origin);
      client.destroy();
    }
  });
});

// ── Fragment floods ─────────────────────────────────────────────────────────

/** One text message as `count` masked fragments of one byte each, with a ping every `pingEvery` fragments. */
function fragmentedMessage(count: number, pingEvery = 0): { bytes: Buffer; text: string; pings: string[] } {
  const frameSize = 7;
  const pings: string[] = [];
  const parts: Buffer[] = [];
  const fragments = Buffer.allocUnsafe(count * frameSize);
  const characters = Buffer.allocUnsafe(count);
  let start = 0;
  for (let index = 0; index < count; index++) {
    const character = 0x61 + (index % 26);
    characters[index] = character;
    const at = index * frameSize;
    fragments[at] = (index === count - 1 ? 0x80 : 0) | (index === 0 ? Opcode.Text : Opcode.Continuation);
    fragments[at + 1] = 0x80 | 1;
    maskKey.copy(fragments, at + 2);
    fragments[at + 6] = character ^ maskKey[0]!;
    if (pingEvery > 0 && index % pingEvery === pingEvery - 1 && index < count - 1) {
      parts.push(fragments.subarray(start, at + frameSize));
      start = at + frameSize;
      const ping = `ping ${pings.length}`;
      pings.push(ping);
      parts.push(maskedFrame(Opcode.Ping, ping)); // §5.5: control frames may be injected between fragments
    }
  }
  parts.push(fragments.subarray(start));
  return { bytes: Buffer.concat(parts), text: characters.toString("latin1"), pings };
}

describe("fragment floods (RFC 6455 §5.4)", () => {
  const server = useServer();

  test(
    "one message in 2,000,000 one-byte fragments is echoed whole; " + "memory stays proportional to the payload",
    async (t) => {
      // The default limit is 131,072 fragments; this server allows more, so that a server keeping
      // anything per fragment (a buffer, an object: 100 bytes or more) would need 200 MB.
      const count = 2_000_000;
      await withServer({ maxFragments: 4_000_000, maxPayload: 4 * MB }, async (many) => {
        const client = await RawClient.open(many.port, { path: "/echo" });
        const { bytes, text } = fragmentedMessage(count);
        const before = rssOf(process.pid);
        const sampler = new RssSampler(process.pid, 20, { required: true });
        client.write(bytes);
        const echoed = await client.next("text", 60_000);
        const growth = sampler.stop() - before;
        t.diagnostic(
          `${count} fragments (${megabytes(bytes.length)} on the wire): RSS peak ${megabytes(growth)} above the ` +
            `baseline`,
        );
        assert.equal(echoed.text.length, text.length);
        assert.equal(echoed.text, text);
        assert.ok(growth < 64 * MB, `RSS grew by ${megabytes(growth)} for a message of ${megabytes(count)}`);
      });
    },
  );

  test(
    "100,000 one-byte fragments with 49 pings between them: " + "49 pongs, in order, before the whole message",
    async () => {
      const client = await RawClient.open(server().port, { path: "/echo" });
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
    },
  );

  test("200,000 empty fragments: closed with 1009 once past the fragment limit (131,072)", async () => {
    const client = await RawClient.open(server().port, { path: "/echo" });
    const count = 200_000;
    const bytes = Buffer.allocUnsafe(count * 6);
    for (let index = 0; index < count; index++) {
      bytes[index * 6] = index === 0 ? Opcode.Text : Opcode.Continuation; // FIN never set
      bytes[index * 6 + 1] = 0x80;
      maskKey.copy(bytes, index * 6 + 2);
    }
    client.write(bytes);
    await client.waitForClose(30_000);
    assert.deepEqual(
      client.closeFrames().map((event) => event.code),
      [CloseCode.MessageTooBig],
    );
    assert.ok(await echoStillWorks(server().port));
  });
});

// ── Crash isolation ─────────────────────────────────────────────────────────

describe("crash isolation: a handler that throws (RFC 6455 §7.4.1: 1011)", () => {
  // Endpoints whose handlers throw, added to server.ts as a program that embeds it would. An
  // exception that escaped the server would fail this test process (node:test reports it).
  //   /throw           onText throws an Error; onBinary throws a string; onClose throws
  //   /throw-on-open   the endpoint's open() throws, after the 101 has been written
  const throwing: Endpoint = {
    subprotocols: [],
    open(connection) {
      connection.handler = {
        onText(_connection, text) {
          throw new Error(`boom: the /throw handler failed on purpose (message ${JSON.stringify(text.slice(0, 40))})`);
        },
        onBinary() {
          throw "a thrown string, not an Error"; // eslint-disable-line no-throw-literal
        },
        onClose() {
          throw new Error("boom: onClose failed on purpose");
        },
      };
    },
  };
  const throwingOnOpen: Endpoint = {
    subprotocols: [],
    open() {
      throw new Error("boom: open() failed on purpose");
    },
  };
  const extraEndpoints = new Map([
    ["/throw", throwing],
    ["/throw-on-open", throwingOnOpen],
  ]);
  const server = useServer({ verbose: true, extraEndpoints });

  /** The id of the `index`-th connection the server logged (verbose) as opened on `path`. */
  async function connectionIdOpenedOn(path: string, index: number): Promise<number> {
    const ids = () =>
      [
        ...server()
          .output()
          .matchAll(new RegExp(`connection (\\d+) opened from \\S+ on ${path}$`, "gm")),
      ].map((match) => Number(match[1]));
    await waitUntil(() => ids().length > index, 5000, `the log line of connection ${index} on ${path}`);
    return ids()[index]!;
  }

  test(
    "an Error thrown by onText closes that connection with 1011, is logged with the connection's id, and /echo " +
      "goes on",
    async () => {
      const echo = await RawClient.open(server().port, { path: "/echo" });
      const client = await RawClient.open(server().port, { path: "/throw" });
      assert.equal(client.handshake?.status, 101);
      const id = await connectionIdOpenedOn("/throw", 0);
      client.sendText("hello");
      const close = await client.next("close");
      assert.equal(close.code, CloseCode.InternalError);
      await client.waitForClose();
      await server().waitForOutput(new RegExp(`connection ${id}: handler failed: Error: boom`));
      await server().waitForOutput(new RegExp(`connection ${id}: close handler failed`));
      echo.sendText("after the crash");
      assert.equal((await echo.next("text")).text, "after the crash");
      echo.destroy();
      assert.ok(await echoStillWorks(server().port));
    },
  );

  test("a thrown string (not an Error) from onBinary: 1011 too", async () => {
    const client = await RawClient.open(server().port, { path: "/throw" });
    const id = await connectionIdOpenedOn("/throw", 1);
    client.sendFrame(Opcode.Binary, Buffer.from([1, 2, 3]));
    assert.equal((await client.next("close")).code, CloseCode.InternalError);
    await server().waitForOutput(new RegExp(`connection ${id}: handler failed: a thrown string`));
  });

  test("50 connections throwing at once while an echo client talks: every one 1011, the echo unaffected", async () => {
    const echo = await RawClient.open(server().port, { path: "/echo" });
    const throwers = await Promise.all(
      Array.from({ length: 50 }, () => RawClient.open(server().port, { path: "/throw" })),
    );
    for (const [index, client] of throwers.entries()) client.sendText(`throw ${index}`);
    for (let index = 0; index < 20; index++) echo.sendText(`echo ${index}`);
    for (let index = 0; index < 20; index++) assert.equal((await echo.next("text")).text, `echo ${index}`);
    for (const client of throwers) assert.equal((await client.next("close")).code, CloseCode.InternalError);
    echo.destroy();
  });

  test(
    "open() throwing after the 101: " + "the client sees only valid frames (a 1011 close), never HTTP bytes",
    async () => {
      const client = await RawClient.open(server().port, { path: "/throw-on-open" });
      await client.waitForClose();
      assert.equal(client.handshake?.status, 101, "the 101 was written before open() ran");
      assert.deepEqual(
        client.events.filter((event) => event.type === "violation"),
        [],
        "the bytes after the 101 are frames",
      );
      assert.deepEqual(
        client.closeFrames().map((event) => event.code),
        [CloseCode.InternalError],
      );
      assert.equal(client.events.at(-1)?.type, "close", "and nothing after the close frame");
    },
  );
});
