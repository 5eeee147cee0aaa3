// bench/load.ts — the load generator of the benchmark, on raw TCP sockets.
//
// It is written so that it costs the same whatever server it drives, and far
// less than any server: the handshake is a prepared string, every frame is
// built and masked once before a run and then written again and again (a
// window of W frames is one contiguous buffer, so sending n frames is one
// write of a slice), replies are checked byte for byte against the expected
// bytes where they lie in the socket's chunk, without being copied or decoded,
// and nothing is parsed as JSON on the hot path. It never imports server.ts:
// a bug in the code under test cannot change how the load is made or checked.
// That is why it keeps its own client instead of test/support's RawClient,
// which reads every frame with server.ts's decoder and keeps events: cheap
// enough for tests, not for a load generator that must cost far less than
// the servers it drives. It shares only the seeded PRNG of test/support.
//
// Kinds of load, each bounded in count and in time:
//   runEcho     N connections, each keeping W messages in flight, pipelined;
//               every reply is checked (type, compression bit, bytes).
//               With window 1 and recordLatency it is the round-trip test.
//               raw: the peer is a plain TCP echo, the frames come back as sent.
//   runFanout   N chat clients on /, one of them says W messages at a time;
//               every client must get every message exactly once, in order,
//               with seqs one after the other. Optionally first a paced phase
//               (a fixed rate, for latency below saturation), or that phase
//               alone, and the clients spread over several servers that share
//               one room (--redis).
//   runFloorBroadcast
//               the same paced phase on plain TCP, against bench/tcp-floor.ts
//               --broadcast: N clients, one saying fixed-size numbered
//               messages, every client checking the bytes it gets.
//   openIdle    N idle connections opened C at a time (handshakes per second,
//               memory per connection), from several loopback source
//               addresses when asked; raw: TCP connections, no handshake.
//
//   tsx bench/load.ts echo   --port P [--connections 64] [--size 1024] [--binary] [--deflate] [--seconds 3]
//   tsx bench/load.ts fanout --port P [--clients 100] [--seconds 3]
//   tsx bench/load.ts idle   --port P [--connections 1000]
//   tsx bench/load.ts echo   --port P --raw     (a plain TCP echo server: bench/tcp-echo.ts)

import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { parseArgs } from "node:util";
import { constants as zlibConstants, deflateRawSync, inflateRawSync } from "node:zlib";
import { Prng } from "../test/support/prng.ts";
import { isProgram } from "../server.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
/** Both servers leave shorter messages uncompressed; the client does the same. */
export const DEFLATE_THRESHOLD = 1024;
/** Frames up to this size are always handed over whole (copied only when they straddle chunks). */
const SMALL_FRAME = 1024;

export interface Target {
  host: string;
  port: number;
}

// ── Payloads and frames, made once ──────────────────────────────────────────

/** 32-bit numbers from a seed (test/support's PRNG), so that both servers get the same bytes. */
function generator(seed: number): () => number {
  const prng = new Prng(seed);
  return () => prng.uint32();
}

const WORDS = [
  "the",
  "room",
  "message",
  "hello",
  "frame",
  "socket",
  "server",
  "client",
  "chat",
  "echo",
  "window",
  "你好",
  "世界",
  "小明",
  "小红",
  "消息",
  "聊天室",
  "deflate",
  "mask",
  "payload",
  "latency",
  "ok",
  "🙂",
];

/** `size` bytes of text (UTF-8, about a tenth of it multi-byte, compressible like prose)
 * or of binary (five bits of entropy a byte: compressible, but less so). */
export function makePayload(size: number, kind: "text" | "binary", seed = 7): Buffer {
  const next = generator(seed + size);
  const payload = Buffer.allocUnsafe(size);
  if (kind === "binary") {
    for (let index = 0; index < size; index++) payload[index] = next() & 0x1f;
    return payload;
  }
  const words = WORDS.map((word) => Buffer.from(word + " ", "utf8"));
  let used = 0;
  for (;;) {
    const word = words[next() % words.length]!;
    if (used + word.length > size) break;
    word.copy(payload, used);
    used += word.length;
  }
  payload.fill(0x2e, used); // "." up to the exact size: never half a character
  return payload;
}

/** One client frame: FIN, the opcode, RSV1 if compressed, masked with `maskKey`. */
export function buildFrame(opcode: number, payload: Uint8Array, rsv1: boolean, maskKey: Uint8Array): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = 2 + lengthBytes + 4;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  frame.set(maskKey.subarray(0, 4), 2 + lengthBytes);
  for (let index = 0; index < length; index++) frame[header + index] = payload[index]! ^ maskKey[index & 3]!;
  return frame;
}

