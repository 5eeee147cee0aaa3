// RFC 6455 §5 and §7 on a live connection: pings, the closing handshake,
// failing the connection, keepalive, timeouts and flow control. server.ts
// runs in this process, so a test can also see the server's side of a
// connection (is it reading? what has it queued?); the clients are raw TCP.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { constants as zlibConstants, deflateRawSync } from "node:zlib";
import { serveInProcess, withServer, type InProcessServer } from "./support/in-process.ts";
import { MB, megabytes, rssOf, RssSampler } from "./support/memory.ts";
import { RawClient, textStartsWith, type RawClientOptions } from "./support/raw-client.ts";
import { waitUntil } from "./support/wait.ts";
import { Opcode, encodeClosePayload, encodeFrame, type DecoderEvent } from "../server.ts";

/** Plain server: no keepalive pings to get in the way. */
let plainServer: InProcessServer;
/** Small limits: --max-payload 1000, --closing-timeout 300. */
let limitServer: InProcessServer;
/** --keepalive-interval 300 --keepalive-timeout 300. */
let keepaliveServer: InProcessServer;
/** --max-buffered 65536, and a chat room with no rate limit to speak of. */
let slowServer: InProcessServer;
const clients: RawClient[] = [];

before(async () => {
  const noRateLimit = { messageRate: 1_000_000, messageBurst: 1_000_000 };
  [plainServer, limitServer, keepaliveServer, slowServer] = await Promise.all([
    serveInProcess({ keepaliveIntervalMs: 0 }),
    serveInProcess({ keepaliveIntervalMs: 0, maxPayload: 1000, closingTimeoutMs: 300 }),
    serveInProcess({ keepaliveIntervalMs: 300, keepaliveTimeoutMs: 300 }),
    serveInProcess({ keepaliveIntervalMs: 0, maxBufferedBytes: 65536, ...noRateLimit }),
  ]);
});

after(async () => {
  for (const client of clients) client.destroy();
  await Promise.all([plainServer, limitServer, keepaliveServer, slowServer].map((server) => server?.stop()));
});

async function open(server: { port: number }, options: RawClientOptions = {}): Promise<RawClient> {
  const client = await RawClient.open(server.port, options);
  clients.push(client);
  assert.equal(client.handshake?.status, 101, `handshake: ${client.handshake?.body}`);
  return client;
}

function closeFrame(code?: number, reason = ""): Buffer {
  return encodeFrame(Opcode.Close, encodeClosePayload(code, reason), { maskKey: randomBytes(4) });
}

function maskedFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, maskKey: randomBytes(4) });
}

/** The server closed: a close frame with `code` was the last thing it sent, then TCP closed. */
async function assertServerClosed(client: RawClient, code: number, timeoutMs = 5000): Promise<void> {
  const close = await client.next("close", timeoutMs);
  assert.equal(close.code, code, `close code; reason ${close.reason}`);
  await client.waitForClose(timeoutMs);
  const types = () => JSON.stringify(client.events.map((event) => event.type));
  assert.equal(client.events.at(-1)?.type, "close", `nothing after the close frame; events: ${types()}`);
  assert.equal(client.events.filter((event) => event.type === "close").length, 1, "one close frame");
  assert.equal(client.events.filter((event) => event.type === "violation").length, 0, "the server's frames were valid");
}

const slowConsumerClosings = (server: InProcessServer) =>
  (server.output().match(/closing a slow consumer/g) ?? []).length;

