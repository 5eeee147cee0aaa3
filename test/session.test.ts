// The WebSocket session (server.ts, section 6) in-process, with a fake
// clock: control frames (RFC 6455 §5.5), keepalive, the closing handshake
// (§7.1.2-7.1.5) and failing the connection (§7.1.7). Bytes and time in;
// outputs out; no socket anywhere.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  CloseCode,
  Opcode,
  WebSocketSession,
  compressMessage,
  encodeClosePayload,
  encodeFrame,
  violations,
  type SessionOptions,
  type SessionOutput,
} from "../server.ts";

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A frame as a client sends it: masked (§5.3). */
function clientFrame(opcode: number, payload: Buffer | string = Buffer.alloc(0), rsv1 = false): Buffer {
  return encodeFrame(opcode, payload, { maskKey: KEY, rsv1 });
}

class FakeClock {
  time = 1_000_000;
  now = () => this.time;
}

const baseOptions: SessionOptions = {
  maxPayload: 1 << 20,
  maxFragments: 1000,
  deflate: undefined,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  closingTimeoutMs: 5_000,
  controlFrameRate: 50,
};

function newSession(options: Partial<SessionOptions> = {}) {
  const clock = new FakeClock();
  const session = new WebSocketSession({ ...baseOptions, ...options }, clock.now);
  /** Every output the session has, as short strings that are easy to compare. */
  const drain = (): string[] => {
    const seen: string[] = [];
    for (let output = session.takeOutput(); output !== undefined; output = session.takeOutput())
      seen.push(summarize(output));
    return seen;
  };
  return { session, clock, drain };
}

function summarize(output: SessionOutput): string {
  switch (output.type) {
    case "text":
      return `text ${output.text}`;
    case "binary":
      return `binary ${output.data.toString("hex")}`;
    case "write":
      return `write ${output.frame.toString("hex")}`;
    case "frame":
      return `frame ${output.frame.opcode}`;
    case "message-note":
      return `message-note ${output.note.length} from ${output.note.wireLength}`;
    case "end-output":
      return "end-output";
    case "abort":
      return `abort: ${output.why}`;
    case "failed":
      return `failed ${output.violation}`;
  }
}

const written = (opcode: number, payload: Buffer | string = Buffer.alloc(0)) =>
  `write ${encodeFrame(opcode, payload).toString("hex")}`;
const closeWritten = (code: number, reason = "") => written(Opcode.Close, encodeClosePayload(code, reason));

describe("session: control frames (RFC 6455 §5.5)", () => {
  test("§5.5.2: a ping is answered with a pong carrying the same payload", () => {
    const { session, drain } = newSession();
    session.receiveData(clientFrame(Opcode.Ping, "Hello"));
    assert.deepEqual(drain(), [written(Opcode.Pong, "Hello")]);
  });

  test("§5.5.3: a pong needs no answer", () => {
    const { session, drain } = newSession();
    session.receiveData(clientFrame(Opcode.Pong, "x"));
    assert.deepEqual(drain(), []);
  });

  test("a flood of pings: a burst of twice the rate is answered, the rest not, and one that goes on fails with 1008", () => {
    const { session, drain, clock } = newSession({ controlFrameRate: 10 });
    session.receiveData(Buffer.concat(Array.from({ length: 25 }, () => clientFrame(Opcode.Ping))));
    const outputs = drain();
    assert.equal(outputs.filter((output) => output === written(Opcode.Pong)).length, 20, "the burst of 2 × rate");
    assert.equal(session.state, "open", "patience is not yet spent");
    clock.time += 1000; // ten more answers a second
    session.receiveData(Buffer.concat(Array.from({ length: 60 }, () => clientFrame(Opcode.Ping))));
    const later = drain();
    assert.equal(later.filter((output) => output === written(Opcode.Pong)).length, 10);
    assert.deepEqual(later.slice(-3), [
      "failed control_flood",
      closeWritten(1008, violations.control_flood.message),
      "end-output",
    ]);
    assert.equal(session.state, "closing-local");
  });
});

describe("session: the closing handshake (RFC 6455 §7.1.2-§7.1.5)", () => {
  test("they close first: we answer with their code, end our output, and the state is closing-remote", () => {
    const { session, drain } = newSession();
    session.receiveData(clientFrame(Opcode.Close, encodeClosePayload(1001, "bye")));
    assert.deepEqual(drain(), [closeWritten(1001), "end-output"]);
    assert.equal(session.state, "closing-remote");
    assert.deepEqual(session.peerClose, { code: 1001, reason: "bye" });
    assert.equal(session.mayWriteData, false);
  });

  test("§7.1.5: an empty close (1005, no status) is answered with 1000", () => {
    const { session, drain } = newSession();
    session.receiveData(clientFrame(Opcode.Close));
    assert.deepEqual(drain(), [closeWritten(CloseCode.Normal), "end-output"]);
  });

  test("we close first: closing-local; data that still arrives is not delivered; their close ends our output", () => {
    const { session, drain } = newSession();
    session.close(1000, "done");
    assert.deepEqual(drain(), [closeWritten(1000, "done")]);
    assert.equal(session.state, "closing-local");
    session.receiveData(clientFrame(Opcode.Text, "late"));
    session.receiveData(clientFrame(Opcode.Ping, "late"));
    assert.deepEqual(drain(), [], "§5.5.1: after our close, no data and no pong");
    session.receiveData(clientFrame(Opcode.Close, encodeClosePayload(1000)));
    assert.deepEqual(drain(), ["end-output"]);
    session.close(1000);
    assert.deepEqual(drain(), [], "a second close does nothing");
  });

  test("a peer that never answers our close is dropped at the closing deadline", () => {
    const { session, drain, clock } = newSession();
    session.close();
    drain();
    assert.equal(session.deadline, clock.time + 5_000);
    clock.time += 4_999;
    session.advanceTime(false);
    assert.deepEqual(drain(), []);
    clock.time += 1;
    session.advanceTime(false);
    assert.deepEqual(drain(), ["abort: the closing handshake took more than 5000 ms"]);
  });

  test("a close made while a message is handled applies to the messages after it, not to the ones before", () => {
    const { session } = newSession();
    session.receiveData(Buffer.concat(["one", "two", "three"].map((text) => clientFrame(Opcode.Text, text))));
    const first = session.takeOutput();
    assert.ok(first?.type === "text" && first.text === "one");
    session.close(1000);
    const rest: string[] = [];
    for (let output = session.takeOutput(); output !== undefined; output = session.takeOutput())
      rest.push(summarize(output));
    assert.deepEqual(rest, [closeWritten(1000)]);
  });

  test("connectionLost: closed, and nothing more to wait for", () => {
    const { session } = newSession();
    session.connectionLost();
    assert.equal(session.state, "closed");
    assert.equal(session.deadline, Infinity);
    session.receiveData(clientFrame(Opcode.Text, "after"));
    assert.equal(session.takeOutput(), undefined);
  });
});