/** RFC 7692 §7.2.1: raw deflate, sync-flushed, without the last four bytes. */
export function compress(payload: Uint8Array): Buffer {
  const output = deflateRawSync(payload, { windowBits: 15, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return output.subarray(0, output.length - DEFLATE_TAIL.length);
}

function inflate(data: Buffer): Buffer {
  return inflateRawSync(Buffer.concat([data, DEFLATE_TAIL]), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
}

/** Whether a[aStart, aStart+length) equals b[bStart, bStart+length). Short
 * ranges are compared here: a call into Buffer.compare costs more than a
 * few dozen bytes of JavaScript. */
function bytesEqual(a: Buffer, aStart: number, b: Buffer, bStart: number, length: number): boolean {
  if (length > 64) return a.compare(b, bStart, bStart + length, aStart, aStart + length) === 0;
  for (let index = 0; index < length; index++) if (a[aStart + index] !== b[bStart + index]) return false;
  return true;
}

/** `count` copies of `frame`, end to end: n frames are sent as one slice of it. */
function repeatFrame(frame: Buffer, count: number): Buffer {
  const batch = Buffer.allocUnsafe(frame.length * count);
  for (let index = 0; index < count; index++) frame.copy(batch, index * frame.length);
  return batch;
}

// ── A latency histogram: log buckets 1% wide, fixed memory ──────────────────

const LOG_STEP = Math.log(1.01);

export class Histogram {
  private readonly counts = new Uint32Array(2600);
  count = 0;
  max = 0;

  /** Records one value in microseconds. */
  record(microseconds: number): void {
    const value = microseconds > 0 ? microseconds : 0;
    const index = Math.min(this.counts.length - 1, Math.floor(Math.log1p(value) / LOG_STEP));
    this.counts[index]!++;
    this.count++;
    if (value > this.max) this.max = value;
  }

  /** The value below which `percent` % of the records lie (within 1%). */
  percentile(percent: number): number {
    if (this.count === 0) return Number.NaN;
    const wanted = Math.max(1, Math.ceil((percent / 100) * this.count));
    let seen = 0;
    for (let index = 0; index < this.counts.length; index++) {
      seen += this.counts[index]!;
      if (seen >= wanted) return Math.min(this.max, Math.expm1((index + 0.5) * LOG_STEP));
    }
    return this.max;
  }
}

// ── Reading server frames without copying them ─────────────────────────────

/** What a load wants to know of the frames a connection receives. */
export interface FrameSink {
  /** A frame whose payload is `data[start, end)`, all at once. */
  whole(opcode: number, rsv1: boolean, data: Buffer, start: number, end: number): void;
  /** A frame larger than SMALL_FRAME bytes: its payload comes in pieces. */
  begin(opcode: number, rsv1: boolean, length: number): void;
  piece(data: Buffer, start: number, end: number): void;
  end(): void;
  /** Once per chunk, after its frames: the place to send more. */
  afterChunk(): void;
  /** A protocol error in what the server sent. */
  fail(reason: string): void;
}

/** A server-frame reader for one connection (RFC 6455 §5.2, unmasked frames).
 * It handles headers split across chunks; payloads are never copied except
 * for a small frame that straddles two chunks. */
class FrameReader {
  private readonly header = Buffer.alloc(10);
  private headerHave = 0;
  private headerNeed = 2;
  private opcode = 0;
  private rsv1 = false;
  /** Payload bytes still to come; -1 between frames. */
  private remaining = -1;
  private small: Buffer | undefined;
  private smallHave = 0;
  private readonly sink: FrameSink;

  constructor(sink: FrameSink) {
    this.sink = sink;
  }

  feed(chunk: Buffer): void {
    const sink = this.sink;
    const size = chunk.length;
    let position = 0;
    while (position < size) {
      if (this.remaining < 0) {
        // The header: 2 bytes, then 2 or 8 more for a long length.
        while (this.headerHave < this.headerNeed && position < size)
          this.header[this.headerHave++] = chunk[position++]!;
        if (this.headerHave < this.headerNeed) break;
        const byte1 = this.header[1]!;
        const length7 = byte1 & 0x7f;
        if (this.headerNeed === 2 && length7 >= 126) {
          this.headerNeed = length7 === 126 ? 4 : 10;
          continue;
        }
        const byte0 = this.header[0]!;
        if (byte1 & 0x80) return sink.fail("a server frame was masked");
        if ((byte0 & 0x80) === 0) return sink.fail("a fragmented server frame (this client does not expect any)");
        const length =
          length7 < 126
            ? length7
            : length7 === 126
              ? this.header.readUInt16BE(2)
              : this.header.readUInt32BE(2) * 2 ** 32 + this.header.readUInt32BE(6);
        this.opcode = byte0 & 0x0f;
        this.rsv1 = (byte0 & 0x40) !== 0;
        this.headerHave = 0;
        this.headerNeed = 2;
        if (length <= SMALL_FRAME) {
          if (size - position >= length) {
            sink.whole(this.opcode, this.rsv1, chunk, position, position + length);
            position += length;
            continue;
          }
          this.small = Buffer.allocUnsafe(length);
          this.smallHave = 0;
        } else {
          sink.begin(this.opcode, this.rsv1, length);
        }
        this.remaining = length;
        continue;
      }
      const take = Math.min(this.remaining, size - position);
      if (this.small !== undefined) {
        chunk.copy(this.small, this.smallHave, position, position + take);
        this.smallHave += take;
      } else {
        sink.piece(chunk, position, position + take);
      }
      position += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        this.remaining = -1;
        const small = this.small;
        if (small !== undefined) {
          this.small = undefined;
          sink.whole(this.opcode, this.rsv1, small, 0, small.length);
        } else sink.end();
      }
    }
    sink.afterChunk();
  }
}

// ── The opening handshake, by hand ──────────────────────────────────────────

const handshakeKey = randomBytes(16).toString("base64");
const expectedAccept = createHash("sha1")
  .update(handshakeKey + GUID)
  .digest("base64");
export const DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

function handshakeRequest(target: Target, path: string, deflate: boolean): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${handshakeKey}\r\nSec-WebSocket-Version: 13\r\n` +
    (deflate ? `Sec-WebSocket-Extensions: ${DEFLATE_OFFER}\r\n` : "") +
    "\r\n"
  );
}

export interface Conn {
  socket: Socket;
  /** Whether permessage-deflate was agreed. */
  deflate: boolean;
}

export interface OpenOptions {
  path: string;
  deflate: boolean;
  /** A plain TCP peer: no handshake; every byte goes to `onRaw`. */
  raw?: boolean;
  timeoutMs?: number;
  /** The loopback address to connect from (127.0.0.2, ...): each has its own
   * range of ephemeral ports, so that many thousands of connections fit. */
  localAddress?: string;
}

/** Every socket reads into this one buffer (net.connect's `onread`): no
 * Buffer is allocated and no stream event is emitted per read. The bytes are
 * valid only during the callback; whatever must outlive it is copied. */
const readBuffer = Buffer.allocUnsafe(1024 * 1024);

/** Connects, upgrades, and hands every later byte to `sink` (or, for a raw
 * peer, to the function). Chunks given to either are only valid during the call. */
export function openConnection(
  target: Target,
  options: OpenOptions,
  sink: FrameSink | ((chunk: Buffer) => void),
): Promise<Conn> {
  const request = options.raw ? "" : handshakeRequest(target, options.path, options.deflate);
  return new Promise((resolvePromise, rejectPromise) => {
    let onBytes: (chunk: Buffer) => void = () => {};
    const socket = connect({
      host: target.host,
      port: target.port,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (length: number, buffer: Uint8Array) => {
          onBytes((buffer as Buffer).subarray(0, length));
          return true; // false would pause the socket
        },
      },
    });
    let settled = false;
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(
      () => fail(new Error(`no handshake within ${options.timeoutMs ?? 20_000} ms`)),
      options.timeoutMs ?? 20_000,
    );
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      rejectPromise(error);
    };
    const succeed = (deflate: boolean, rest: Buffer | undefined) => {
      settled = true;
      clearTimeout(timer);
      if (typeof sink === "function") {
        onBytes = sink;
      } else {
        const reader = new FrameReader(sink);
        onBytes = (chunk) => reader.feed(chunk);
        if (rest !== undefined && rest.length > 0) reader.feed(rest);
      }
      resolvePromise({ socket, deflate });
    };
    socket.on("error", (error) => fail(error));
    socket.once("close", () => fail(new Error("the connection closed during the handshake")));
    socket.once("connect", () => {
      if (options.raw) return succeed(false, undefined);
      socket.write(request);
    });
    onBytes = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]); // a copy: `chunk` is the shared read buffer
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (head.length > 16_384) fail(new Error("handshake response too long"));
        return;
      }
      const lines = head.subarray(0, end).toString("latin1").split("\r\n");
      if (!/^HTTP\/1\.1 101 /.test(lines[0] ?? "")) return fail(new Error(`handshake refused: ${lines[0]}`));
      let accept = "";
      let extensions = "";
      for (const line of lines) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim().toLowerCase();
        if (name === "sec-websocket-accept") accept = line.slice(colon + 1).trim();
        if (name === "sec-websocket-extensions") extensions = line.slice(colon + 1).trim();
      }
      if (accept !== expectedAccept) return fail(new Error(`wrong Sec-WebSocket-Accept: ${accept}`));
      const deflate = extensions.toLowerCase().startsWith("permessage-deflate");
      if (options.deflate && !deflate) return fail(new Error("permessage-deflate was offered but not agreed"));
      if (!options.deflate && extensions !== "") return fail(new Error(`an extension nobody offered: ${extensions}`));
      succeed(deflate, head.subarray(end + 4));
    };
  });
}

/** Opens `count` connections, at most `concurrency` handshakes at a time. */
export async function openMany(
  target: Target | ((index: number) => Target),
  count: number,
  concurrency: number,
  options: OpenOptions | ((index: number) => OpenOptions),
  makeSink: (index: number) => FrameSink | ((chunk: Buffer) => void),
): Promise<{ conns: Conn[]; seconds: number }> {
  const conns: Conn[] = new Array<Conn>(count);
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      const index = next++;
      conns[index] = await openConnection(
        typeof target === "function" ? target(index) : target,
        typeof options === "function" ? options(index) : options,
        makeSink(index),
      );
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (error) {
    for (const conn of conns) conn?.socket.destroy();
    throw error;
  }
  return { conns, seconds: (performance.now() - started) / 1000 };
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, milliseconds));
}

/** Polls `done` every few milliseconds; false if it was not true by the deadline. */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

/** Hooks the benchmark uses to read server CPU at the edges of the measured window. */
export interface MeasureHooks {
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}

/** Errors are counted; the first few are kept with their text. */
export class ErrorLog {
  count = 0;
  readonly first: string[] = [];
  add(reason: string): void {
    this.count++;
    if (this.first.length < 5) this.first.push(reason);
  }
}

// ── Echo: throughput, and round-trip latency with window 1 ──────────────────

export interface EchoOptions extends MeasureHooks {
  target: Target;
  /** A plain TCP echo server: no handshake, the frames come back as they went. */
  raw: boolean;
  connections: number;
  size: number;
  kind: "text" | "binary";
  deflate: boolean;
  /** Messages each connection keeps in flight. */
  window: number;
  warmupMs: number;
  durationMs: number;
  /** Time allowed, after the measured window, for the replies still in flight. */
  drainTimeoutMs?: number;
  /** Round-trip time of every measured message (use with window 1). */
  recordLatency?: boolean;
}

export interface EchoResult {
  /** Replies received in the measured window. */
  messages: number;
  seconds: number;
  messagesPerSecond: number;
  /** Payload bytes (before compression) echoed per second, one way. */
  bytesPerSecond: number;
  clientCpuSeconds: number;
  /** Every reply, measured or not: all checked. */
  verified: number;
  /** Sent messages whose reply never came. */
  missing: number;
  /** Compressed replies that had to be inflated to be checked (their bytes differed from ours). */
  inflated: number;
  errors: number;
  firstErrors: string[];
  latency?: { p50: number; p99: number; count: number };
}

/** What a reply must be. Compressed replies are compared with the compressed
 * forms already seen; a new form is inflated once and remembered. */
class Expectation {
  readonly opcode: number;
  readonly compressed: boolean;
  readonly payload: Buffer;
  readonly variants: Buffer[] = [];
  inflated = 0;

  constructor(opcode: number, payload: Buffer, compressed: boolean) {
    this.opcode = opcode;
    this.payload = payload;
    this.compressed = compressed;
    if (compressed) this.variants.push(compress(payload));
  }

  /** Checks a compressed payload given in pieces. */
  checkCompressed(pieces: Buffer[], length: number): string | undefined {
    for (const variant of this.variants) {
      if (variant.length !== length) continue;
      let offset = 0;
      let same = true;
      for (const piece of pieces) {
        if (piece.compare(variant, offset, offset + piece.length) !== 0) {
          same = false;
          break;
        }
        offset += piece.length;
      }
      if (same) return undefined;
    }
    this.inflated++;
    let inflated: Buffer;
    const data = Buffer.concat(pieces, length);
    try {
      inflated = inflate(data);
    } catch (error) {
      return `a compressed reply did not inflate: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (!inflated.equals(this.payload))
      return `a compressed reply inflated to ${inflated.length} bytes that differ from the ${this.payload.length} sent`;
    if (this.variants.length < 8) this.variants.push(Buffer.from(data));
    return undefined;
  }
}