describe("§5.5.2 and §5.5.3 ping and pong", () => {
  test("§5.5.2 a ping is answered by a pong with the same payload (empty, text, 125 bytes)", async () => {
    const client = await open(plainServer);
    const payloads = [Buffer.alloc(0), Buffer.from("Hello"), randomBytes(125)];
    for (const payload of payloads) {
      client.sendFrame(Opcode.Ping, payload);
      const pong = await client.next("pong");
      assert.deepEqual(pong.data, payload);
    }
    client.destroy();
  });

  test("§5.5.3 an unsolicited pong is ignored and the connection stays usable", async () => {
    const client = await open(plainServer);
    client.sendFrame(Opcode.Pong, "nobody asked");
    client.sendFrame(Opcode.Pong, "");
    client.sendText("still here");
    assert.equal((await client.next("text")).text, "still here");
    assert.deepEqual(
      client.events.map((event) => event.type),
      ["text"],
      "no answer to the pongs",
    );
    assert.equal(client.closed, false);
    client.destroy();
  });
});

describe("§5.5.1 and §7 the closing handshake", () => {
  test("§5.5.1 a client's close 1000 is echoed, then the server closes the TCP connection", async () => {
    const client = await open(plainServer);
    client.write(closeFrame(1000, "done"));
    await assertServerClosed(client, 1000);
  });

  test("§5.5.1 an empty close payload (no code) is answered with 1000", async () => {
    const client = await open(plainServer);
    client.write(closeFrame(undefined));
    await assertServerClosed(client, 1000);
  });

  test("§5.5.1 a close with code 4000 and a reason is answered with 4000", async () => {
    const client = await open(plainServer);
    client.write(closeFrame(4000, "application reason ✓"));
    await assertServerClosed(client, 4000);
  });

  test("§5.5.1 after the client's close, nothing it sends is answered", async () => {
    const client = await open(plainServer);
    client.write(
      Buffer.concat([closeFrame(1001), maskedFrame(Opcode.Text, "too late"), maskedFrame(Opcode.Ping, "too late")]),
    );
    await assertServerClosed(client, 1001);
    assert.deepEqual(
      client.events.map((event) => event.type),
      ["close"],
    );
  });

  test("§7.1.7 an unmasked frame fails the connection: close 1002, then TCP closed, nothing after", async () => {
    const client = await open(plainServer);
    // The bad frame, then a ping that must not be answered.
    client.write(Buffer.concat([encodeFrame(Opcode.Text, "not masked"), maskedFrame(Opcode.Ping, "after")]));
    await assertServerClosed(client, 1002);
    assert.deepEqual(
      client.events.map((event) => event.type),
      ["close"],
    );
  });

  test("§8.1 invalid UTF-8 in a text message fails the connection with 1007", async () => {
    const client = await open(plainServer);
    client.sendFrame(Opcode.Text, Buffer.from([0x48, 0x69, 0xc0, 0xaf]));
    await assertServerClosed(client, 1007);
  });

  test(
    "§8.1 invalid UTF-8 is caught in an unfinished fragment: " + "close 1007 without the rest of the message",
    async () => {
      const client = await open(plainServer);
      client.sendFrame(Opcode.Text, "valid start ", { fin: false });
      // A 50-byte continuation frame of which only the first (invalid) byte is sent.
      const next = maskedFrame(
        Opcode.Continuation,
        Buffer.concat([Buffer.from([0xff]), Buffer.alloc(49, 0x61)]),
        false,
      );
      client.write(next.subarray(0, next.length - 49));
      await assertServerClosed(client, 1007);
    },
  );

  for (const [name, bytes] of [
    ["a reserved opcode (0x3)", () => maskedFrame(0x3, "")],
    [
      "RSV2 set",
      () => {
        const frame = maskedFrame(Opcode.Text, "x");
        frame[0] = frame[0]! | 0x20;
        return frame;
      },
    ],
    [
      "a close code that may not be sent (1005)",
      () => encodeFrame(Opcode.Close, Buffer.from([0x03, 0xed]), { maskKey: randomBytes(4) }),
    ],
    ["a continuation with no message", () => maskedFrame(Opcode.Continuation, "x")],
  ] as const) {
    test(`§7.1.7 ${name} fails the connection with 1002`, async () => {
      const client = await open(plainServer);
      client.write(bytes());
      await assertServerClosed(client, 1002);
    });
  }

  test("§10.4 a message over --max-payload fails with 1009 from its header alone", async () => {
    const client = await open(limitServer);
    // A masked binary frame announcing 2000 bytes; its payload is never sent.
    client.write(Buffer.from([0x82, 0x80 | 126, 0x07, 0xd0]));
    await assertServerClosed(client, 1009);
  });

  test("§10.4 a message whose fragments add up to more than --max-payload fails with 1009", async () => {
    const client = await open(limitServer);
    client.sendFrame(Opcode.Binary, Buffer.alloc(600), { fin: false });
    client.sendFrame(Opcode.Continuation, Buffer.alloc(600));
    await assertServerClosed(client, 1009);
  });

  test("§10.4 a message of exactly --max-payload bytes is echoed", async () => {
    const client = await open(limitServer);
    const payload = randomBytes(1000);
    client.sendFrame(Opcode.Binary, payload);
    assert.deepEqual((await client.next("binary")).data, payload);
    client.destroy();
  });
});