describe("session: failing the connection (RFC 6455 §7.1.7)", () => {
  test("a violation: the messages before it are delivered, then its close code from violations, then our output ends", () => {
    const { session, drain } = newSession();
    const unmasked = encodeFrame(Opcode.Text, "not masked");
    session.receiveData(Buffer.concat([clientFrame(Opcode.Text, "fine"), unmasked, clientFrame(Opcode.Text, "never")]));
    assert.deepEqual(drain(), [
      "text fine",
      "failed unmasked_frame",
      closeWritten(1002, violations.unmasked_frame.message),
      "end-output",
    ]);
  });

  test("a violation while we are closing ends our output without a second close frame", () => {
    const { session, drain } = newSession();
    session.close(1000);
    drain();
    session.receiveData(Buffer.from([0x83, 0x80, 1, 2, 3, 4])); // reserved opcode 0x3
    assert.deepEqual(drain(), ["failed reserved_opcode", "end-output"]);
  });

  test("fail() from the layers above uses the same table (too_slow, message_flood)", () => {
    const { session, drain } = newSession();
    session.fail("too_slow");
    assert.deepEqual(drain(), ["failed too_slow", closeWritten(1008, violations.too_slow.message), "end-output"]);
  });
});

describe("session: keepalive", () => {
  test("a ping after the interval; silence for the timeout after it drops the peer", () => {
    const { session, drain, clock } = newSession();
    const start = clock.time;
    assert.equal(session.deadline, start + 30_000);
    clock.time = start + 30_000;
    session.advanceTime(false);
    assert.deepEqual(drain(), [written(Opcode.Ping)]);
    assert.equal(session.deadline, start + 40_000);
    clock.time = start + 40_000;
    session.advanceTime(false);
    assert.deepEqual(drain(), ["abort: no pong within 10000 ms"]);
  });

  test("any byte from the peer counts as the answer; the next ping comes an interval after the last", () => {
    const { session, drain, clock } = newSession();
    const start = clock.time;
    clock.time = start + 30_000;
    session.advanceTime(false);
    drain();
    session.receiveData(clientFrame(Opcode.Text, "alive"));
    drain();
    clock.time = start + 40_000;
    session.advanceTime(false);
    assert.deepEqual(drain(), []);
    assert.equal(session.deadline, start + 60_000);
    clock.time = start + 60_000;
    session.advanceTime(false);
    assert.deepEqual(drain(), [written(Opcode.Ping)]);
  });

  test("a peer whose pong may be waiting unread (reading paused for backpressure) is not dropped", () => {
    const { session, drain, clock } = newSession();
    clock.time += 30_000;
    session.advanceTime(true);
    drain();
    clock.time += 10_000;
    session.advanceTime(true);
    assert.deepEqual(drain(), []);
  });

  test("a timeout longer than the interval: later pings do not move the deadline of an unanswered one", () => {
    const { session, drain, clock } = newSession({ keepaliveIntervalMs: 300, keepaliveTimeoutMs: 600 });
    const start = clock.time;
    const outputs: string[] = [];
    for (let time = start; time <= start + 900; time += 100) {
      clock.time = time;
      session.advanceTime(false);
      outputs.push(...drain().map((output) => `${time - start}: ${output}`));
    }
    assert.deepEqual(outputs, [
      `300: ${written(Opcode.Ping)}`,
      `600: ${written(Opcode.Ping)}`,
      "900: abort: no pong within 600 ms",
    ]);
  });

  test("an interval of 0 turns keepalive off", () => {
    const { session } = newSession({ keepaliveIntervalMs: 0 });
    assert.equal(session.deadline, Infinity);
  });
});

describe("session: permessage-deflate (RFC 7692)", () => {
  const deflate = {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
  };

  test('§7.2.3\'s compressed "Hello" is inflated into a text message', () => {
    const { session, drain } = newSession({ deflate });
    session.receiveData(clientFrame(Opcode.Text, Buffer.from("f248cdc9c90700", "hex"), true));
    assert.deepEqual(drain(), ["text Hello"]);
  });

  test("compressed bytes that are not UTF-8 text fail with 1007", () => {
    const { session, drain } = newSession({ deflate });
    const compressed = compressMessage(Buffer.from([0xff, 0xfe]), 15, 6)!;
    session.receiveData(clientFrame(Opcode.Text, compressed, true));
    assert.deepEqual(drain().slice(0, 2), ["failed invalid_utf8", closeWritten(1007, violations.invalid_utf8.message)]);
  });
});