/** Send times of the messages in flight on one connection, oldest first (for round trips). */
class SendTimes {
  private readonly times: Float64Array;
  private head = 0;
  private count = 0;

  constructor(capacity: number) {
    this.times = new Float64Array(capacity);
  }

  push(count: number, now: number): void {
    for (let index = 0; index < count; index++) {
      this.times[(this.head + this.count) % this.times.length] = now;
      this.count++;
    }
  }

  /** The round trip of the oldest message in flight, in microseconds. */
  pop(now: number): number {
    const sent = this.times[this.head]!;
    this.head = (this.head + 1) % this.times.length;
    this.count--;
    return (now - sent) * 1000;
  }
}

class EchoConnection implements FrameSink {
  conn: Conn | undefined;
  inFlight = 0;
  private readonly load: EchoLoad;
  private pieces: Buffer[] = [];
  private pieceLength = 0;
  private offset = 0;
  private frameOk = true;
  private frameLength = 0;
  /** Only with recordLatency. */
  readonly sendTimes: SendTimes;

  constructor(load: EchoLoad) {
    this.load = load;
    this.sendTimes = new SendTimes(load.recordLatency ? load.window : 0);
  }

  whole(opcode: number, rsv1: boolean, data: Buffer, start: number, end: number): void {
    const expected = this.load.expectation;
    if (opcode !== expected.opcode) return this.unexpected(opcode, data, start, end);
    let problem: string | undefined;
    if (rsv1 !== expected.compressed) problem = `RSV1 was ${rsv1 ? "set" : "clear"} on a ${end - start}-byte reply`;
    else if (rsv1) problem = expected.checkCompressed([data.subarray(start, end)], end - start);
    else if (end - start !== expected.payload.length || !bytesEqual(data, start, expected.payload, 0, end - start)) {
      problem = `a reply of ${end - start} bytes differs from the ${expected.payload.length} sent`;
    }
    this.reply(problem);
  }

  begin(opcode: number, rsv1: boolean, length: number): void {
    const expected = this.load.expectation;
    this.frameOk =
      opcode === expected.opcode && rsv1 === expected.compressed && (rsv1 || length === expected.payload.length);
    if (!this.frameOk)
      this.load.errors.add(
        `a reply had opcode ${opcode}, RSV1 ${rsv1}, ${length} bytes; expected opcode ${expected.opcode}, RSV1 ${expected.compressed}, ${expected.payload.length} bytes`,
      );
    this.frameLength = length;
    this.offset = 0;
    this.pieces = [];
    this.pieceLength = 0;
  }

