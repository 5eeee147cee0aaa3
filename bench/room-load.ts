// bench/room-load.ts — the chat room at scale, for the targets of issue #16:
// a crowd of chat clients arriving at once (how long until the last is
// welcomed, and how many presence frames and bytes each one is sent), and
// one client saying many messages (to fill a history, or a history file).
//
// It drives the server the way load.ts does (the same hand-made handshake
// and frame reader, nothing of server.ts imported), and it decodes no JSON:
// a frame's type is read from its first bytes, `{"type":"…"`, which is how
// the room writes every frame; a message's seq from the bytes after
// `{"type":"message","seq":`. Every client's counts are kept in typed arrays,
// so that 10,000 clients cost this process little besides their sockets.
//
//   runCrowd   N clients on one path, at most C handshakes in flight, counted
//              from the first connect until the server has sent nothing for
//              `quietMs` (or `timeoutMs` has passed).
//   sayMany    one client says N messages, W at a time, each acknowledged by
//              its own copy coming back.

import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { ErrorLog, buildFrame, openConnection, type Conn, type FrameSink, type Target } from "./load.ts";

const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const TYPE_PREFIX = Buffer.from('{"type":"');
const MESSAGE_PREFIX = Buffer.from('{"type":"message","seq":');
/** Enough of a frame's first bytes to hold its type, and a message's seq. */
const PREFIX_BYTES = 48;
/** The frames that say who is in the room: one by one in a small room, summed up in a large one. */
export const PRESENCE_TYPES: ReadonlySet<string> = new Set(["joined", "left", "away", "back", "presence", "members"]);

/** A frame's size on the wire: the payload and a server header (unmasked). */
function wireBytes(length: number): number {
  return length + (length < 126 ? 2 : length < 65536 ? 4 : 10);
}

/** The `type` of a room frame from its first bytes, or "" if it does not start `{"type":"`. */
function typeOf(data: Buffer, start: number, end: number): string {
  if (end - start <= TYPE_PREFIX.length || data.compare(TYPE_PREFIX, 0, TYPE_PREFIX.length, start, start + 9) !== 0)
    return "";
  const from = start + TYPE_PREFIX.length;
  const quote = data.indexOf(0x22, from);
  return quote < 0 || quote >= end ? "" : data.toString("latin1", from, quote);
}

/** The seq of a `{"type":"message","seq":N,...}` frame, or -1. */
function seqOf(data: Buffer, start: number, end: number): number {
  if (data.compare(MESSAGE_PREFIX, 0, MESSAGE_PREFIX.length, start, start + MESSAGE_PREFIX.length) !== 0) return -1;
  let value = 0;
  let digits = 0;
  for (let position = start + MESSAGE_PREFIX.length; position < end; position++) {
    const byte = data[position]!;
    if (byte < 0x30 || byte > 0x39) break;
    value = value * 10 + (byte - 0x30);
    digits++;
  }
  return digits > 0 ? value : -1;
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, milliseconds));
}

/** Reassembles the first bytes of a frame that comes in pieces (a welcome
 * listing a hundred members is a few kilobytes); the rest is only counted. */
abstract class PrefixSink implements FrameSink {
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private prefixHave = 0;
  private opcode = 0;
  private length = 0;

  abstract frame(opcode: number, data: Buffer, start: number, end: number, length: number): void;
  abstract afterChunk(): void;
  abstract fail(reason: string): void;

  whole(opcode: number, _rsv1: boolean, data: Buffer, start: number, end: number): void {
    this.frame(opcode, data, start, end, end - start);
  }

  begin(opcode: number, _rsv1: boolean, length: number): void {
    this.opcode = opcode;
    this.length = length;
    this.prefixHave = 0;
  }

  piece(data: Buffer, start: number, end: number): void {
    if (this.prefixHave >= PREFIX_BYTES) return;
    const take = Math.min(PREFIX_BYTES - this.prefixHave, end - start);
    data.copy(this.prefix, this.prefixHave, start, start + take); // a copy: `data` is the shared read buffer
    this.prefixHave += take;
  }

  end(): void {
    this.frame(this.opcode, this.prefix, 0, this.prefixHave, this.length);
  }
}