describe("§5.4 fragmentation on a live connection", () => {
  test(
    "§5.2, §5.4: messages that arrive in many TCP reads, or in many fragments, are echoed byte for byte " +
      "(the echo writes the pieces they came in after one header)",
    async () => {
      const client = await open(plainServer);
      // Nearly 1 MiB (--max-payload): the socket hands it over 64 KiB at a time, so it arrives in pieces.
      const binary = randomBytes(1024 * 1024 - 1);
      client.sendFrame(Opcode.Binary, binary);
      assert.ok((await client.next("binary", 15_000)).data.equals(binary), "1 MiB binary in one frame");
      // Text whose three-byte characters straddle the pieces' edges.
      const text = "聊天室 ✓ room ".repeat(40_000);
      client.sendFrame(Opcode.Text, text);
      assert.equal((await client.next("text", 15_000)).text, text, "text in one frame");
      // Five fragments of different sizes, the last one small.
      const fragmented = randomBytes(700_001);
      const cuts = [0, 1, 65_537, 300_000, 699_990, fragmented.length];
      for (let index = 0; index + 1 < cuts.length; index++) {
        const opcode = index === 0 ? Opcode.Binary : Opcode.Continuation;
        client.sendFrame(opcode, fragmented.subarray(cuts[index], cuts[index + 1]), { fin: index + 2 === cuts.length });
      }
      assert.ok((await client.next("binary", 15_000)).data.equals(fragmented), "five fragments");
      client.destroy();
    },
  );

  test("§5.4 a fragmented text message is echoed whole", async () => {
    const client = await open(plainServer);
    client.sendFrame(Opcode.Text, "frag", { fin: false });
    client.sendFrame(Opcode.Continuation, "men", { fin: false });
    client.sendFrame(Opcode.Continuation, "ted ✓");
    assert.equal((await client.next("text")).text, "fragmented ✓");
    const binary = randomBytes(3000);
    client.sendFrame(Opcode.Binary, binary.subarray(0, 1000), { fin: false });
    client.sendFrame(Opcode.Continuation, binary.subarray(1000, 1000), { fin: false });
    client.sendFrame(Opcode.Continuation, binary.subarray(1000));
    assert.deepEqual((await client.next("binary")).data, binary);
    client.destroy();
  });

  test("§5.4 a ping between fragments is answered at once, before the message is complete", async () => {
    const client = await open(plainServer);
    client.sendFrame(Opcode.Text, "Hel", { fin: false });
    client.sendFrame(Opcode.Ping, "between");
    assert.equal((await client.next("pong")).data.toString(), "between");
    assert.deepEqual(
      client.events.map((event) => event.type),
      ["pong"],
      "no message yet",
    );
    client.sendFrame(Opcode.Continuation, "lo");
    assert.equal((await client.next("text")).text, "Hello");
    client.destroy();
  });
});