  piece(data: Buffer, start: number, end: number): void {
    if (!this.frameOk) return;
    if (this.load.expectation.compressed) {
      this.pieces.push(Buffer.from(data.subarray(start, end))); // a copy: `data` is the shared read buffer
      this.pieceLength += end - start;
      return;
    }
    if (!bytesEqual(data, start, this.load.expectation.payload, this.offset, end - start)) {
      this.frameOk = false;
      this.load.errors.add(`a ${this.frameLength}-byte reply differs from what was sent at byte ${this.offset}`);
    }
    this.offset += end - start;
  }

  end(): void {
    if (!this.frameOk) return this.reply(undefined); // already reported by begin or piece
    const problem = this.load.expectation.compressed
      ? this.load.expectation.checkCompressed(this.pieces, this.pieceLength)
      : undefined;
    this.pieces = [];
    this.reply(problem);
  }

  private unexpected(opcode: number, data: Buffer, start: number, end: number): void {
    if (opcode === OPCODE_CLOSE) {
      const code = end - start >= 2 ? data.readUInt16BE(start) : 1005;
      this.load.errors.add(`the server closed the connection: ${code} ${data.toString("utf8", start + 2, end)}`);
    } else this.load.errors.add(`an unexpected frame with opcode ${opcode}`);
  }

  private reply(problem: string | undefined): void {
    if (problem !== undefined) this.load.errors.add(problem);
    this.inFlight--;
    this.load.replied(this);
  }

  afterChunk(): void {
    this.load.topUp(this);
  }

  fail(reason: string): void {
    this.load.errors.add(reason);
    this.conn?.socket.destroy();
  }
}

class EchoLoad {
  readonly expectation: Expectation;
  readonly window: number;
  readonly recordLatency: boolean;
  readonly errors = new ErrorLog();
  readonly histogram = new Histogram();
  readonly batch: Buffer;
  readonly frameLength: number;
  sending = false;
  measuring = false;
  replies = 0;

  constructor(options: EchoOptions) {
    const payload = makePayload(options.size, options.kind);
    const opcode = options.kind === "text" ? OPCODE_TEXT : OPCODE_BINARY;
    const compressed = options.deflate && options.size >= DEFLATE_THRESHOLD;
    this.expectation = new Expectation(opcode, payload, compressed);
    const frame = buildFrame(opcode, compressed ? this.expectation.variants[0]! : payload, compressed, randomBytes(4));
    this.frameLength = frame.length;
    this.window = options.window;
    this.recordLatency = options.recordLatency ?? false;
    this.batch = repeatFrame(frame, options.window);
  }

  replied(connection: EchoConnection | RawEchoConnection): void {
    this.replies++;
    if (this.recordLatency) {
      const rtt = connection.sendTimes.pop(performance.now());
      if (this.measuring) this.histogram.record(rtt);
    }
  }

  /** Sends as many frames as the window allows, in one write. */
  topUp(connection: EchoConnection): void {
    if (!this.sending || connection.conn === undefined) return;
    const count = this.window - connection.inFlight;
    if (count <= 0) return;
    connection.inFlight += count;
    if (this.recordLatency) connection.sendTimes.push(count, performance.now());
    connection.conn.socket.write(count === this.window ? this.batch : this.batch.subarray(0, count * this.frameLength));
  }
}

/** The raw variant: a TCP echo returns our masked frames unchanged. */
class RawEchoConnection {
  conn: Conn | undefined;
  inFlight = 0;
  private offset = 0;
  private readonly load: EchoLoad;
  private readonly frame: Buffer;
  readonly sendTimes: SendTimes;

  constructor(load: EchoLoad) {
    this.load = load;
    this.frame = load.batch.subarray(0, load.frameLength);
    this.sendTimes = new SendTimes(load.recordLatency ? load.window : 0);
  }

  readonly onData = (chunk: Buffer): void => {
    const frame = this.frame;
    const frameLength = frame.length;
    let position = 0;
    while (position < chunk.length) {
      const take = Math.min(frameLength - this.offset, chunk.length - position);
      if (!bytesEqual(chunk, position, frame, this.offset, take)) {
        this.load.errors.add("the TCP echo returned different bytes");
      }
      this.offset += take;
      position += take;
      if (this.offset === frameLength) {
        this.offset = 0;
        this.inFlight--;
        this.load.replied(this);
      }
    }
    if (!this.load.sending || this.conn === undefined) return;
    const count = this.load.window - this.inFlight;
    if (count <= 0) return;
    this.inFlight += count;
    if (this.load.recordLatency) this.sendTimes.push(count, performance.now());
    this.conn.socket.write(
      count === this.load.window ? this.load.batch : this.load.batch.subarray(0, count * frameLength),
    );
  };
}

export async function runEcho(options: EchoOptions): Promise<EchoResult> {
  const load = new EchoLoad(options);
  const path = "/echo";
  const connections: Array<EchoConnection | RawEchoConnection> = [];
  const conns: Conn[] = [];
  try {
    for (let index = 0; index < options.connections; index++) {
      if (options.raw) {
        const connection = new RawEchoConnection(load);
        connection.conn = await openConnection(options.target, { path, deflate: false, raw: true }, connection.onData);
        connections.push(connection);
        conns.push(connection.conn);
      } else {
        const connection = new EchoConnection(load);
        connection.conn = await openConnection(options.target, { path, deflate: options.deflate }, connection);
        connections.push(connection);
        conns.push(connection.conn);
      }
    }
    for (const conn of conns) {
      conn.socket.on("close", () => {
        if (load.sending) load.errors.add("a connection closed during the run");
      });
    }
    // Start: every connection fills its window.
    load.sending = true;
    for (const connection of connections) {
      if (connection instanceof EchoConnection) load.topUp(connection);
      else connection.onData(Buffer.alloc(0));
    }
    await sleep(options.warmupMs);
    const cpuBefore = process.cpuUsage();
    const repliesBefore = load.replies;
    options.onMeasureStart?.();
    const started = performance.now();
    load.measuring = true;
    await sleep(options.durationMs);
    load.measuring = false;
    const seconds = (performance.now() - started) / 1000;
    const messages = load.replies - repliesBefore;
    options.onMeasureEnd?.();
    const cpu = process.cpuUsage(cpuBefore);
    load.sending = false;
    const inFlight = () => connections.reduce((sum, connection) => sum + connection.inFlight, 0);
    await waitUntil(() => inFlight() === 0 || load.errors.count > 0, options.drainTimeoutMs ?? 30_000);
    const missing = inFlight();
    if (missing > 0) load.errors.add(`${missing} messages never came back`);
    return {
      messages,
      seconds,
      messagesPerSecond: messages / seconds,
      bytesPerSecond: (messages * options.size) / seconds,
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
      verified: load.replies,
      missing,
      inflated: load.expectation.inflated,
      errors: load.errors.count,
      firstErrors: load.errors.first,
      latency: options.recordLatency
        ? { p50: load.histogram.percentile(50), p99: load.histogram.percentile(99), count: load.histogram.count }
        : undefined,
    };
  } finally {
    load.sending = false;
    for (const conn of conns) conn.socket.destroy();
  }
}