/** What is said about a frame that is not a text frame of the room. */
function describeOther(opcode: number, data: Buffer, start: number, end: number): string {
  if (opcode !== OPCODE_CLOSE) return `an unexpected frame with opcode ${opcode}`;
  const code = end - start >= 2 ? data.readUInt16BE(start) : 1005;
  return `the server closed the connection: ${code} ${data.toString("utf8", start + 2, end)}`;
}

// ── A crowd ─────────────────────────────────────────────────────────────────

export interface CrowdOptions {
  target: Target;
  /** All connect at once. What the server has not accepted yet waits in the
   * kernel's accept queue (server.ts asks for the longest the kernel allows);
   * past that queue a SYN is dropped, and the kernel retries it 1, 3, 7 s later. */
  clients: number;
  /** The request path and query of every client (e.g. "/" for a first visit). */
  path: string;
  /** Connections from each loopback source address, 127.0.0.2 onwards (each
   * has its own ephemeral ports); 0 leaves the source to the system. */
  perSourceAddress: number;
  /** The end of the count: the server has sent nothing for this long (longer than its presence interval). */
  quietMs: number;
  /** A bound on the whole run, connects included. */
  timeoutMs: number;
  /** Called just before the first connect, and at the quiet point (the server's CPU is read there). */
  onStart?: () => void;
  onEnd?: () => void;
}

export interface CrowdResult {
  clients: number;
  opened: number;
  welcomed: number;
  /** From the first connect until the last client had its whole welcome. */
  lastWelcomeSeconds: number;
  medianWelcomeSeconds: number;
  /** From the first connect to the last frame any client received. */
  lastFrameSeconds: number;
  /** Whether the server did fall quiet for `quietMs` within `timeoutMs`. */
  quiet: boolean;
  /** Per client, from its connect to the quiet point (means over the clients). */
  framesPerClient: number;
  bytesPerClient: number;
  presencePerClient: number;
  presenceMax: number;
  presenceTotal: number;
  framesTotal: number;
  bytesTotal: number;
  messagesPerClient: number;
  messagesMin: number;
  messagesMax: number;
  /** The lowest first seq and the highest last seq any client was sent (0 if none). */
  firstSeq: number;
  lastSeq: number;
  /** Clients whose replay did not end at `lastSeq`: each must have been sent the newest message. */
  replaysNotEndingAtLatest: number;
  clientCpuSeconds: number;
  errors: number;
  firstErrors: string[];
  /** The open connections: the caller destroys them after stopping the server
   * (so that the server does not spend the next measurement on their leaving). */
  conns: Conn[];
}

class CrowdLoad {
  readonly welcomedAt: Float64Array;
  readonly frames: Uint32Array;
  readonly bytes: Float64Array;
  readonly presence: Uint32Array;
  readonly messages: Uint32Array;
  readonly firstSeq: Float64Array;
  readonly lastSeq: Float64Array;
  readonly errors = new ErrorLog();
  readonly started = performance.now();
  welcomed = 0;
  lastFrameAt = this.started;

  constructor(clients: number) {
    this.welcomedAt = new Float64Array(clients).fill(Number.NaN);
    this.frames = new Uint32Array(clients);
    this.bytes = new Float64Array(clients);
    this.presence = new Uint32Array(clients);
    this.messages = new Uint32Array(clients);
    this.firstSeq = new Float64Array(clients);
    this.lastSeq = new Float64Array(clients);
  }
}

class CrowdClient extends PrefixSink {
  private readonly load: CrowdLoad;
  private readonly index: number;

  constructor(load: CrowdLoad, index: number) {
    super();
    this.load = load;
    this.index = index;
  }

  frame(opcode: number, data: Buffer, start: number, end: number, length: number): void {
    const load = this.load;
    const index = this.index;
    const count = ++load.frames[index]!;
    load.bytes[index]! += wireBytes(length);
    if (opcode !== OPCODE_TEXT) return load.errors.add(`client ${index}: ${describeOther(opcode, data, start, end)}`);
    const type = typeOf(data, start, end);
    if (count === 1 && type !== "welcome")
      return load.errors.add(`client ${index}: the first frame was ${JSON.stringify(type)}, not the welcome`);
    if (type === "welcome") {
      if (count !== 1) return load.errors.add(`client ${index}: a second welcome`);
      load.welcomedAt[index] = performance.now() - load.started;
      load.welcomed++;
    } else if (type === "message") {
      const seq = seqOf(data, start, end);
      if (seq < 0) return load.errors.add(`client ${index}: a message without a seq`);
      if (load.messages[index] === 0) load.firstSeq[index] = seq;
      else if (seq !== load.lastSeq[index]! + 1)
        load.errors.add(`client ${index}: message ${seq} after ${load.lastSeq[index]} (not in order, or a gap)`);
      load.lastSeq[index] = seq;
      load.messages[index]!++;
    } else if (PRESENCE_TYPES.has(type)) {
      load.presence[index]!++;
    } else if (type === "error") {
      load.errors.add(`client ${index}: ${data.toString("utf8", start, end)}`);
    }
  }

