// The browser side of the chat room.
//
// The file has two halves. The first half is plain logic with no access to the
// page: it talks to the server through a socket, timers and storage that are
// handed in, so the tests can replace all three with fakes and drive time by
// hand. The second half (from "The page" on) draws that state into
// client.html and wires up the browser's events; it only runs in a browser.
//
// Reading order, top to bottom:
//   1. the wire protocol: the frames the server sends, checked on arrival
//   2. storage: sessionStorage, or anything with the same three methods
//   3. Backoff: how long to wait before the next reconnection attempt
//   4. Outbox: messages typed but not yet confirmed by the server
//   5. Transcript: what is on screen, in seq order, and where to resume from
//   6. Heartbeat: noticing a connection that died without telling anyone
//   7. ChatConnection: the one place that opens sockets, tying 3 to 6 together
//   8. the page
//
// Durations are in milliseconds; names that hold one end in "Ms".

// ---------------------------------------------------------------------------
// 1. The wire protocol
// ---------------------------------------------------------------------------

/** A chat message as the server numbered it: `seq` gives its place in the room's history. */
export interface ChatMessage {
  seq: number;
  /** Chosen by the sender, so the sender can recognise its own message when it comes back. */
  id: string;
  from: string;
  text: string;
  /** When the server received it, in milliseconds since 1970. */
  time: number;
}

export interface WelcomeFrame {
  type: "welcome";
  name: string;
  users: string[];
  seq: number;
  epoch: string;
  resumed: boolean;
}

/**
 * The frames this client understands, after checking. A `message` frame keeps
 * its message in one object because that object is what gets stored and shown.
 */
export type ServerFrame =
  | WelcomeFrame
  | { type: "message"; message: ChatMessage }
  | { type: "pong" }
  | { type: "joined"; name: string }
  | { type: "left"; name: string }
  | { type: "error"; code: string; message: string; id: string | null };

/** The longest text the server accepts, in characters (see characterCount). */
export const MAX_TEXT_LENGTH = 2000;

/**
 * Counts characters as a person (and the server) does. `String.length` counts
 * UTF-16 units, in which an emoji such as 😀 is two.
 */