// ── Chat fan-out ────────────────────────────────────────────────────────────

/** A phase in which the sender says a fixed number of messages a second,
 * whatever the servers do: the latency of a room that is not saturated. */
export interface PacedOptions extends MeasureHooks {
  ratePerSecond: number;
  warmupMs: number;
  durationMs: number;
}

/** Messages a paced run may say: its warm-up and window at its rate, half as many again to spare, and the barrier. */
export function pacedCapacity(paced: PacedOptions): number {
  return Math.ceil(((paced.warmupMs + paced.durationMs) / 1000) * paced.ratePerSecond * 1.5) + 100;
}

export interface FanoutOptions extends MeasureHooks {
  /** Several: client i connects to the (i mod n)th, servers that share one room;
   * the sender, client 0, is on the first. */
  target: Target | Target[];
  clients: number;
  /** Messages said but not yet delivered to every client, at most (the saturated phase). */
  window: number;
  warmupMs: number;
  durationMs: number;
  /** An upper bound on the messages of one run (their frames are built beforehand). */
  maxMessages: number;
  connectConcurrency?: number;
  drainTimeoutMs?: number;
  /** Called once every client is connected and has seen the first message (the barrier). */
  onReady?: () => void;
  /** Awaited after the barrier, before any load: e.g. until the servers are done announcing the joins. */
  beforeLoad?: () => Promise<void>;
  /** A paced phase before the saturated one; its hooks are its own. */
  paced?: PacedOptions;
  /** false: the paced phase alone (then required), whose figures the result's are. */
  saturated?: boolean;
}

/** The figures of one measured window. */
export interface FanoutPhase {
  /** Messages said in the measured window. */
  messages: number;
  /** Deliveries received in the measured window. */
  deliveries: number;
  seconds: number;
  deliveriesPerSecond: number;
  clientCpuSeconds: number;
  /** From the write of a message said in the window to its delivery, over every client. */
  latency: { p50: number; p99: number; count: number };
}

/** What a run of one sender to many clients reports besides its phases' figures. */
export interface DeliveryOutcome {
  clients: number;
  connectSeconds: number;
  /** Messages said in the whole run (barrier and warm-up included). */
  said: number;
  /** Every client got every message said, exactly once, in order (a chat client: and their seqs one after the
   * other; a floor client: byte for byte). */
  everyDeliveryOnceInOrder: boolean;
  errors: number;
  firstErrors: string[];
  /** The open connections: the caller destroys them (after stopping the server,
   * so that neither side spends the next measurement on a storm of "left" messages). */
  conns: Conn[];
}

/** The saturated phase's figures, and the paced phase's when there was one. */
export interface FanoutResult extends FanoutPhase, DeliveryOutcome {
  paced: FanoutPhase | undefined;
}

const MESSAGE_PREFIX = Buffer.from('{"type":"message"');
const ID_FIELD = Buffer.from('"id":"f');
const SEQ_FIELD = Buffer.from('"seq":');
const CHAT_TEXT = "A chat line of about sixty characters, the size people type.";

/** Every `say` frame of a run, built and masked beforehand, end to end in one buffer. */
class SayFrames {
  readonly bytes: Buffer;
  readonly offsets: Uint32Array;
  readonly count: number;

  constructor(count: number) {
    const maskKey = randomBytes(4);
    const frames: Buffer[] = [];
    for (let index = 0; index < count; index++) {
      const text = JSON.stringify({ type: "say", id: `f${index}`, text: CHAT_TEXT });
      frames.push(buildFrame(OPCODE_TEXT, Buffer.from(text, "utf8"), false, maskKey));
    }
    this.count = count;
    this.offsets = new Uint32Array(count + 1);
    for (let index = 0; index < count; index++) this.offsets[index + 1] = this.offsets[index]! + frames[index]!.length;
    this.bytes = Buffer.concat(frames);
  }

  slice(from: number, to: number): Buffer {
    return this.bytes.subarray(this.offsets[from]!, this.offsets[to]!);
  }
}

let cachedSayFrames: SayFrames | undefined;

class FanoutClient implements FrameSink {
  /** The next message this client must get. */
  next = 0;
  /** seq − id of the first message: with one sender, every later message keeps it (seqs without a gap). */
  private seqOffset = Number.NaN;
  private readonly load: FanoutLoad;
  private readonly index: number;

  constructor(load: FanoutLoad, index: number) {
    this.load = load;
    this.index = index;
  }

  whole(opcode: number, _rsv1: boolean, data: Buffer, start: number, end: number): void {
    if (opcode !== OPCODE_TEXT) {
      if (opcode === OPCODE_CLOSE)
        this.load.errors.add(
          `client ${this.index}: the server closed the connection: ${data.toString("utf8", start + 2, end)}`,
        );
      return;
    }
    // Only {"type":"message",...} counts; welcome, joined and the like are not part of the test.
    if (end - start < 40 || !bytesEqual(data, start, MESSAGE_PREFIX, 0, MESSAGE_PREFIX.length)) return;
    const id = readId(data, start, end);
    if (id < 0) return this.load.errors.add(`client ${this.index}: a message without a numeric id`);
    if (id !== this.next) return this.load.errors.add(`client ${this.index}: got message ${id}, expected ${this.next}`);
    const seq = readSeq(data, start, end);
    if (seq < 0) return this.load.errors.add(`client ${this.index}: message ${id} without a numeric seq`);
    if (id === 0) this.seqOffset = seq;
    else if (seq !== this.seqOffset + id)
      return this.load.errors.add(
        `client ${this.index}: message ${id} has seq ${seq}, expected ${this.seqOffset + id} (seqs out of order)`,
      );
    this.next++;
    this.load.delivered(id);
  }

  begin(): void {} // large frames (a welcome listing 1,000 names) are not chat messages
  piece(): void {}
  end(): void {}

  afterChunk(): void {
    this.load.afterChunk();
  }

  fail(reason: string): void {
    this.load.errors.add(`client ${this.index}: ${reason}`);
  }
}

/** The position just after `field` in a message, or -1. */
function findField(data: Buffer, start: number, end: number, field: Buffer): number {
  const first = field[0]!;
  const last = end - field.length;
  for (let position = start + MESSAGE_PREFIX.length; position <= last; position++) {
    if (data[position] === first && bytesEqual(data, position, field, 0, field.length)) return position + field.length;
  }
  return -1;
}

/** The digits from `from` up to `terminator` (or, if it is -1, up to any other byte), or -1. */
function readDigits(data: Buffer, from: number, end: number, terminator: number): number {
  let value = 0;
  let digits = 0;
  for (let cursor = from; cursor < end; cursor++) {
    const byte = data[cursor]!;
    if (byte < 0x30 || byte > 0x39) return digits > 0 && (terminator < 0 || byte === terminator) ? value : -1;
    value = value * 10 + (byte - 0x30);
    digits++;
  }
  return -1;
}