  afterChunk(): void {
    this.load.lastFrameAt = performance.now();
  }

  fail(reason: string): void {
    this.load.errors.add(`client ${this.index}: ${reason}`);
  }
}

/** The loopback address client `index` connects from, or undefined for the system's choice. */
function sourceAddress(index: number, perSourceAddress: number): string | undefined {
  if (perSourceAddress <= 0) return undefined;
  return `127.0.0.${2 + Math.floor(index / perSourceAddress)}`;
}

export async function runCrowd(options: CrowdOptions): Promise<CrowdResult> {
  const clients = options.clients;
  if (options.perSourceAddress > 0 && 2 + Math.floor((clients - 1) / options.perSourceAddress) > 254)
    throw new Error(`${clients} clients need more than 253 source addresses`);
  const conns: Conn[] = [];
  let ending = false;
  try {
    const cpuBefore = process.cpuUsage();
    options.onStart?.();
    const load = new CrowdLoad(clients);
    const deadline = load.started + options.timeoutMs;
    const connectOne = async (index: number) => {
      try {
        const conn = await openConnection(
          options.target,
          {
            path: options.path,
            deflate: false,
            timeoutMs: options.timeoutMs,
            localAddress: sourceAddress(index, options.perSourceAddress),
          },
          new CrowdClient(load, index),
        );
        conns.push(conn);
        conn.socket.on("close", () => {
          if (!ending) load.errors.add(`client ${index}: the connection closed during the run`);
        });
      } catch (error) {
        load.errors.add(`client ${index}: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    await Promise.all(Array.from({ length: clients }, (_, index) => connectOne(index)));
    // Every welcome, then the quiet point: nothing from the server for quietMs.
    while (load.welcomed < conns.length && performance.now() < deadline) await sleep(10);
    while (performance.now() - load.lastFrameAt < options.quietMs && performance.now() < deadline) await sleep(20);
    const quiet = performance.now() - load.lastFrameAt >= options.quietMs;
    options.onEnd?.();
    const cpu = process.cpuUsage(cpuBefore);
    ending = true;

    const welcomeTimes = Array.from(load.welcomedAt)
      .filter((value) => !Number.isNaN(value))
      .sort((a, b) => a - b);
    const sum = (values: ArrayLike<number>) => {
      let total = 0;
      for (let index = 0; index < values.length; index++) total += values[index]!;
      return total;
    };
    const presenceTotal = sum(load.presence);
    const framesTotal = sum(load.frames);
    const bytesTotal = sum(load.bytes);
    let lastSeq = 0;
    let firstSeq = Number.POSITIVE_INFINITY;
    let messagesMin = Number.POSITIVE_INFINITY;
    let messagesMax = 0;
    let presenceMax = 0;
    for (let index = 0; index < clients; index++) {
      const messages = load.messages[index]!;
      messagesMin = Math.min(messagesMin, messages);
      messagesMax = Math.max(messagesMax, messages);
      presenceMax = Math.max(presenceMax, load.presence[index]!);
      if (messages > 0) {
        firstSeq = Math.min(firstSeq, load.firstSeq[index]!);
        lastSeq = Math.max(lastSeq, load.lastSeq[index]!);
      }
    }
    let replaysNotEndingAtLatest = 0;
    for (let index = 0; index < clients; index++)
      if (load.messages[index]! > 0 && load.lastSeq[index] !== lastSeq) replaysNotEndingAtLatest++;
    return {
      clients,
      opened: conns.length,
      welcomed: load.welcomed,
      lastWelcomeSeconds: welcomeTimes.length > 0 ? welcomeTimes[welcomeTimes.length - 1]! / 1000 : Number.NaN,
      medianWelcomeSeconds:
        welcomeTimes.length > 0 ? welcomeTimes[Math.floor(welcomeTimes.length / 2)]! / 1000 : Number.NaN,
      lastFrameSeconds: (load.lastFrameAt - load.started) / 1000,
      quiet,
      framesPerClient: framesTotal / clients,
      bytesPerClient: bytesTotal / clients,
      presencePerClient: presenceTotal / clients,
      presenceMax,
      presenceTotal,
      framesTotal,
      bytesTotal,
      messagesPerClient: sum(load.messages) / clients,
      messagesMin: clients > 0 ? messagesMin : 0,
      messagesMax,
      firstSeq: Number.isFinite(firstSeq) ? firstSeq : 0,
      lastSeq,
      replaysNotEndingAtLatest,
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
      errors: load.errors.count,
      firstErrors: load.errors.first,
      conns,
    };
  } catch (error) {
    ending = true;
    for (const conn of conns) conn.socket.destroy();
    throw error;
  }
}

// ── One client saying many messages ─────────────────────────────────────────

export interface SayOptions {
  target: Target;
  count: number;
  /** Messages said but not yet acknowledged, at most. */
  window: number;
  text: string;
  timeoutMs: number;
  /** Called now and then with the messages acknowledged so far. */
  onProgress?: (acknowledged: number) => void;
}

export interface SayResult {
  said: number;
  acknowledged: number;
  /** The seq of the last acknowledgement (the room's latest message). */
  lastSeq: number;
  seconds: number;
  errors: number;
  firstErrors: string[];
}

class Sayer extends PrefixSink {
  readonly errors = new ErrorLog();
  conn: Conn | undefined;
  said = 0;
  acknowledged = 0;
  lastSeq = 0;
  private readonly options: SayOptions;
  private readonly maskKey = randomBytes(4);
  private readonly run = randomBytes(4).toString("hex");

  constructor(options: SayOptions) {
    super();
    this.options = options;
  }

  frame(opcode: number, data: Buffer, start: number, end: number): void {
    if (opcode !== OPCODE_TEXT) return this.errors.add(describeOther(opcode, data, start, end));
    const type = typeOf(data, start, end);
    if (type === "message") {
      // Alone in the room, every message is one of ours coming back.
      const seq = seqOf(data, start, end);
      if (this.acknowledged > 0 && seq !== this.lastSeq + 1)
        this.errors.add(`message ${seq} after ${this.lastSeq} (not in order, or a gap)`);
      this.lastSeq = seq;
      this.acknowledged++;
    } else if (type === "error") this.errors.add(data.toString("utf8", start, end));
  }

  /** Says as many messages as the window allows, in one write. */
  topUp(): void {
    if (this.conn === undefined) return;
    const limit = Math.min(this.options.count, this.acknowledged + this.options.window);
    if (this.said >= limit) return;
    const frames: Buffer[] = [];
    for (; this.said < limit; this.said++) {
      const say = JSON.stringify({ type: "say", id: `${this.run}-${this.said}`, text: this.options.text });
      frames.push(buildFrame(OPCODE_TEXT, Buffer.from(say, "utf8"), false, this.maskKey));
    }
    this.conn.socket.write(Buffer.concat(frames));
  }

  afterChunk(): void {
    this.topUp();
  }

  fail(reason: string): void {
    this.errors.add(reason);
  }
}

/** One client says `count` messages and waits for each to come back; it is closed afterwards. */
export async function sayMany(options: SayOptions): Promise<SayResult> {
  const sayer = new Sayer(options);
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  sayer.conn = await openConnection(options.target, { path: "/", deflate: false }, sayer);
  try {
    sayer.topUp();
    let reported = 0;
    while (sayer.acknowledged < options.count && sayer.errors.count === 0 && performance.now() < deadline) {
      await sleep(5);
      if (options.onProgress && sayer.acknowledged !== reported) options.onProgress((reported = sayer.acknowledged));
    }
    if (sayer.acknowledged < options.count && sayer.errors.count === 0)
      sayer.errors.add(`${options.count - sayer.acknowledged} of ${options.count} messages were never acknowledged`);
    return {
      said: sayer.said,
      acknowledged: sayer.acknowledged,
      lastSeq: sayer.lastSeq,
      seconds: (performance.now() - started) / 1000,
      errors: sayer.errors.count,
      firstErrors: sayer.errors.first,
    };
  } finally {
    sayer.conn.socket.destroy();
  }
}