export function characterCount(text: string): number {
  return Array.from(text).length;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

/** Reads the fields of a chat message from an untrusted object, or returns null. */
function readChatMessage(value: Record<string, unknown>): ChatMessage | null {
  const { seq, id, from, text, time } = value;
  if (!isSeq(seq) || typeof from !== "string" || typeof text !== "string") return null;
  if (typeof time !== "number" || !Number.isFinite(time)) return null;
  // A message without an id cannot be anyone's acknowledgement, but it is still worth showing.
  return { seq, id: typeof id === "string" ? id : "", from, text, time };
}

/**
 * Turns the text of one frame into a checked ServerFrame. Returns null for
 * anything this client does not use: broken JSON, missing fields, or types it
 * does not know (such as the `trace` frames meant for a frame inspector).
 * Ignoring those, rather than failing, lets the server grow new frame types.
 */
export function parseServerFrame(data: unknown): ServerFrame | null {
  if (typeof data !== "string") return null;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!isRecord(value)) return null;

  switch (value.type) {
    case "welcome": {
      const { name, users, seq, epoch, resumed } = value;
      if (typeof name !== "string" || !isStringArray(users)) return null;
      // The contract says the epoch is a string; a number is accepted too, because
      // refusing the welcome would leave the client unable to connect at all.
      if (typeof epoch !== "string" && typeof epoch !== "number") return null;
      return {
        type: "welcome",
        name,
        users,
        seq: isSeq(seq) ? seq : 0,
        epoch: String(epoch),
        resumed: resumed === true,
      };
    }
    case "message": {
      const message = readChatMessage(value);
      return message === null ? null : { type: "message", message };
    }
    case "pong":
      return { type: "pong" };
    case "joined":
    case "left":
      return typeof value.name === "string" ? { type: value.type, name: value.name } : null;
    case "error": {
      const { code, message, id } = value;
      return {
        type: "error",
        code: typeof code === "string" ? code : "unknown",
        message: typeof message === "string" ? message : "",
        id: typeof id === "string" ? id : null,
      };
    }
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------
// 2. Storage
// ---------------------------------------------------------------------------

/** The three methods of sessionStorage this client uses; tests pass a Map-backed one. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The sessionStorage keys this client writes, each holding JSON (the name holds plain text). */
export const STORAGE_KEYS = {
  outbox: "chatRoom.outbox",
  transcript: "chatRoom.transcript",
  name: "chatRoom.name",
} as const;

export function createMemoryStorage(): KeyValueStorage {
  const values = new Map<string, string>();
  return {
    getItem: (key) => values.get(key) ?? null,
    setItem: (key, value) => {
      values.set(key, value);
    },
    removeItem: (key) => {
      values.delete(key);
    },
  };
}

function readStoredJson(storage: KeyValueStorage, key: string): unknown {
  try {
    const text = storage.getItem(key);
    return text === null ? null : JSON.parse(text);
  } catch {
    // Unreadable or hand-edited data: starting empty is better than not starting.
    return null;
  }
}

function writeStoredJson(storage: KeyValueStorage, key: string, value: unknown): void {
  try {
    storage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage is full or forbidden. The chat keeps working; only a reload will forget.
  }
}

// ---------------------------------------------------------------------------
// 3. Backoff
// ---------------------------------------------------------------------------

/**
 * How long to wait before reconnection attempt number `attempt` (counting from 0).
 *
 * The ceiling doubles with each attempt up to `capMs`, and the actual delay is
 * a random point between 0 and that ceiling ("full jitter"). The randomness
 * matters when a server restarts: without it, every client that lost its
 * connection at the same moment would come back at the same moment too.
 */
export function reconnectDelay(attempt: number, random: () => number, baseMs = 1000, capMs = 30_000): number {
  // Past 2^30 the ceiling is the cap anyway; stopping there keeps the arithmetic finite.
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Counts failed attempts and turns the count into the next delay. */
export class Backoff {
  private failedAttempts = 0;
  private readonly random: () => number;
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(random: () => number = Math.random, baseMs = 1000, capMs = 30_000) {
    this.random = random;
    this.baseMs = baseMs;
    this.capMs = capMs;
  }

  /** Attempts made since the last reset; the first retry after a drop is attempt 1. */
  get attempts(): number {
    return this.failedAttempts;
  }

  /** The delay before the next attempt; calling it counts that attempt. */
  next(): number {
    const delay = reconnectDelay(this.failedAttempts, this.random, this.baseMs, this.capMs);
    this.failedAttempts += 1;
    return delay;
  }

  reset(): void {
    this.failedAttempts = 0;
  }
}

// ---------------------------------------------------------------------------
// 4. Outbox
// ---------------------------------------------------------------------------

/** A message the user sent that the server has not yet confirmed. */
export interface OutgoingMessage {
  id: string;
  text: string;
  /** When the user pressed Enter, in milliseconds since 1970. */
  createdAt: number;
}

/** What createMessageId needs from `crypto`; older or insecure pages lack randomUUID. */
export interface RandomSource {
  randomUUID?: () => string;
  getRandomValues?: (array: Uint8Array) => Uint8Array;
}

/**
 * A new message id, unique across reloads and tabs so the server can tell a
 * retry of the same message from a new one. `crypto.randomUUID` only exists
 * on https pages and localhost, so a phone opening http://192.168.x.x falls
 * back to random bytes written as 32 hexadecimal digits.
 */
export function createMessageId(source: RandomSource | undefined = globalThis.crypto, random: () => number = Math.random): string {
  if (typeof source?.randomUUID === "function") return source.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof source?.getRandomValues === "function") {
    source.getRandomValues(bytes);
  } else {
    for (let index = 0; index < bytes.length; index++) bytes[index] = Math.floor(random() * 256);
  }
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function isOutgoingMessage(value: unknown): value is OutgoingMessage {
  return (
    isRecord(value) &&
    typeof value.id === "string" &&
    typeof value.text === "string" &&
    typeof value.createdAt === "number"
  );
}

/** How many confirmed ids to remember: enough to recognise every own message still on screen. */
const REMEMBERED_SENT_IDS = 1000;

/**
 * Messages waiting for the server's confirmation, kept in storage so that a
 * reload does not lose what the user typed. A message leaves the outbox when
 * the server sends it back (same id): that copy is the acknowledgement. Until
 * then it is sent again, with the same id, after every reconnection; the
 * server recognises the id and does not post it twice.
 */
export class Outbox {
  private readonly storage: KeyValueStorage;
  private waiting: OutgoingMessage[] = [];
  /** Ids of own messages the server has confirmed, so they still count as "mine" after a rename. */
  private confirmedIds: string[] = [];

  constructor(storage: KeyValueStorage) {
    this.storage = storage;
    const stored = readStoredJson(storage, STORAGE_KEYS.outbox);
    if (isRecord(stored)) {
      if (Array.isArray(stored.pending)) this.waiting = stored.pending.filter(isOutgoingMessage);
      if (isStringArray(stored.sent)) this.confirmedIds = stored.sent;
    }
  }

  /** Oldest first, which is the order they must be sent in. */
  get pending(): readonly OutgoingMessage[] {
    return this.waiting;
  }

  add(text: string, id: string, createdAt: number): OutgoingMessage {
    const message = { id, text, createdAt };
    this.waiting.push(message);
    this.save();
    return message;
  }

  isPending(id: string): boolean {
    return this.waiting.some((message) => message.id === id);
  }

  /** Whether this id belongs to a message sent from this tab, confirmed or not. */
  isOwn(id: string): boolean {
    return id !== "" && (this.isPending(id) || this.confirmedIds.includes(id));
  }

  /** The server sent the message back: it is in the history now. Returns false for unknown ids. */
  acknowledge(id: string): boolean {
    if (!this.isPending(id)) return false;
    this.waiting = this.waiting.filter((message) => message.id !== id);
    this.confirmedIds.push(id);
    if (this.confirmedIds.length > REMEMBERED_SENT_IDS) this.confirmedIds.splice(0, this.confirmedIds.length - REMEMBERED_SENT_IDS);
    this.save();
    return true;
  }

  /** The server refused the message for good (too long, empty): sending it again would not help. */
  discard(id: string): boolean {
    if (!this.isPending(id)) return false;
    this.waiting = this.waiting.filter((message) => message.id !== id);
    this.save();
    return true;
  }

  private save(): void {
    writeStoredJson(this.storage, STORAGE_KEYS.outbox, { pending: this.waiting, sent: this.confirmedIds });
  }
}

// ---------------------------------------------------------------------------
// 5. Transcript
// ---------------------------------------------------------------------------

export type NoticeKind = "joined" | "left" | "gap";

/**
 * One line on screen. `key` never repeats, so the page can keep one element
 * per line; `epoch` records which numbering a message's seq belongs to.
 */
export type TranscriptEntry =
  | { kind: "message"; key: string; epoch: string; message: ChatMessage }
  | { kind: "notice"; key: string; notice: NoticeKind; name: string; time: number };

/** What the client puts in the URL to ask for only the messages it has not seen. */
export interface ResumePoint {
  since: number;
  epoch: string;
}

/** What a welcome meant for the transcript: see Transcript.welcome. */
export type WelcomeOutcome = "first" | "resumed" | "gap";

/** How many lines to keep. sessionStorage holds about 5 MB and every change rewrites the whole list. */
const TRANSCRIPT_LIMIT = 300;

function isTranscriptEntry(value: unknown): value is TranscriptEntry {
  if (!isRecord(value) || typeof value.key !== "string") return false;
  if (value.kind === "message") {
    return typeof value.epoch === "string" && isRecord(value.message) && readChatMessage(value.message) !== null;
  }
  return (
    value.kind === "notice" &&
    (value.notice === "joined" || value.notice === "left" || value.notice === "gap") &&
    typeof value.name === "string" &&
    typeof value.time === "number"
  );
}

/**
 * The lines on screen, and the bookkeeping that lets a reconnection pick up
 * exactly where the last one stopped.
 *
 * Seq numbers only mean something within one epoch: a server that restarts
 * with an empty history starts a new epoch and counts from 1 again. So the
 * transcript compares seqs only against messages of the current epoch. Older
 * lines stay on screen, above a notice that marks the gap.
 */
export class Transcript {
  private readonly storage: KeyValueStorage;
  private lines: TranscriptEntry[] = [];
  private currentEpoch: string | null = null;
  /** The highest seq shown in the current epoch; 0 before the first. */
  private highestSeq = 0;
  /** Seqs of the current epoch that are on screen, to ignore a message that arrives twice. */
  private shownSeqs = new Set<number>();
  /** Seqs up to here were dropped to respect TRANSCRIPT_LIMIT; they count as already seen. */
  private droppedThroughSeq = 0;
  private nextKeyNumber = 1;

  constructor(storage: KeyValueStorage) {
    this.storage = storage;
    const stored = readStoredJson(storage, STORAGE_KEYS.transcript);
    if (!isRecord(stored) || typeof stored.epoch !== "string" || !Array.isArray(stored.entries)) return;
    this.currentEpoch = stored.epoch;
    this.lines = stored.entries.filter(isTranscriptEntry);
    this.droppedThroughSeq = isSeq(stored.droppedThroughSeq) ? stored.droppedThroughSeq : 0;
    this.nextKeyNumber = isSeq(stored.nextKeyNumber) ? stored.nextKeyNumber : this.lines.length + 1;
    this.highestSeq = isSeq(stored.lastSeq) ? stored.lastSeq : 0;
    for (const line of this.lines) {
      if (line.kind === "message" && line.epoch === this.currentEpoch) {
        this.shownSeqs.add(line.message.seq);
        this.highestSeq = Math.max(this.highestSeq, line.message.seq);
      }
    }
  }

  get entries(): readonly TranscriptEntry[] {
    return this.lines;
  }

  get epoch(): string | null {
    return this.currentEpoch;
  }

  get lastSeq(): number {
    return this.highestSeq;
  }

  /** Null before the first welcome: then there is nothing to resume. */
  resumePoint(): ResumePoint | null {
    return this.currentEpoch === null ? null : { since: this.highestSeq, epoch: this.currentEpoch };
  }

  /**
   * Takes in the epoch of a new welcome. "first": this tab had never connected.
   * "resumed": the server continues right after our last seq. "gap": it could
   * not, so a notice marks where messages may be missing. If the epoch changed,
   * the old seqs are forgotten too; otherwise the new history's seq 1, 2, 3...
   * would be mistaken for messages already on screen.
   */
  welcome(epoch: string, resumed: boolean, time: number): WelcomeOutcome {
    if (this.currentEpoch === null) {
      this.currentEpoch = epoch;
      this.save();
      return "first";
    }
    if (resumed && epoch === this.currentEpoch) return "resumed";

    if (epoch !== this.currentEpoch) {
      this.currentEpoch = epoch;
      this.highestSeq = 0;
      this.droppedThroughSeq = 0;
      this.shownSeqs.clear();
    }
    // Two resets with nothing between them are still one gap.
    const lastLine = this.lines[this.lines.length - 1];
    if (lastLine?.kind !== "notice" || lastLine.notice !== "gap") {
      this.lines.push({ kind: "notice", key: this.newKey(), notice: "gap", name: "", time });
    }
    this.save();
    return "gap";
  }

  /** Puts the message in seq order. Returns false if it was already shown (or cannot be placed yet). */
  addMessage(message: ChatMessage): boolean {
    const epoch = this.currentEpoch;
    // Messages only follow a welcome; one before it has no epoch to be numbered in.
    if (epoch === null) return false;
    if (message.seq <= this.droppedThroughSeq || this.shownSeqs.has(message.seq)) return false;

    // Usually the message belongs at the end. If a later message is already
    // there, walk back past it (and past notices) to the first earlier one.
    let position = this.lines.length;
    for (let index = this.lines.length - 1; index >= 0; index--) {
      const line = this.lines[index]!;
      if (line.kind === "notice") continue;
      if (line.epoch !== epoch || line.message.seq < message.seq) break;
      position = index;
    }
    this.lines.splice(position, 0, { kind: "message", key: this.newKey(), epoch, message });
    this.shownSeqs.add(message.seq);
    this.highestSeq = Math.max(this.highestSeq, message.seq);
    this.dropOldestBeyondLimit();
    this.save();
    return true;
  }

  addNotice(notice: "joined" | "left", name: string, time: number): void {
    this.lines.push({ kind: "notice", key: this.newKey(), notice, name, time });
    this.dropOldestBeyondLimit();
    this.save();
  }

  private dropOldestBeyondLimit(): void {
    while (this.lines.length > TRANSCRIPT_LIMIT) {
      const dropped = this.lines.shift()!;
      if (dropped.kind === "message" && dropped.epoch === this.currentEpoch) {
        this.shownSeqs.delete(dropped.message.seq);
        this.droppedThroughSeq = Math.max(this.droppedThroughSeq, dropped.message.seq);
      }
    }
  }

  private newKey(): string {
    const key = `line-${this.nextKeyNumber}`;
    this.nextKeyNumber += 1;
    return key;
  }

  private save(): void {
    writeStoredJson(this.storage, STORAGE_KEYS.transcript, {
      epoch: this.currentEpoch,
      lastSeq: this.highestSeq,
      droppedThroughSeq: this.droppedThroughSeq,
      nextKeyNumber: this.nextKeyNumber,
      entries: this.lines,
    });
  }
}

// ---------------------------------------------------------------------------
// 6. Heartbeat
// ---------------------------------------------------------------------------

/** The clock, handed in so tests can move time forward by hand. */
export interface Timers {
  setTimeout(callback: () => void, delayMs: number): number;
  clearTimeout(timerId: number): void;
  now(): number;
}

export interface HeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
  timers: Timers;
  sendPing(time: number): void;
  /** Called once when a ping got no answer in time; the heartbeat has stopped by then. */
  onSilence(): void;
}

/**
 * Sends a ping every `intervalMs` and expects some frame back within
 * `timeoutMs`. This is the only way to notice a half-open connection: when a
 * phone changes networks or a router forgets the connection, the browser is
 * not told and the socket looks open forever, while nothing gets through.
 * Any frame counts as an answer, not only the pong, because any frame proves
 * the way back from the server works.
 */
export class Heartbeat {
  private readonly options: HeartbeatOptions;
  private pingTimer: number | null = null;
  private deadlineTimer: number | null = null;

  constructor(options: HeartbeatOptions) {
    this.options = options;
  }

  start(): void {
    this.stop();
    this.schedulePing();
  }

  stop(): void {
    if (this.pingTimer !== null) this.options.timers.clearTimeout(this.pingTimer);
    if (this.deadlineTimer !== null) this.options.timers.clearTimeout(this.deadlineTimer);
    this.pingTimer = null;
    this.deadlineTimer = null;
  }

  /** A frame arrived: the connection is alive. */
  noteActivity(): void {
    if (this.deadlineTimer !== null) this.options.timers.clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
  }

  /** Pings right away, for moments when the connection is likely to have died (network change, waking up). */
  probe(): void {
    if (this.pingTimer !== null) this.options.timers.clearTimeout(this.pingTimer);
    this.ping();
  }

  private schedulePing(): void {
    this.pingTimer = this.options.timers.setTimeout(() => this.ping(), this.options.intervalMs);
  }

  private ping(): void {
    const { timers } = this.options;
    this.pingTimer = null;
    this.options.sendPing(timers.now());
    // If an earlier ping is still unanswered, its deadline stands: a later ping must not extend it.
    if (this.deadlineTimer === null) {
      this.deadlineTimer = timers.setTimeout(() => {
        this.stop();
        this.options.onSilence();
      }, this.options.timeoutMs);
    }
    this.schedulePing();
  }
}

// ---------------------------------------------------------------------------
// 7. ChatConnection
// ---------------------------------------------------------------------------

/**
 * The part of a WebSocket this client uses. A real WebSocket fits; tests use
 * a small fake. There is no "open" listener: the connection counts as up
 * only once the server's welcome arrives.
 */
export interface SocketLike {
  send(data: string): void;
  close(): void;
  addEventListener(type: "close" | "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
}

/**
 * connecting: opening a socket, not after a failure.
 * connected: the server's welcome arrived.
 * reconnecting: the connection was lost; waiting for the next attempt or making it.
 * offline: not trying, because the browser reports no network or stop() was called.
 */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

/** What send() did with the text. */
export type SendOutcome = "sent" | "queued" | "empty" | "too_long";

export interface ServerError {
  code: string;
  message: string;
}

/** Error codes after which the outbox is sent again a little later: the refusal was temporary. */
const RESEND_LATER_CODES = new Set(["rate_limited", "storage_failed"]);

/** The durations a ChatConnection works with; each can be changed through `timing`. */
export interface ConnectionTiming {
  /** How often to ping a connection that seems fine. */
  heartbeatIntervalMs: number;
  /** How long a ping may go unanswered before the connection counts as dead. */
  heartbeatTimeoutMs: number;
  /** A socket not welcomed by then is given up on: the network may be swallowing it. */
  connectTimeoutMs: number;
  /** A connection that lasts this long resets the backoff; a shorter one still counts as a failure. */
  stableAfterMs: number;
  /** After a rate_limited (or storage_failed) error, unconfirmed messages are sent again this much later. */
  rateLimitRetryMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
}

export const DEFAULT_TIMING: Readonly<ConnectionTiming> = {
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 5_000,
  connectTimeoutMs: 10_000,
  stableAfterMs: 10_000,
  rateLimitRetryMs: 2_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 30_000,
};

export interface ChatConnectionOptions {
  /** ws:// or wss:// address; name, since and epoch are added to its query. */
  serverUrl: string;
  createSocket(url: string): SocketLike;
  storage: KeyValueStorage;
  timers: Timers;
  /** Only the durations given replace the defaults. */
  timing?: Partial<ConnectionTiming>;
  random?: () => number;
  createId?: () => string;
  /** navigator.onLine in a browser: while it says false, no attempts are made. */
  isOnline?: () => boolean;
  /** Something visible changed. Called often; the page batches its redraws. */
  onChange?: () => void;
  onServerError?: (error: ServerError) => void;
}

/** The address to open: the server address plus who we are and what we have already seen. */
export function buildSocketUrl(serverUrl: string, name: string | null, resumePoint: ResumePoint | null): string {
  // encodeURIComponent rather than URLSearchParams: it writes a space as %20,
  // which every decoder reads back as a space (URLSearchParams writes "+").
  const parameters: string[] = [];
  if (name !== null) parameters.push(`name=${encodeURIComponent(name)}`);
  if (resumePoint !== null) {
    parameters.push(`since=${resumePoint.since}`, `epoch=${encodeURIComponent(resumePoint.epoch)}`);
  }
  const url = new URL(serverUrl);
  const existing = url.search.slice(1);
  url.search = [existing, ...parameters].filter((part) => part !== "").join("&");
  return url.toString();
}

/**
 * One chat connection over a sequence of sockets.
 *
 * Every socket is opened in openSocket() and nowhere else, and openSocket()
 * refuses while another socket is current: there are never two. Each
 * listener checks that its socket is still the current one before acting, so
 * a socket that was replaced can close, fail or even deliver a late message
 * without effect. A design that swaps sockets and forgets to re-attach its
 * listeners stops noticing drops after the first; here, the listeners are
 * attached in the same function that creates the socket, every time.
 */
export class ChatConnection {
  private readonly options: ChatConnectionOptions;
  private readonly timers: Timers;
  private readonly outbox: Outbox;
  private readonly transcript: Transcript;
  private readonly backoff: Backoff;
  private readonly heartbeat: Heartbeat;
  private readonly timing: ConnectionTiming;

  private socket: SocketLike | null = null;
  private currentState: ConnectionState = "offline";
  private stopped = true;
  /** The name the server gave us in the last welcome. */
  private confirmedName: string | null;
  /**
   * The name to ask for in every URL, kept in storage: the first name the
   * server gave us, or the one the user typed. It differs from confirmedName
   * only while the server lends us a stand-in because the name is taken,
   * usually by our own previous connection that the server has not yet
   * noticed is dead. When that one leaves, we ask for the name again.
   */
  private nameToAskFor: string | null;
  private onlineUsers: string[] = [];
  /**
   * Names held by our own connections that we gave up on but the server may
   * not have let go of yet. When it does, it tells everyone, us included,
   * that the name left; that is not news to show.
   */
  private readonly namesOfOldConnections = new Set<string>();
  private retryAt: number | null = null;

  private retryTimer: number | null = null;
  private connectTimer: number | null = null;
  private stableTimer: number | null = null;
  private resendTimer: number | null = null;

  constructor(options: ChatConnectionOptions) {
    this.options = options;
    this.timers = options.timers;
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.outbox = new Outbox(options.storage);
    this.transcript = new Transcript(options.storage);
    this.backoff = new Backoff(options.random ?? Math.random, this.timing.backoffBaseMs, this.timing.backoffCapMs);
    this.heartbeat = new Heartbeat({
      intervalMs: this.timing.heartbeatIntervalMs,
      timeoutMs: this.timing.heartbeatTimeoutMs,
      timers: this.timers,
      sendPing: (time) => this.sendFrame({ type: "ping", t: time }),
      onSilence: () => this.handleLostConnection(),
    });
    const storedName = options.storage.getItem(STORAGE_KEYS.name);
    this.confirmedName = storedName;
    this.nameToAskFor = storedName;
  }

  // --- What the page reads ---

  get state(): ConnectionState {
    return this.currentState;
  }

  /** Failed attempts since the last stable connection: "attempt n" on screen. */
  get attempt(): number {
    return this.backoff.attempts;
  }

  /** When the next attempt is due (Timers.now() clock), while waiting for it; otherwise null. */
  get nextAttemptAt(): number | null {
    return this.retryAt;
  }

  /** The name the server gave us in the last welcome. */
  get name(): string | null {
    return this.confirmedName;
  }

  /** The name we ask for; differs from `name` while the server lends us a stand-in. */
  get wantedName(): string | null {
    return this.nameToAskFor;
  }

  /** Who is online, as the current connection was told; empty without one. */
  get users(): readonly string[] {
    return this.onlineUsers;
  }

  get entries(): readonly TranscriptEntry[] {
    return this.transcript.entries;
  }

  get pending(): readonly OutgoingMessage[] {
    return this.outbox.pending;
  }

  get lastSeq(): number {
    return this.transcript.lastSeq;
  }

  get epoch(): string | null {
    return this.transcript.epoch;
  }

  /** Own messages: sent under the current name, or sent from this tab under any name. */
  isMine(message: ChatMessage): boolean {
    return (this.confirmedName !== null && message.from === this.confirmedName) || this.outbox.isOwn(message.id);
  }

  // --- What the page does ---

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (this.isOnline()) {
      this.openSocket();
    } else {
      this.setState("offline");
    }
  }

  stop(): void {
    this.stopped = true;
    this.discardSocket();
    this.cancelRetry();
    this.setState("offline");
  }

  /**
   * Queues the text and sends it at once if connected. Queued messages are
   * stored, shown as pending, and sent after the next welcome.
   */
  send(rawText: string): SendOutcome {
    const text = rawText.trim();
    if (text === "") return "empty";
    if (characterCount(text) > MAX_TEXT_LENGTH) return "too_long";
    const message = this.outbox.add(text, (this.options.createId ?? createMessageId)(), this.timers.now());
    const connected = this.currentState === "connected";
    if (connected) this.sendSay(message);
    this.notify();
    return connected ? "sent" : "queued";
  }

  /** Reconnects under a new name; the server hands it out if nobody else holds it. */
  rename(rawName: string): void {
    const name = rawName.trim();
    if (name === "" || name === this.nameToAskFor) return;
    this.rememberWantedName(name);
    if (name !== this.confirmedName) this.reconnectNow();
  }

  /**
   * The browser says the network is back or the page is visible again. If we
   * are waiting to retry, retry now. If we believe we are connected, check:
   * a network change is exactly when connections die without a word.
   */
  wake(): void {
    if (this.stopped) return;
    if (this.socket === null) {
      this.openSocket();
    } else if (this.currentState === "connected") {
      this.heartbeat.probe();
    }
  }

  /**
   * The browser says the network is gone. Waiting to retry is pointless until
   * it comes back; a connection that looks open is probably dead, so check it.
   */
  noteOffline(): void {
    if (this.stopped) return;
    if (this.socket === null) {
      this.cancelRetry();
      this.setState("offline");
    } else if (this.currentState === "connected") {
      this.heartbeat.probe();
    }
  }

  // --- Sockets ---

  private openSocket(): void {
    this.cancelRetry();
    if (this.socket !== null || this.stopped) return;

    const url = buildSocketUrl(this.options.serverUrl, this.nameToAskFor, this.transcript.resumePoint());
    let socket: SocketLike;
    try {
      socket = this.options.createSocket(url);
    } catch {
      // new WebSocket() throws on an address it cannot use; treat it like a failed attempt.
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.connectTimer = this.timers.setTimeout(() => this.handleLostConnection(), this.timing.connectTimeoutMs);
    this.setState(this.backoff.attempts === 0 ? "connecting" : "reconnecting");

    socket.addEventListener("message", (event) => {
      if (socket === this.socket) this.handleFrame(event.data);
    });
    socket.addEventListener("close", () => {
      if (socket === this.socket) this.handleLostConnection();
    });
    socket.addEventListener("error", () => {
      if (socket === this.socket) this.handleLostConnection();
    });
  }

  /** A deliberate reconnection, not a failure: no waiting, no backoff. */
  private reconnectNow(): void {
    if (this.stopped) return;
    this.discardSocket();
    this.backoff.reset();
    this.openSocket();
  }

  /** The current socket closed, failed, fell silent or was never welcomed: replace it. */
  private handleLostConnection(): void {
    this.discardSocket();
    this.scheduleReconnect();
  }

  /** Forgets the current socket, so nothing it does later has any effect, and closes it. */
  private discardSocket(): void {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    if (this.currentState === "connected" && this.confirmedName !== null) this.namesOfOldConnections.add(this.confirmedName);
    // Without a connection we do not know who is online; the next welcome will say.
    this.onlineUsers = [];
    this.heartbeat.stop();
    this.cancelTimer(this.connectTimer);
    this.cancelTimer(this.stableTimer);
    this.cancelTimer(this.resendTimer);
    this.connectTimer = this.stableTimer = this.resendTimer = null;
    try {
      // We do not wait for the close to finish: on a half-open connection it never would.
      socket.close();
    } catch {
      // Closing a socket that is already closed is not worth reporting.
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped || !this.isOnline()) {
      this.cancelRetry();
      this.setState("offline");
      return;
    }
    const delay = this.backoff.next();
    this.retryAt = this.timers.now() + delay;
    this.retryTimer = this.timers.setTimeout(() => this.openSocket(), delay);
    this.setState("reconnecting");
  }

  private cancelRetry(): void {
    this.cancelTimer(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  }

  // --- Frames from the server ---

  private handleFrame(data: unknown): void {
    this.heartbeat.noteActivity();
    const frame = parseServerFrame(data);
    if (frame === null) return;
    switch (frame.type) {
      case "welcome":
        this.handleWelcome(frame);
        break;
      case "message":
        this.outbox.acknowledge(frame.message.id);
        this.transcript.addMessage(frame.message);
        break;
      case "pong":
        break;
      case "joined":
        if (frame.name === this.confirmedName) return;
        // Whoever held this name before has left, even if we were not there to hear it.
        this.namesOfOldConnections.delete(frame.name);
        if (!this.onlineUsers.includes(frame.name)) this.onlineUsers = [...this.onlineUsers, frame.name];
        this.transcript.addNotice("joined", frame.name, this.timers.now());
        break;
      case "left": {
        if (frame.name === this.confirmedName) return;
        const wasOurs = this.namesOfOldConnections.delete(frame.name);
        if (frame.name === this.nameToAskFor) {
          // The name we were lent a stand-in for is free again: take it back.
          this.reconnectNow();
          return;
        }
        this.onlineUsers = this.onlineUsers.filter((user) => user !== frame.name);
        if (!wasOurs) this.transcript.addNotice("left", frame.name, this.timers.now());
        break;
      }
      case "error":
        this.handleError(frame);
        break;
    }
    this.notify();
  }

  private handleWelcome(welcome: WelcomeFrame): void {
    this.cancelTimer(this.connectTimer);
    this.connectTimer = null;
    this.confirmedName = welcome.name;
    if (this.nameToAskFor === null) this.rememberWantedName(welcome.name);
    // An old connection missing from the list has already left, and names are
    // unique, so none holds the name we were just given.
    for (const name of this.namesOfOldConnections) {
      if (name === welcome.name || !welcome.users.includes(name)) this.namesOfOldConnections.delete(name);
    }
    this.onlineUsers = [...welcome.users];
    this.transcript.welcome(welcome.epoch, welcome.resumed, this.timers.now());
    this.setState("connected");
    this.heartbeat.start();
    // Resetting the backoff on the welcome itself would let a server that
    // accepts and then crashes pull every client into a tight loop.
    this.cancelTimer(this.stableTimer);
    this.stableTimer = this.timers.setTimeout(() => {
      this.stableTimer = null;
      this.backoff.reset();
    }, this.timing.stableAfterMs);
    this.sendPending();
  }

  private handleError(error: { code: string; message: string; id: string | null }): void {
    if (error.code === "bad_name") {
      // The server will never accept that name; asking again would only repeat this.
      this.rememberWantedName(this.confirmedName);
    } else if (RESEND_LATER_CODES.has(error.code)) {
      // The server did not take some of our messages; they are still in the outbox.
      if (this.resendTimer === null) {
        this.resendTimer = this.timers.setTimeout(() => {
          this.resendTimer = null;
          this.sendPending();
        }, this.timing.rateLimitRetryMs);
      }
    } else if (error.id !== null) {
      this.outbox.discard(error.id);
    }
    this.options.onServerError?.({ code: error.code, message: error.message });
  }

  // --- Frames to the server ---

  private sendPending(): void {
    if (this.currentState !== "connected") return;
    for (const message of this.outbox.pending) this.sendSay(message);
  }

  private sendSay(message: OutgoingMessage): void {
    this.sendFrame({ type: "say", id: message.id, text: message.text });
  }

  private sendFrame(frame: object): void {
    try {
      this.socket?.send(JSON.stringify(frame));
    } catch {
      // The socket is closing. Whatever was lost is still in the outbox.
    }
  }

  // --- Small helpers ---

  private rememberWantedName(name: string | null): void {
    this.nameToAskFor = name;
    try {
      if (name === null) this.options.storage.removeItem(STORAGE_KEYS.name);
      else this.options.storage.setItem(STORAGE_KEYS.name, name);
    } catch {
      // Only a reload would notice; see writeStoredJson.
    }
  }

  private isOnline(): boolean {
    return this.options.isOnline?.() ?? true;
  }

  private setState(state: ConnectionState): void {
    this.currentState = state;
    this.notify();
  }

  private notify(): void {
    this.options.onChange?.();
  }

  private cancelTimer(timerId: number | null): void {
    if (timerId !== null) this.timers.clearTimeout(timerId);
  }
}

// ---------------------------------------------------------------------------
// 8. The page
// ---------------------------------------------------------------------------
//
// Everything above works without a page. Everything below reads the state of
// a ChatConnection and shows it in client.html, and turns the user's actions
// and the browser's signals into calls on it.

/** Where the server is: ?server= if given, else the host that served the page. */
export function resolveServerUrl(page: { protocol: string; host: string; search: string }): string {
  const requested = new URLSearchParams(page.search).get("server");
  if (requested !== null && isWebSocketUrl(requested)) return requested;
  if (page.protocol === "https:") return `wss://${page.host}/`;
  if (page.protocol === "http:") return `ws://${page.host}/`;
  // Opened from disk (file://): the server's usual local address.
  return "ws://localhost:5500/";
}

function isWebSocketUrl(text: string): boolean {
  try {
    const { protocol } = new URL(text);
    return protocol === "ws:" || protocol === "wss:";
  } catch {
    return false;
  }
}

/** ?heartbeat=…&heartbeatTimeout=… (milliseconds), so a test need not wait ten seconds. */
export function readTimingFromQuery(search: string): Partial<ConnectionTiming> {
  const query = new URLSearchParams(search);
  const timing: Partial<ConnectionTiming> = {};
  const heartbeat = readPositiveInteger(query.get("heartbeat"));
  const heartbeatTimeout = readPositiveInteger(query.get("heartbeatTimeout"));
  if (heartbeat !== null) timing.heartbeatIntervalMs = heartbeat;
  if (heartbeatTimeout !== null) timing.heartbeatTimeoutMs = heartbeatTimeout;
  return timing;
}

function readPositiveInteger(text: string | null): number | null {
  if (text === null || !/^\d+$/.test(text)) return null;
  const value = Number(text);
  return value > 0 && Number.isSafeInteger(value) ? value : null;
}

export type Language = "zh" | "en";

/** The first of the user's languages that the page speaks; English otherwise. */
export function pickLanguage(languages: readonly string[]): Language {
  for (const language of languages) {
    const lower = language.toLowerCase();
    if (lower.startsWith("zh")) return "zh";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

interface PageText {
  htmlLang: string;
  heading: string;
  connecting: string;
  connected: string;
  reconnecting(attempt: number): string;
  nextTryIn(seconds: number): string;
  offline: string;
  retryNow: string;
  online(count: number): string;
  me: string;
  /** How the user's own name appears in the list of who is online. */
  ownName(name: string): string;
  sending: string;
  waitingToSend: string;
  joined(name: string): string;
  left(name: string): string;
  gap: string;
  nameLabel: string;
  inputLabel: string;
  inputPlaceholder: string;
  send: string;
  messagesLabel: string;
  tooLong: string;
  /** Friendlier words for some server error codes; others show the server's own sentence. */
  errors: Partial<Record<string, string>>;
}

const TEXT: Record<Language, PageText> = {
  zh: {
    htmlLang: "zh-CN",
    heading: "聊天室",
    connecting: "正在连接…",
    connected: "已连接",
    reconnecting: (attempt) => `正在重连（第 ${attempt} 次尝试）`,
    nextTryIn: (seconds) => `，${seconds} 秒后重试`,
    offline: "离线",
    retryNow: "立即重试",
    online: (count) => `在线（${count}）`,
    me: "我",
    ownName: (name) => `${name}（我）`,
    sending: "发送中…",
    waitingToSend: "等待发送",
    joined: (name) => `${name} 加入了聊天室`,
    left: (name) => `${name} 离开了聊天室`,
    gap: "聊天记录已重置，可能有消息缺失",
    nameLabel: "名字",
    inputLabel: "消息",
    inputPlaceholder: "输入消息，按 Enter 发送",
    send: "发送",
    messagesLabel: "聊天消息",
    tooLong: `消息太长了（最多 ${MAX_TEXT_LENGTH} 个字符）`,
    errors: {
      name_taken: "这个名字正在使用中，暂时用了另一个；它空出来后会自动换回",
      rate_limited: "发得太快了，稍后会自动重发",
      empty_text: "不能发送空消息",
      text_too_long: `消息太长了（最多 ${MAX_TEXT_LENGTH} 个字符）`,
    },
  },
  en: {
    htmlLang: "en",
    heading: "Chat room",
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: (attempt) => `Reconnecting (attempt ${attempt})`,
    nextTryIn: (seconds) => `, next try in ${seconds} s`,
    offline: "Offline",
    retryNow: "Retry now",
    online: (count) => `Online (${count})`,
    me: "me",
    ownName: (name) => `${name} (me)`,
    sending: "sending…",
    waitingToSend: "waiting to send",
    joined: (name) => `${name} joined`,
    left: (name) => `${name} left`,
    gap: "History was reset; some messages may be missing",
    nameLabel: "Name",
    inputLabel: "Message",
    inputPlaceholder: "Type a message, Enter sends",
    send: "Send",
    messagesLabel: "Chat messages",
    tooLong: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`,
    errors: {
      name_taken: "That name is in use, so you have another for now; you get it back once it is free",
      rate_limited: "Too fast; your messages will be sent again shortly",
      empty_text: "Empty messages cannot be sent",
      text_too_long: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`,
    },
  },
};

/**
 * Calls wake() when the network returns or the page becomes visible again
 * (a phone unlocking, a tab coming back), and noteOffline() when the network goes.
 */
export function watchBrowserSignals(
  connection: { wake(): void; noteOffline(): void },
  windowTarget: EventTarget,
  documentTarget: EventTarget & { readonly visibilityState: string },
): void {
  windowTarget.addEventListener("online", () => connection.wake());
  windowTarget.addEventListener("offline", () => connection.noteOffline());
  documentTarget.addEventListener("visibilitychange", () => {
    if (documentTarget.visibilityState === "visible") connection.wake();
  });
}

/** What window.chatClient shows, for end-to-end tests and curious learners in the console. */
export interface ChatClientDebugView {
  readonly state: ConnectionState;
  readonly attempt: number;
  readonly name: string | null;
  readonly users: readonly string[];
  readonly lastSeq: number;
  readonly epoch: string | null;
  readonly outboxLength: number;
}

declare global {
  interface Window {
    chatClient?: ChatClientDebugView;
  }
}

interface PageElements {
  heading: HTMLElement;
  status: HTMLElement;
  statusText: HTMLElement;
  statusCountdown: HTMLElement;
  retry: HTMLButtonElement;
  usersHeading: HTMLElement;
  users: HTMLUListElement;
  messages: HTMLOListElement;
  alert: HTMLElement;
  nameForm: HTMLFormElement;
  nameLabel: HTMLLabelElement;
  name: HTMLInputElement;
  composer: HTMLFormElement;
  inputLabel: HTMLLabelElement;
  input: HTMLInputElement;
  send: HTMLButtonElement;
}

function findElement<Kind extends HTMLElement>(id: string, kind: { new (): Kind; prototype: Kind }): Kind {
  const found = document.getElementById(id);
  if (!(found instanceof kind)) throw new Error(`client.html has no <${kind.name}> with id "${id}"`);
  return found;
}

function findPageElements(): PageElements {
  return {
    heading: findElement("heading", HTMLElement),
    status: findElement("status", HTMLElement),
    statusText: findElement("status-text", HTMLElement),
    statusCountdown: findElement("status-countdown", HTMLElement),
    retry: findElement("retry", HTMLButtonElement),
    usersHeading: findElement("users-heading", HTMLElement),
    users: findElement("users", HTMLUListElement),
    messages: findElement("messages", HTMLOListElement),
    alert: findElement("alert", HTMLElement),
    nameForm: findElement("name-form", HTMLFormElement),
    nameLabel: findElement("name-label", HTMLLabelElement),
    name: findElement("name", HTMLInputElement),
    composer: findElement("composer", HTMLFormElement),
    inputLabel: findElement("input-label", HTMLLabelElement),
    input: findElement("input", HTMLInputElement),
    send: findElement("send", HTMLButtonElement),
  };
}

/**
 * Changes text only when it differs. Replacing a text node inside the
 * aria-live message list counts as new content, and a screen reader would
 * read the whole line again.
 */
function setText(element: HTMLElement, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

function createElement<Tag extends keyof HTMLElementTagNameMap>(tag: Tag, className: string): HTMLElementTagNameMap[Tag] {
  const element = document.createElement(tag);
  element.className = className;
  return element;
}

/** One message line and its parts, kept so that updates touch only what changed. */
interface MessageRow {
  element: HTMLLIElement;
  from: HTMLElement;
  me: HTMLElement;
  time: HTMLTimeElement;
  mark: HTMLElement;
  text: HTMLElement;
}

/** What a message line shows; pending messages have no seq and no server time yet. */
interface MessageLine {
  id: string;
  seq: number | null;
  from: string;
  text: string;
  time: number | null;
  mine: boolean;
  /** "sending…" or "waiting to send" while the server has not confirmed it; null once it has. */
  pendingMark: string | null;
}

/** Draws a ChatConnection's state into the page. Holds no chat state of its own. */
class ChatView {
  private readonly elements: PageElements;
  private readonly text: PageText;
  private readonly timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  private readonly dateAndTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  /** Lines currently in the list, by key: a message's id, or the transcript key of a notice. */
  private readonly messageRows = new Map<string, MessageRow>();
  private readonly noticeRows = new Map<string, HTMLLIElement>();
  private renderQueued = false;
  /** Scroll to the newest line on the next render even if the reader had scrolled up. */
  private scrollToNewest = true;
  private alertTimer: number | null = null;
  /** The server error code the alert line shows, if it shows one. */
  private alertCode: string | null = null;
  /** The users list as last drawn, to skip redrawing it when nothing changed. */
  private shownUsers = "";

  constructor(elements: PageElements, text: PageText) {
    this.elements = elements;
    this.text = text;
  }

  /** Fills in the words that client.html holds in Chinese, in the page's language. */
  applyLanguage(): void {
    const { elements, text } = this;
    document.documentElement.lang = text.htmlLang;
    setText(elements.heading, text.heading);
    setText(elements.retry, text.retryNow);
    setText(elements.nameLabel, text.nameLabel);
    setText(elements.inputLabel, text.inputLabel);
    setText(elements.send, text.send);
    elements.input.placeholder = text.inputPlaceholder;
    elements.messages.setAttribute("aria-label", text.messagesLabel);
  }

  /**
   * Redraws once after the current burst of changes: a reconnection replays
   * many messages, each one a change, and one redraw for all of them is enough.
   */
  scheduleRender(connection: ChatConnection): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.render(connection);
    });
  }

  render(connection: ChatConnection): void {
    // "Name taken" is old news once we have the name back.
    if (this.alertCode === "name_taken" && connection.name === connection.wantedName) this.hideAlert();
    this.renderStatus(connection);
    this.renderUsers(connection);
    this.renderName(connection);
    this.renderMessages(connection);
  }

  followNewest(): void {
    this.scrollToNewest = true;
  }

  renderStatus(connection: ChatConnection): void {
    const { status, statusText, statusCountdown, retry } = this.elements;
    const { state, attempt, nextAttemptAt } = connection;
    status.dataset.state = state;
    status.dataset.attempt = String(attempt);
    const labels: Record<ConnectionState, string> = {
      connecting: this.text.connecting,
      connected: connection.name === null ? this.text.connected : `${this.text.connected} · ${connection.name}`,
      reconnecting: this.text.reconnecting(attempt),
      offline: this.text.offline,
    };
    setText(statusText, labels[state]);
    const waiting = state === "reconnecting" && nextAttemptAt !== null;
    const seconds = waiting ? Math.max(0, Math.ceil((nextAttemptAt - Date.now()) / 1000)) : 0;
    setText(statusCountdown, waiting ? this.text.nextTryIn(seconds) : "");
    retry.hidden = !(waiting || state === "offline");
  }

  showAlert(message: string, code: string | null = null): void {
    const { alert } = this.elements;
    setText(alert, message);
    alert.hidden = false;
    this.alertCode = code;
    if (this.alertTimer !== null) window.clearTimeout(this.alertTimer);
    this.alertTimer = window.setTimeout(() => this.hideAlert(), 8000);
  }

  showServerError(error: ServerError): void {
    this.showAlert(this.text.errors[error.code] ?? (error.message || error.code), error.code);
  }

  private hideAlert(): void {
    const { alert } = this.elements;
    alert.hidden = true;
    alert.textContent = "";
    this.alertCode = null;
  }

  private renderUsers(connection: ChatConnection): void {
    const { users, usersHeading } = this.elements;
    setText(usersHeading, this.text.online(connection.users.length));
    // The list is short and not a live region, so it is simply rebuilt, but only when it changed.
    const signature = JSON.stringify([connection.name, connection.users]);
    if (signature === this.shownUsers) return;
    this.shownUsers = signature;
    users.replaceChildren(
      ...connection.users.map((user) => {
        const isMe = user === connection.name;
        const item = createElement("li", isMe ? "user me" : "user");
        item.dataset.name = user;
        item.textContent = isMe ? this.text.ownName(user) : user;
        return item;
      }),
    );
  }

  private renderName(connection: ChatConnection): void {
    const { name } = this.elements;
    // Never overwrite what the user is typing.
    if (document.activeElement !== name) name.value = connection.name ?? "";
  }

  private renderMessages(connection: ChatConnection): void {
    const list = this.elements.messages;
    const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const followNewest = this.scrollToNewest || wasAtBottom;
    this.scrollToNewest = false;

    const wanted: HTMLLIElement[] = [];
    const usedMessageKeys = new Set<string>();
    const usedNoticeKeys = new Set<string>();
    // A message's row is found by its id, so the row of a pending message is
    // the very row that later shows it confirmed: it is updated, not replaced,
    // and a screen reader does not announce the message a second time.
    const messageKey = (id: string, fallback: string): string =>
      id !== "" && !usedMessageKeys.has(id) ? id : fallback;

    for (const entry of connection.entries) {
      if (entry.kind === "notice") {
        usedNoticeKeys.add(entry.key);
        wanted.push(this.noticeRow(entry.key, entry.notice, entry.name, entry.time));
        continue;
      }
      const { message } = entry;
      const key = messageKey(message.id, entry.key);
      usedMessageKeys.add(key);
      wanted.push(this.messageRow(key, { ...message, mine: connection.isMine(message), pendingMark: null }));
    }
    for (const message of connection.pending) {
      const key = messageKey(message.id, `pending-${message.id}`);
      usedMessageKeys.add(key);
      const pendingMark = connection.state === "connected" ? this.text.sending : this.text.waitingToSend;
      const from = connection.name ?? this.text.me;
      const line = { id: message.id, seq: null, from, text: message.text, time: null, mine: true, pendingMark };
      wanted.push(this.messageRow(key, line));
    }

    // Put the wanted rows first, in order, moving only those out of place; whatever is left after them goes.
    wanted.forEach((row, index) => {
      const current = list.children[index];
      if (current !== row) list.insertBefore(row, current ?? null);
    });
    while (list.children.length > wanted.length) list.lastElementChild?.remove();
    for (const key of this.messageRows.keys()) if (!usedMessageKeys.has(key)) this.messageRows.delete(key);
    for (const key of this.noticeRows.keys()) if (!usedNoticeKeys.has(key)) this.noticeRows.delete(key);

    if (followNewest) list.scrollTop = list.scrollHeight;
  }

  private messageRow(key: string, line: MessageLine): HTMLLIElement {
    let row = this.messageRows.get(key);
    if (row === undefined) {
      row = this.createMessageRow();
      this.messageRows.set(key, row);
    }
    const { element } = row;
    element.dataset.id = line.id;
    if (line.seq === null) delete element.dataset.seq;
    else element.dataset.seq = String(line.seq);
    element.classList.toggle("mine", line.mine);
    element.classList.toggle("pending", line.pendingMark !== null);

    setText(row.from, line.from);
    row.me.hidden = !line.mine;
    setText(row.me, line.mine ? this.text.me : "");
    row.time.hidden = line.time === null;
    if (line.time !== null) {
      const date = new Date(line.time);
      row.time.dateTime = date.toISOString();
      row.time.title = this.dateAndTimeFormat.format(date);
      setText(row.time, this.timeFormat.format(date));
    }
    row.mark.hidden = line.pendingMark === null;
    setText(row.mark, line.pendingMark ?? "");
    setText(row.text, line.text);
    return element;
  }

  private createMessageRow(): MessageRow {
    const element = createElement("li", "message");
    const meta = createElement("div", "meta");
    const row = {
      element,
      from: createElement("span", "from"),
      me: createElement("span", "me-badge"),
      time: createElement("time", "time"),
      mark: createElement("span", "mark"),
      text: createElement("p", "text"),
    };
    meta.append(row.from, row.me, row.time, row.mark);
    element.append(meta, row.text);
    return row;
  }

  private noticeRow(key: string, notice: NoticeKind, name: string, time: number): HTMLLIElement {
    const existing = this.noticeRows.get(key);
    if (existing !== undefined) return existing;
    // A notice never changes after it is written, so it is built once.
    const element = createElement("li", "notice");
    element.dataset.kind = notice;
    const words = notice === "joined" ? this.text.joined(name) : notice === "left" ? this.text.left(name) : this.text.gap;
    const date = new Date(time);
    const timeElement = createElement("time", "time");
    timeElement.dateTime = date.toISOString();
    timeElement.textContent = this.timeFormat.format(date);
    element.append(timeElement, " ", words);
    this.noticeRows.set(key, element);
    return element;
  }
}

function openSessionStorage(): KeyValueStorage {
  try {
    // Reading window.sessionStorage throws where storage is forbidden (some
    // privacy settings, sandboxed frames). The chat then forgets on reload.
    const storage = window.sessionStorage;
    storage.getItem(STORAGE_KEYS.name);
    return storage;
  } catch {
    return createMemoryStorage();
  }
}

const browserTimers: Timers = {
  setTimeout: (callback, delayMs) => window.setTimeout(callback, delayMs),
  clearTimeout: (timerId) => window.clearTimeout(timerId),
  now: () => Date.now(),
};

function startPage(): void {
  const elements = findPageElements();
  const text = TEXT[pickLanguage(navigator.languages?.length ? navigator.languages : [navigator.language])];
  const view = new ChatView(elements, text);
  view.applyLanguage();

  const connection: ChatConnection = new ChatConnection({
    serverUrl: resolveServerUrl(location),
    createSocket: (url) => new WebSocket(url),
    storage: openSessionStorage(),
    timers: browserTimers,
    timing: readTimingFromQuery(location.search),
    isOnline: () => navigator.onLine,
    onChange: () => view.scheduleRender(connection),
    onServerError: (error) => view.showServerError(error),
  });

  elements.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const outcome = connection.send(elements.input.value);
    if (outcome === "too_long") view.showAlert(text.tooLong);
    if (outcome === "sent" || outcome === "queued") {
      elements.input.value = "";
      view.followNewest();
    }
  });
  elements.input.addEventListener("keydown", (event) => {
    // Enter also picks a candidate in a Chinese (or any) input method. That
    // Enter belongs to the input method and must not send a half-typed line.
    // keyCode 229 is how some browsers say the same as isComposing.
    if (event.key === "Enter" && (event.isComposing || event.keyCode === 229)) event.preventDefault();
  });
  elements.nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    connection.rename(elements.name.value);
    elements.input.focus();
  });
  elements.name.addEventListener("change", () => connection.rename(elements.name.value));
  // A name field left empty or half-edited shows the real name again.
  elements.name.addEventListener("blur", () => view.scheduleRender(connection));
  elements.retry.addEventListener("click", () => connection.wake());
  watchBrowserSignals(connection, window, document);
  // The countdown in the status line moves even when nothing else happens.
  window.setInterval(() => view.renderStatus(connection), 1000);

  window.chatClient = Object.freeze({
    get state() {
      return connection.state;
    },
    get attempt() {
      return connection.attempt;
    },
    get name() {
      return connection.name;
    },
    get users() {
      return [...connection.users];
    },
    get lastSeq() {
      return connection.lastSeq;
    },
    get epoch() {
      return connection.epoch;
    },
    get outboxLength() {
      return connection.pending.length;
    },
  });

  view.render(connection);
  connection.start();
}

// Under Node (the tests import this file) there is no document, and nothing starts.
if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startPage);
  else startPage();
}