describe("§6.1 sending: what one turn writes leaves in the order it was written", () => {
  test("small frames (gathered into one buffer) and large ones, data and control, arriving in one TCP write", async () => {
    const client = await open(plainServer);
    const large = randomBytes(5000); // above the size the server gathers
    const pieces = randomBytes(300);
    client.write(
      Buffer.concat([
        maskedFrame(Opcode.Binary, "one"),
        maskedFrame(Opcode.Binary, large),
        maskedFrame(Opcode.Ping, "two"),
        maskedFrame(Opcode.Text, "three ✓"),
        maskedFrame(Opcode.Binary, pieces.subarray(0, 100), false),
        maskedFrame(Opcode.Continuation, pieces.subarray(100)),
        maskedFrame(Opcode.Text, "four"),
        closeFrame(1000),
      ]),
    );
    await assertServerClosed(client, 1000);
    const seen = client.events.map((event) =>
      event.type === "text" ? event.text : "data" in event ? `${event.type} ${event.data.length}` : event.type,
    );
    assert.deepEqual(seen, ["binary 3", "binary 5000", "pong 3", "three ✓", "binary 300", "four", "close"]);
    const binaries = client.events.filter((event) => event.type === "binary");
    assert.deepEqual(binaries[1]?.data, large);
    assert.deepEqual(binaries[2]?.data, pieces);
  });

  test("small echoes held for a client that stopped reading arrive intact, whatever went to others meanwhile", async () => {
    const slow = await open(plainServer);
    const busy = await open(plainServer);
    const count = 2000;
    const messages = (seed: number) =>
      Array.from({ length: count }, (_, index) => {
        const bytes = randomBytes(3000); // small enough to be gathered with the frames around it
        bytes.writeUInt32BE(seed * count + index);
        return bytes;
      });
    const slowMessages = messages(1);
    const busyMessages = messages(2);
    const received = (client: RawClient) =>
      client.events.flatMap((event) => (event.type === "binary" ? [event.data] : []));
    slow.socket.pause(); // reads nothing: its echoes wait in the kernel, then in the server
    for (const message of slowMessages) slow.sendFrame(Opcode.Binary, message);
    await waitUntil(() => plainServer.connectionOf(slow).bufferedAmount > 0, 10_000, "the server to hold echoes back");
    // Meanwhile another client's echoes go through the server's shared blocks many times over.
    for (const message of busyMessages) busy.sendFrame(Opcode.Binary, message);
    await busy.waitFor(() => received(busy).length === count, 20_000, "the busy client's echoes");
    slow.socket.resume();
    await slow.waitFor(() => received(slow).length === count, 20_000, "the slow client's echoes");
    const same = (got: Buffer[], sent: Buffer[]) => got.every((data, index) => data.equals(sent[index]!));
    assert.ok(same(received(busy), busyMessages), "the busy client's echoes are what it sent, in order");
    assert.ok(same(received(slow), slowMessages), "the slow client's echoes are what it sent, in order");
    slow.destroy();
    busy.destroy();
  });

  test("frames and a TCP FIN read while the server was not reading: every echo leaves before the server's FIN", async () => {
    const client = await open(plainServer);
    const side = plainServer.connectionOf(client);
    // As when a peer that does not read makes the server pause (backpressure): its frames and its FIN wait
    // in the socket's buffer, and when reading resumes, Node emits "end" on the tick after the last "data".
    side.socket.pause();
    const messages = ["one", "two", "three"];
    for (const text of messages) client.sendText(text);
    const bytes = messages.reduce((sum, text) => sum + maskedFrame(Opcode.Text, text).length, 0);
    client.socket.end();
    await waitUntil(() => side.socket.readableLength === bytes, 5000, "the frames to wait in the server's buffer");
    await waitUntil(() => client.socket.writableFinished, 5000, "the client's FIN to be sent");
    await new Promise((resolve) => setImmediate(resolve)); // and read, in the same poll as the frames or the next
    side.socket.resume();
    await client.waitForClose(5000);
    const texts = client.events.flatMap((event) => (event.type === "text" ? [event.text] : []));
    assert.deepEqual(texts, messages, "every echo, before the server's FIN");
  });
});