/** The number after `"id":"f` in a message, or -1. */
function readId(data: Buffer, start: number, end: number): number {
  const from = findField(data, start, end, ID_FIELD);
  return from < 0 ? -1 : readDigits(data, from, end, 0x22);
}

/** The number after `"seq":` in a message, or -1. */
function readSeq(data: Buffer, start: number, end: number): number {
  const from = findField(data, start, end, SEQ_FIELD);
  return from < 0 ? -1 : readDigits(data, from, end, -1);
}

/** One sender says numbered messages and every client must get each: the
 * send times, deliveries and latencies of a chat fan-out and of the TCP
 * floor's broadcast alike, so that both are measured by the same phases. */
abstract class DeliveryLoad {
  readonly errors = new ErrorLog();
  /** The current phase's latencies (a new one for each phase). */
  histogram = new Histogram();
  readonly clients: number;
  /** Messages prepared for the run: the most that can be said. */
  readonly capacity: number;
  readonly sentAt: Float64Array;
  readonly measured: Uint8Array;
  readonly deliveredTo: Uint32Array;
  sender: Conn | undefined;
  sent = 0;
  completed = 0;
  deliveries = 0;
  measuring = false;
  private now = 0;
  private nowValid = false;

  constructor(clients: number, capacity: number) {
    this.clients = clients;
    this.capacity = capacity;
    this.sentAt = new Float64Array(capacity);
    this.measured = new Uint8Array(capacity);
    this.deliveredTo = new Uint32Array(capacity);
  }

  /** The bytes of messages [from, to), end to end. */
  protected abstract bytes(from: number, to: number): Buffer;

  delivered(id: number): void {
    if (!this.nowValid) {
      this.now = performance.now();
      this.nowValid = true;
    }
    if (this.measuring) this.deliveries++;
    if (this.measured[id] === 1) this.histogram.record((this.now - this.sentAt[id]!) * 1000);
    if (++this.deliveredTo[id] === this.clients) this.completed++;
  }

  /** After each chunk a client has read: the next delivery reads the clock again. */
  chunkDone(): void {
    this.nowValid = false;
  }

  /** Says the messages before `limit` not said yet (as many as are prepared), in one write. */
  sendUpTo(limit: number): void {
    if (this.sender === undefined) return;
    limit = Math.min(limit, this.capacity);
    if (this.sent >= limit) return;
    const now = performance.now();
    for (let id = this.sent; id < limit; id++) {
      this.sentAt[id] = now;
      this.measured[id] = this.measuring ? 1 : 0;
    }
    this.sender.socket.write(this.bytes(this.sent, limit));
    this.sent = limit;
  }

  /** Waits until every message said has reached every client (or an error, or the deadline). */
  async drain(timeoutMs: number): Promise<void> {
    await waitUntil(() => this.completed === this.sent || this.errors.count > 0, timeoutMs);
  }
}

class FanoutLoad extends DeliveryLoad {
  readonly frames: SayFrames;
  readonly window: number;
  /** From the barrier to the end: a connection that closes meanwhile is an error. */
  running = false;
  /** Whether every delivery says the next message (the saturated phase); paced sends go by the clock instead. */
  windowed = false;

  constructor(options: FanoutOptions) {
    if (cachedSayFrames === undefined || cachedSayFrames.count < options.maxMessages)
      cachedSayFrames = new SayFrames(options.maxMessages);
    super(options.clients, Math.min(options.maxMessages, cachedSayFrames.count));
    this.frames = cachedSayFrames;
    this.window = options.window;
  }

  protected bytes(from: number, to: number): Buffer {
    return this.frames.slice(from, to);
  }

  afterChunk(): void {
    this.chunkDone();
    if (this.windowed) this.sendUpTo(this.completed + this.window);
  }

  /** Says exactly one message (the barrier). */
  sayOne(): void {
    this.sendUpTo(this.sent + 1);
  }
}

/** A warm-up, then the measured window, then the sending stops and what was said is drained. */
async function measurePhase(
  load: DeliveryLoad,
  timing: { warmupMs: number; durationMs: number; drainTimeoutMs: number },
  hooks: MeasureHooks,
  stopSending: () => void,
): Promise<FanoutPhase> {
  await sleep(timing.warmupMs);
  load.histogram = new Histogram();
  const cpuBefore = process.cpuUsage();
  const deliveriesBefore = load.deliveries;
  const saidBefore = load.sent;
  hooks.onMeasureStart?.();
  load.measuring = true;
  const started = performance.now();
  await sleep(timing.durationMs);
  load.measuring = false;
  const seconds = (performance.now() - started) / 1000;
  hooks.onMeasureEnd?.();
  const cpu = process.cpuUsage(cpuBefore);
  const messages = load.sent - saidBefore;
  const deliveries = load.deliveries - deliveriesBefore;
  stopSending();
  if (load.sent >= load.capacity) load.errors.add(`ran out of prepared messages (${load.capacity}); raise maxMessages`);
  // The latencies of the window's last messages arrive after it: the histogram is read once they are in.
  await load.drain(timing.drainTimeoutMs);
  const histogram = load.histogram;
  return {
    messages,
    deliveries,
    seconds,
    deliveriesPerSecond: deliveries / seconds,
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    latency: { p50: histogram.percentile(50), p99: histogram.percentile(99), count: histogram.count },
  };
}

/** The sender says `ratePerSecond` messages a second, by the clock (checked every millisecond). */
async function pacedPhase(load: DeliveryLoad, paced: PacedOptions, drainTimeoutMs: number): Promise<FanoutPhase> {
  const began = performance.now();
  const first = load.sent;
  const timer = setInterval(() => {
    load.sendUpTo(first + Math.floor(((performance.now() - began) * paced.ratePerSecond) / 1000));
  }, 1);
  try {
    return await measurePhase(load, { ...paced, drainTimeoutMs }, paced, () => clearInterval(timer));
  } finally {
    clearInterval(timer);
  }
}