describe("keepalive (ping every interval, drop after timeout)", () => {
  test(
    "§5.5.2 a client that answers the server's pings " + "stays connected through 5 of them (1.5 s at least)",
    async () => {
      // Unanswered, one ping is enough to be dropped (the next test): 300 ms + 300 ms.
      const client = await open(keepaliveServer);
      let answered = 0;
      const answerPings = () => {
        const pings = client.events.filter(
          (event): event is Extract<DecoderEvent, { type: "ping" }> => event.type === "ping",
        );
        for (; answered < pings.length; answered++) client.sendFrame(Opcode.Pong, pings[answered]!.data);
        return answered >= 5 || client.closed;
      };
      await client.waitFor(answerPings, 10_000, "five pings from the server");
      assert.equal(client.closed, false, `dropped after answering ${answered} pings`);
      client.sendText("alive");
      assert.equal((await client.next("text")).text, "alive");
      client.destroy();
    },
  );

  test("§5.5.2 a client that never answers is dropped after about interval + timeout", async () => {
    const client = await open(keepaliveServer);
    await client.next("ping", 3000);
    await client.waitForClose(5000);
    assert.equal(
      client.events.filter((event) => event.type === "close").length,
      0,
      "dropped, not closed politely: it is presumed gone",
    );
  });

  test(
    "§5.5.2 a client that never answers is dropped too " + "when --keepalive-timeout is longer than the interval",
    async () => {
      await withServer({ keepaliveIntervalMs: 300, keepaliveTimeoutMs: 600 }, async (server) => {
        const client = await open(server);
        await client.next("ping", 3000);
        await client.waitForClose(2000);
        assert.deepEqual(client.closeFrames(), [], "dropped, not closed politely: it is presumed gone");
      });
    },
  );
});

/** A raw client whose socket stays half-open: it neither answers a close
 * frame nor closes its side when the server does, so only the server's
 * closing timeout can end the connection. */
async function openHalfOpen(server: { port: number }): Promise<RawClient> {
  return open(server, { halfOpen: true });
}

/** Sends an unmasked frame (§5.1: a violation) and waits for the server's close frame and FIN. */
async function provokeClose(client: RawClient): Promise<void> {
  client.write(encodeFrame(Opcode.Text, "unmasked: a violation"));
  await client.waitFor(() => client.closeFrames().length > 0 && client.ended, 5000, "the server's close frame and FIN");
  assert.equal(client.closeFrames()[0]!.code, 1002);
}

/** A write after the server destroyed its socket is refused (RST), which closes ours:
 * one byte per poll, until it does. */
const poke =
  (...peers: RawClient[]) =>
  () => {
    for (const peer of peers) if (!peer.closed) peer.write(Buffer.from([0x00]));
  };

describe("§7.1.1 the closing timeout", () => {
  test(
    "§7.1.1 a peer that never answers the server's " + "close frame is disconnected after --closing-timeout",
    async () => {
      const peer = await openHalfOpen(limitServer);
      await provokeClose(peer);
      // We stay half-open and silent about the close.
      await waitUntil(() => peer.closed, 5000, "the server to destroy the half-open connection", poke(peer));
      peer.destroy();
    },
  );

  test(
    "§7.1.1 with the default closing timeout " + "(5 s) the same half-open peer is still connected after 1 s",
    async () => {
      // The yardstick: a server whose closing timeout is 1 s, given its peer's violation second.
      await withServer({ keepaliveIntervalMs: 0, closingTimeoutMs: 1000 }, async (oneSecond) => {
        const peer = await openHalfOpen(plainServer);
        const yardstick = await openHalfOpen(oneSecond);
        await provokeClose(peer);
        await provokeClose(yardstick);
        // Both are poked alike; when the yardstick's 1 s is up, the other one (which started first)
        // must still be there.
        await waitUntil(() => yardstick.closed, 10_000, "the 1 s server to destroy its peer", poke(peer, yardstick));
        assert.equal(peer.closed, false, "not destroyed before its timeout");
        assert.doesNotThrow(() => plainServer.connectionOf(peer), "the server still holds the connection");
        peer.destroy();
      });
    },
  );
});