export async function runFanout(options: FanoutOptions): Promise<FanoutResult> {
  const load = new FanoutLoad(options);
  const members: FanoutClient[] = [];
  const targets = Array.isArray(options.target) ? options.target : [options.target];
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  let conns: Conn[] = [];
  try {
    const opened = await openMany(
      (index) => targets[index % targets.length]!,
      options.clients,
      options.connectConcurrency ?? 100,
      { path: "/", deflate: false },
      (index) => {
        const client = new FanoutClient(load, index);
        members.push(client);
        return client;
      },
    );
    conns = opened.conns;
    for (const conn of conns) {
      conn.socket.on("close", () => {
        if (load.running) load.errors.add("a client's connection closed during the run");
      });
    }
    load.running = true;
    load.sender = conns[0]!;
    // The barrier: when every client has message 0, every join is behind us.
    load.sayOne();
    if (!(await waitUntil(() => load.completed >= 1 || load.errors.count > 0, 60_000)))
      load.errors.add("the first message never reached every client");
    options.onReady?.();
    await options.beforeLoad?.();
    const paced = options.paced === undefined ? undefined : await pacedPhase(load, options.paced, drainTimeoutMs);
    let saturated: FanoutPhase;
    if (options.saturated === false) {
      if (paced === undefined) throw new Error("runFanout: saturated: false needs a paced phase");
      saturated = paced;
    } else {
      load.windowed = true;
      load.afterChunk();
      saturated = await measurePhase(load, { ...options, drainTimeoutMs }, options, () => (load.windowed = false));
    }
    load.running = false;
    const outcome = deliveryOutcome(
      load,
      opened.seconds,
      members.map((member) => member.next),
      conns,
    );
    return { ...saturated, ...outcome, paced };
  } catch (error) {
    destroyAll(conns);
    throw error;
  } finally {
    load.running = false;
    load.windowed = false;
  }
}

/** The outcome of a delivery run once its sending is over: the check that
 * every delivery arrived first, since it may add an error. */
function deliveryOutcome(
  load: DeliveryLoad,
  connectSeconds: number,
  received: readonly number[],
  conns: Conn[],
): DeliveryOutcome {
  const everyDeliveryOnceInOrder = verifyEveryDelivery(load, received);
  return {
    clients: load.clients,
    connectSeconds,
    said: load.sent,
    everyDeliveryOnceInOrder,
    errors: load.errors.count,
    firstErrors: load.errors.first,
    conns,
  };
}

/** Whether every client got every message said, once and in order, given
 * how many each got in order; when not, and nothing else went wrong, an
 * error says how many are behind. */
function verifyEveryDelivery(load: DeliveryLoad, received: readonly number[]): boolean {
  const ok = load.errors.count === 0 && received.every((count) => count === load.sent) && load.completed === load.sent;
  if (!ok && load.errors.count === 0) {
    const behind = received.filter((count) => count !== load.sent).length;
    load.errors.add(`${behind} clients did not get all ${load.sent} messages`);
  }
  return ok;
}

/** The connections of the last fan-out run, for the caller to destroy. */
export function destroyAll(conns: Conn[]): void {
  for (const conn of conns) conn.socket.destroy();
}

// ── The broadcast floor: a chat room's fan-out on plain TCP ────────────────

/** Bytes of each message of the floor's broadcast: about what one delivery
 * of a chat message is on the wire (a 2-byte header and the JSON of
 * {"type":"message","seq","id","from","text","time"} with a sixty-character
 * line), so that the floor's writes carry what the chat servers' carry. */
export const FLOOR_MESSAGE_BYTES = 150;
/** What bench/tcp-floor.ts --broadcast sends each socket it lets in. */
const FLOOR_WELCOME = 0x2a;

export interface FloorBroadcastOptions extends PacedOptions {
  target: Target;
  clients: number;
  /** Bytes of each message (FLOOR_MESSAGE_BYTES). */
  size: number;
  connectConcurrency?: number;
  drainTimeoutMs?: number;
}

export type FloorBroadcastResult = FanoutPhase & DeliveryOutcome;

/** Every message of a floor run, end to end: message k is its number in ten
 * digits, then dots up to `size` bytes, then a newline (each one different,
 * so that a lost, doubled or reordered message shows in the bytes). */
class FloorLoad extends DeliveryLoad {
  readonly size: number;
  readonly stream: Buffer;
  welcomed = 0;

  constructor(clients: number, capacity: number, size: number) {
    super(clients, capacity);
    if (size < 12) throw new Error("a floor message holds at least its ten-digit number and a newline");
    this.size = size;
    this.stream = Buffer.alloc(capacity * size, ".");
    for (let id = 0; id < capacity; id++) {
      this.stream.write(String(id).padStart(10, "0"), id * size, "latin1");
      this.stream[(id + 1) * size - 1] = 0x0a;
    }
  }

  protected bytes(from: number, to: number): Buffer {
    return this.stream.subarray(from * this.size, to * this.size);
  }
}

/** One member of the floor's room: the welcome byte, then the stream, checked byte for byte. */
class FloorClient {
  private welcomed = false;
  /** Stream bytes received so far. */
  private offset = 0;
  private readonly load: FloorLoad;
  private readonly index: number;

  constructor(load: FloorLoad, index: number) {
    this.load = load;
    this.index = index;
  }

  readonly onData = (chunk: Buffer): void => {
    const load = this.load;
    let start = 0;
    if (!this.welcomed) {
      if (chunk[0] !== FLOOR_WELCOME) return load.errors.add(`client ${this.index}: no welcome byte first`);
      this.welcomed = true;
      load.welcomed++;
      start = 1;
    }
    const length = chunk.length - start;
    if (length === 0) return;
    const end = this.offset + length;
    if (end > load.sent * load.size)
      return load.errors.add(`client ${this.index}: ${end - load.sent * load.size} bytes more than were said`);
    if (load.stream.compare(chunk, start, chunk.length, this.offset, end) !== 0)
      return load.errors.add(`client ${this.index}: bytes ${this.offset}–${end} differ from what was said`);
    for (let id = Math.floor(this.offset / load.size); id < Math.floor(end / load.size); id++) load.delivered(id);
    this.offset = end;
    load.chunkDone();
  };

  /** Messages received whole. */
  get messages(): number {
    return this.offset / this.load.size;
  }
}

/** N plain TCP clients in bench/tcp-floor.ts's broadcast room; the first says
 * `ratePerSecond` messages a second, as runFanout's paced phase does. */
export async function runFloorBroadcast(options: FloorBroadcastOptions): Promise<FloorBroadcastResult> {
  const load = new FloorLoad(options.clients, pacedCapacity(options), options.size);
  const members: FloorClient[] = [];
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  let running = false;
  let conns: Conn[] = [];
  try {
    const opened = await openMany(
      options.target,
      options.clients,
      options.connectConcurrency ?? 100,
      { path: "/", deflate: false, raw: true },
      (index) => {
        const client = new FloorClient(load, index);
        members.push(client);
        return client.onData;
      },
    );
    conns = opened.conns;
    for (const conn of conns) {
      conn.socket.on("close", () => {
        if (running) load.errors.add("a client's connection closed during the run");
      });
    }
    // The barrier: a client's connect comes before the server's accept; its welcome after.
    if (!(await waitUntil(() => load.welcomed === options.clients || load.errors.count > 0, 60_000)))
      load.errors.add(`${options.clients - load.welcomed} clients were never let in`);
    running = true;
    load.sender = conns[0]!;
    const phase = await pacedPhase(load, options, drainTimeoutMs);
    running = false;
    const outcome = deliveryOutcome(
      load,
      opened.seconds,
      members.map((member) => member.messages),
      conns,
    );
    return { ...phase, ...outcome };
  } catch (error) {
    destroyAll(conns);
    throw error;
  }
}

// ── Idle connections: handshakes per second and memory per connection ─────

class IdleSink implements FrameSink {
  frames = 0;
  whole(): void {
    this.frames++;
  }
  begin(): void {
    this.frames++;
  }
  piece(): void {}
  end(): void {}
  afterChunk(): void {}
  fail(): void {}
}

export interface IdleResult {
  conns: Conn[];
  seconds: number;
  handshakesPerSecond: number;
  clientCpuSeconds: number;
}

export interface IdleOptions {
  /** A plain TCP peer (bench/tcp-floor.ts --idle): connections, no handshake. */
  raw?: boolean;
  /** Connections from each loopback source address, 127.0.0.2 onwards (each
   * has its own ephemeral ports); 0 or absent leaves the source to the system. */
  perSourceAddress?: number;
}

/** Opens `count` idle connections to /echo, `concurrency` handshakes at a time. The caller closes them. */
export async function openIdle(
  target: Target,
  count: number,
  concurrency: number,
  options: IdleOptions = {},
): Promise<IdleResult> {
  const perSource = options.perSourceAddress ?? 0;
  if (perSource > 0 && 2 + Math.floor((count - 1) / perSource) > 254)
    throw new Error(`${count} connections need more than 253 source addresses`);
  const cpuBefore = process.cpuUsage();
  const { conns, seconds } = await openMany(
    target,
    count,
    concurrency,
    (index) => ({
      path: "/echo",
      deflate: false,
      raw: options.raw ?? false,
      ...(perSource > 0 ? { localAddress: `127.0.0.${2 + Math.floor(index / perSource)}` } : {}),
    }),
    () => (options.raw ? () => {} : new IdleSink()),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { conns, seconds, handshakesPerSecond: count / seconds, clientCpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

// ── A reconnect storm: every page comes back at once, with its jitter ───────

export interface StormOptions {
  /** Each client's first attempt waits reconnectDelay(0) of the page (client.ts), from this seed. */
  seed: number;
  /** Loopback source addresses 127.0.0.2, .3, ..., this many clients each (0: the default address). */
  perSourceAddress: number;
  /** How long one attempt's handshake may take before it counts as failed. */
  attemptTimeoutMs: number;
  /** The whole storm must be over by then; an Error otherwise. */
  timeoutMs: number;
}

export interface StormResult {
  conns: Conn[];
  /** From the storm's start (the server has just come back) until the last client is connected again. */
  backSeconds: number;
  /** Attempts that failed because the server answered with a status (503: a documented limit). */
  refused: number;
  /** Attempts that failed otherwise: reset, timed out, dropped by a full accept queue. */
  failedAttempts: number;
  clientCpuSeconds: number;
}

/** `count` clients reconnect at once, as the page does after its server
 * restarted: each waits its jittered delay (client.ts's reconnectDelay,
 * the same seeded schedule for every server), tries, and on failure waits
 * the next, longer delay, until it is back. */
export async function runStorm(
  target: Target,
  count: number,
  options: StormOptions,
  delayFor: (attempt: number, random: () => number) => number,
): Promise<StormResult> {
  const prng = new Prng(options.seed);
  const random = () => prng.float();
  const conns: Conn[] = new Array<Conn>(count);
  let refused = 0;
  let failedAttempts = 0;
  let stopped = false;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const comeBack = async (index: number): Promise<void> => {
    const localAddress =
      options.perSourceAddress > 0 ? `127.0.0.${2 + Math.floor(index / options.perSourceAddress)}` : undefined;
    for (let attempt = 0; !stopped; attempt++) {
      await sleep(delayFor(attempt, random));
      try {
        conns[index] = await openConnection(
          target,
          {
            path: "/echo",
            deflate: false,
            timeoutMs: options.attemptTimeoutMs,
            ...(localAddress === undefined ? {} : { localAddress }),
          },
          new IdleSink(),
        );
        return;
      } catch (error) {
        if (error instanceof Error && error.message.startsWith("handshake refused")) refused++;
        else failedAttempts++;
      }
    }
  };
  const deadline = setTimeout(() => (stopped = true), options.timeoutMs);
  try {
    await Promise.all(Array.from({ length: count }, (_, index) => comeBack(index)));
  } finally {
    clearTimeout(deadline);
  }
  const backSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const back = conns.filter((conn) => conn !== undefined);
  if (back.length < count) {
    destroyAll(back);
    throw new Error(`${count - back.length} of ${count} clients were not back within ${options.timeoutMs} ms`);
  }
  return { conns, backSeconds, refused, failedAttempts, clientCpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

// ── Command line ────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      connections: { type: "string" },
      clients: { type: "string", default: "100" },
      size: { type: "string", default: "1024" },
      window: { type: "string" },
      binary: { type: "boolean", default: false },
      deflate: { type: "boolean", default: false },
      raw: { type: "boolean", default: false },
      seconds: { type: "string", default: "3" },
    },
  });
  const command = positionals[0] ?? "echo";
  if (values.port === undefined) throw new Error("--port is required");
  const target: Target = { host: values.host, port: Number(values.port) };
  const durationMs = Math.min(600, Number(values.seconds)) * 1000;
  if (command === "echo") {
    const connections = Number(values.connections ?? "64");
    const size = Number(values.size);
    const result = await runEcho({
      target,
      raw: values.raw,
      connections,
      size,
      kind: values.binary ? "binary" : "text",
      deflate: values.deflate,
      window: Number(values.window ?? echoWindow(connections, size)),
      warmupMs: 500,
      durationMs,
    });
    console.log(JSON.stringify(result, null, 2));
  } else if (command === "fanout") {
    const result = await runFanout({
      target,
      clients: Number(values.clients),
      window: Number(values.window ?? "16"),
      warmupMs: 500,
      durationMs,
      maxMessages: 200_000,
    });
    destroyAll(result.conns);
    console.log(JSON.stringify({ ...result, conns: result.conns.length }, null, 2));
  } else if (command === "idle") {
    const count = Number(values.connections ?? "1000");
    const result = await openIdle(target, count, 100);
    console.log(
      JSON.stringify({ count, seconds: result.seconds, handshakesPerSecond: result.handshakesPerSecond }, null, 2),
    );
    destroyAll(result.conns);
  } else throw new Error(`unknown command ${command}: echo, fanout or idle`);
}

/** Messages in flight per connection: enough to keep a server busy, bounded
 * in bytes (one connection: about 1 MiB; each of many: about 128 KiB). */
export function echoWindow(connections: number, size: number): number {
  const clamp = (value: number, low: number, high: number) => Math.max(low, Math.min(high, value));
  return connections === 1
    ? clamp(Math.floor((1024 * 1024) / size), 2, 128)
    : clamp(Math.floor((128 * 1024) / size), 1, 16);
}

if (isProgram(import.meta)) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
}