describe("flow control", () => {
  // The memory bounds below are on this process's RSS, where the server runs; the
  // client's own share is one frame written again and again (no copies), made
  // before the baseline. Each bound is well under what a server that buffered
  // instead would hold.

  test(
    "backpressure: a client that sends 128 MiB of echo requests but never reads makes the server stop reading, " +
      "not buffer",
    async (t) => {
      const client = await open(plainServer);
      client.sendText("warm up");
      await client.next("text");
      const side = plainServer.connectionOf(client);
      client.socket.pause(); // read nothing
      const count = 256;
      const payload = Buffer.alloc(512 * 1024, 0x61);
      const frame = maskedFrame(Opcode.Binary, payload); // the same bytes, written again and again
      const total = count * frame.length;
      const before = rssOf(process.pid);
      const sampler = new RssSampler(process.pid, 20, { required: true });
      for (let index = 0; index < count; index++) client.socket.write(frame);
      // The server stops reading (pauses its socket) while its echoes cannot be sent.
      await waitUntil(() => side.socket.isPaused() && side.bufferedAmount > 0, 10_000, "the server to stop reading");
      const growth = sampler.stop() - before;
      const read = side.socket.bytesRead;
      t.diagnostic(
        `the server read ${megabytes(read)} of ${megabytes(total)} and stopped; RSS grew by ${megabytes(growth)}`,
      );
      assert.ok(read < total / 2, `the server stopped reading: it read ${megabytes(read)} of ${megabytes(total)}`);
      assert.ok(client.socket.writableLength > total / 2, "most of it is still unsent by the client");
      assert.ok(
        growth < 48 * MB,
        `RSS grew by ${megabytes(growth)}; buffering the echoes would take ${megabytes(total)}`,
      );
      // Everybody else is still served.
      const other = await open(plainServer);
      other.sendText("anyone home?");
      assert.equal((await other.next("text")).text, "anyone home?");
      other.destroy();
      // And nothing was lost: reading again lets every echo through (counted, not kept).
      let echoes = 0;
      let intact = true;
      client.onEvent = (event) => {
        if (event.type !== "binary") return;
        echoes++;
        intact &&= event.data.length === payload.length && event.data[0] === 0x61 && event.data.at(-1) === 0x61;
      };
      client.socket.resume();
      await waitUntil(() => echoes === count || client.closed, 60_000, "all the echoes");
      assert.equal(echoes, count);
      assert.ok(intact, "every echo is the payload");
      assert.equal(client.closed, false);
      client.destroy();
    },
  );

  test(
    "slow consumer: on /echo a non-reading client past --max-buffered is either paused or closed with 1008, never " +
      "buffered",
    async (t) => {
      // /echo only writes while it reads, so backpressure (stop reading) usually
      // wins; a 1008 happens only when one read brings in more echoes than the
      // limit. Either is correct; holding the echoes in memory is not. (The
      // chat test below makes the 1008 certain.)
      const client = await open(slowServer);
      client.sendText("warm up");
      await client.next("text");
      const side = slowServer.connectionOf(client);
      const closingsBefore = slowConsumerClosings(slowServer);
      const closedAsSlow = () => slowConsumerClosings(slowServer) > closingsBefore;
      client.socket.pause();
      const count = 3200;
      // 256 different frames of 30,000 bytes, made once: 96 MB on the wire, 7.7 MB in this process.
      const frames = Array.from({ length: 256 }, (_, index) => maskedFrame(Opcode.Binary, Buffer.alloc(30_000, index)));
      const before = rssOf(process.pid);
      const sampler = new RssSampler(process.pid, 20, { required: true });
      for (let index = 0; index < count; index++) client.socket.write(frames[index & 0xff]!);
      await waitUntil(() => closedAsSlow() || side.socket.isPaused(), 10_000, "the server to stop reading or give up");
      const growth = sampler.stop() - before;
      const unsent = client.socket.writableLength;
      t.diagnostic(
        `${closedAsSlow() ? "closed as a slow consumer" : "paused"}; ${megabytes(unsent)} unsent; RSS grew by ` +
          `${megabytes(growth)}`,
      );
      assert.ok(
        growth < 32 * MB,
        `RSS grew by ${megabytes(growth)}; buffering the echoes would take ${megabytes(count * 30_000)}`,
      );
      if (closedAsSlow()) {
        client.socket.resume();
        const close = await client.next("close", 10_000);
        assert.equal(close.code, 1008);
        await client.waitForClose(5000);
        assert.equal(client.events.at(-1)?.type, "close", "nothing after the close frame");
      } else {
        assert.ok(unsent > 0, "the server stopped reading");
        let echoes = 0;
        let inOrder = true;
        client.onEvent = (event) => {
          if (event.type !== "binary") return;
          inOrder &&= event.data.length === 30_000 && event.data[0] === (echoes & 0xff);
          echoes++;
        };
        client.socket.resume();
        await waitUntil(() => echoes === count || client.closed, 60_000, "every echo");
        assert.equal(echoes, count);
        assert.ok(inOrder, "in order and intact");
        client.destroy();
      }
    },
  );

  test("slow consumer: a chat member that stops reading is closed with 1008 while the others go on", async () => {
    const reader = await open(slowServer, { path: "/" });
    const sleeper = await open(slowServer, { path: "/" });
    await sleeper.next("text"); // welcome
    sleeper.socket.pause();
    const before = slowConsumerClosings(slowServer);
    const closed = () => slowConsumerClosings(slowServer) > before;
    const text = "汉".repeat(2000); // 6000 bytes of UTF-8, the longest message allowed
    let received = 0;
    let scanned = 0;
    const receivedSoFar = () => {
      for (; scanned < reader.events.length; scanned++) {
        const event = reader.events[scanned]!;
        if (textStartsWith(event, '{"type":"message"')) received++;
      }
      return received;
    };
    // At most 16 in flight: the reader itself is never far behind. Bounded: 3,000 messages.
    let sent = 0;
    while (!closed() && sent < 3000) {
      while (sent - receivedSoFar() < 16 && sent < 3000) {
        reader.sendText(JSON.stringify({ type: "say", id: `slow-${sent}`, text }));
        sent++;
      }
      await reader.waitFor(() => sent - receivedSoFar() < 16 || closed(), 5000, `the echo of message ${received}`);
    }
    assert.ok(closed(), `the sleeper was closed as a slow consumer within ${sent} messages`);
    sleeper.socket.resume();
    const close = await sleeper.next("close", 10_000);
    assert.equal(close.code, 1008);
    await sleeper.waitForClose(5000);
    // The reader was not touched.
    assert.equal(reader.closed, false);
    await reader.waitFor(() => receivedSoFar() === sent, 10_000, "the reader's own messages");
    reader.sendText(JSON.stringify({ type: "ping", t: 1 }));
    const pong = (event: DecoderEvent) => event.type === "text" && event.text.includes('"type":"pong"');
    await reader.waitFor(() => reader.events.some(pong), 5000, "the reader's pong");
    reader.destroy();
  });

  test(
    "slow consumer: a client that reads everything is not closed, even when one echo is larger than " +
      "--max-buffered",
    async () => {
      const client = await open(slowServer);
      const payload = randomBytes(100_000);
      client.sendFrame(Opcode.Binary, payload);
      await client.waitFor(() => client.events.length > 0, 5000, "an answer");
      assert.deepEqual(
        client.events.map((event) => event.type),
        ["binary"],
      );
      assert.deepEqual((await client.next("binary")).data, payload);
      client.destroy();
    },
  );

  test(
    "slow consumer: what one turn queues is bounded too: 40 compressed frames that inflate to 1 MiB each, " +
      "sent in one write to /echo by a client that never reads, close it with 1008",
    async () => {
      await withServer({ keepaliveIntervalMs: 0 }, async (server) => {
        // server_max_window_bits=8: the server then sends everything uncompressed (zlib cannot make such a window).
        const offer = "permessage-deflate; server_max_window_bits=8";
        const client = await open(server, { headers: { "Sec-WebSocket-Extensions": offer }, allowCompression: true });
        client.socket.pause(); // never read
        const compressed = deflateRawSync(Buffer.alloc(1024 * 1024), {
          finishFlush: zlibConstants.Z_SYNC_FLUSH,
        }).subarray(0, -4);
        const frame = encodeFrame(Opcode.Binary, compressed, { rsv1: true, maskKey: Buffer.from([1, 2, 3, 4]) });
        client.socket.write(Buffer.concat(Array.from({ length: 40 }, () => frame)));
        await server.waitForOutput(/closing a slow consumer/, 10_000);
        // What the client finds when it reads again: some echoes, then the close frame with 1008, then nothing.
        client.socket.resume();
        const close = await client.next("close", 10_000);
        assert.equal(close.code, 1008, `close reason: ${close.reason}`);
        await client.waitForClose(5000);
        assert.equal(client.events.at(-1)?.type, "close", "nothing after the close frame");
        const echoes = client.events.filter((event) => event.type === "binary").length;
        assert.ok(echoes < 40, `${echoes} of the 40 echoes were queued`);
      });
    },
  );

  test(
    "slow consumer: a member joining a room whose replay is larger than --max-buffered gets the newest messages " +
      "that fit, resumed:false, and is not closed",
    async () => {
      // A room of its own, so that its history is exactly what this test put there.
      const config = {
        keepaliveIntervalMs: 0,
        maxBufferedBytes: 65536,
        messageRate: 1_000_000,
        messageBurst: 1_000_000,
      };
      await withServer(config, async (server) => {
        const poster = await open(server, { path: "/" });
        await poster.next("text"); // welcome
        const text = "字".repeat(2000);
        const isMessage = (event: DecoderEvent) => event.type === "text" && event.text.startsWith('{"type":"message"');
        for (let index = 0; index < 20; index++) {
          poster.sendText(JSON.stringify({ type: "say", id: `replay-${index}`, text }));
          await poster.waitFor(() => poster.events.filter(isMessage).length > index, 5000, `message ${index}`);
        }
        const newcomer = await open(server, { path: "/?since=0" });
        const welcome = JSON.parse((await newcomer.next("text")).text) as {
          type: string;
          resumed: boolean;
          seq: number;
        };
        assert.equal(welcome.type, "welcome");
        assert.equal(welcome.resumed, false, "a cut replay is not a resume");
        // A ping is a barrier: everything replayed comes before its pong.
        newcomer.sendText(JSON.stringify({ type: "ping", t: 1 }));
        const pong = (event: DecoderEvent) => event.type === "text" && event.text.startsWith('{"type":"pong"');
        await newcomer.waitFor(() => newcomer.events.some(pong) || newcomer.closed, 5000, "the pong");
        const texts = newcomer.events.flatMap((event) =>
          isMessage(event) && event.type === "text" ? [event.text] : [],
        );
        const replayed = texts.map((message) => (JSON.parse(message) as { seq: number }).seq);
        const bytes = texts.reduce((sum, message) => sum + Buffer.byteLength(message), 0);
        assert.ok(replayed.length > 0 && replayed.length < 20, `a part of the history: ${replayed.length} messages`);
        const newest = Array.from({ length: replayed.length }, (_, index) => 21 - replayed.length + index);
        assert.deepEqual(replayed, newest, "the newest ones, in order");
        assert.ok(bytes <= 65536, `within the budget: ${bytes} bytes`);
        assert.deepEqual(newcomer.closeFrames(), []);
        poster.destroy();
        newcomer.destroy();
      });
    },
  );
});
