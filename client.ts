// The browser side of the chat room, in two parts.
//
// Part one is the chat client. Its logic never touches the page: it talks to
// the server through a socket, timers and storage that are handed in, so the
// tests replace all three with fakes and drive time by hand. Only its last
// section draws that state into client.html and wires up the browser's events.
//
// Part two is the frame inspector: the panel that shows every WebSocket frame
// of this page's own connection. It sees the connection through one observer
// (ChatConnectionOptions.observer, which is told every ConnectionEvent) and
// switches the server's reports on and off with setInspecting(). Without it,
// part one works exactly the same.
//
// Part three is the frame lab: a panel where bytes typed as hex are sent to
// the server, whose own decoder walks them and answers with what each bit
// means, or the first rule they break and its close code. The request goes
// over the chat's connection (ChatConnection.decode), one at a time.
//
// Reading order, top to bottom:
//   Part one: the chat client
//     1. the wire: the server's types, its frames checked on arrival, the values copied from server.ts
//     2. storage: sessionStorage, or anything with the same three methods
//     3. Backoff: how long to wait before the next reconnection attempt
//     4. Outbox: messages typed but not yet confirmed by the server
//     5. TabSession: this tab's secret, and a duplicated tab noticing it must make its own
//     6. Transcript: what is on screen, in seq order, and where to resume from;
//        HistoryPager: asking for older messages a page at a time
//     7. MemberList: who is in the room, as far as this page knows
//     8. Heartbeat: noticing a connection that died without telling anyone
//     9. ChatConnection: the one place that opens sockets, and its state machine
//    10. the chat page: ChatView and the browser's events
//   Part two: the frame inspector
//    11. InspectorLog: the entries, from the server's traces and the connection's events
//    12. InspectorView: the panel
//   Part three: the frame lab
//    13. FrameLab: the examples, and one request and its answer
//    14. FrameLabView: the panel
//   Start-up: all three parts on the page
//
// Durations are in milliseconds; names that hold one end in "Ms".

// The wire contract is declared once, in server.ts. These imports are types
// only: esbuild erases them, so the page still loads one script with no
// imports, and none of the server's code.
import type {
  ChatMessage,
  ClientMessage,
  DecodedMessage,
  ErrorCode,
  ErrorMessage,
  HistoryPageMessage,
  MemberView,
  MembersMessage,
  PresenceMessage,
  PresenceSummaryMessage,
  RenamedMessage,
  ServerMessage,
  TraceFrameFields,
  TraceMessage,
  TraceNoteFields,
  WelcomeMessage,
} from "./server.ts";

// ═══════════════════════════════════════════════════════════════════════════
// Part one: the chat client
// ═══════════════════════════════════════════════════════════════════════════

// ---------------------------------------------------------------------------
// 1. The wire
// ---------------------------------------------------------------------------
//
// Frames come from the network, so each is checked on arrival and turned into
// one of the shapes below, derived from the server's own types. A frame that
// does not fit is ignored.

/** Someone in the room, as checked on arrival: `away` is always present, unlike in the server's MemberView. */
export interface Member extends Omit<MemberView, "away"> {
  away: boolean;
}

/**
 * A welcome as checked on arrival. `users` (the same names as `members`, for
 * older clients) is not read. `oldestSeq` is null from a server that does not
 * say it: such a server sent its whole history already, so there is nothing
 * older to ask for.
 */
export interface WelcomeFrame extends Omit<WelcomeMessage, "members" | "users" | "oldestSeq"> {
  members: Member[];
  oldestSeq: number | null;
}

/** A large room's summary of who came and went, as checked on arrival. */
export interface PresenceSummaryFrame extends Omit<PresenceSummaryMessage, "joined" | "left"> {
  joined: Member[];
  left: Member[];
}

/** A page of the member list, as checked on arrival. */
export interface MembersFrame extends Omit<MembersMessage, "members"> {
  members: Member[];
}

/** A page of older messages, as checked on arrival; a message in it that does not fit is left out. */
export type HistoryFrame = HistoryPageMessage;

/** An error as checked on arrival. `code` stays a string: a code newer than this page is still shown. */
export interface ErrorFrame extends Omit<ErrorMessage, "code" | "id"> {
  code: string;
  id: string | null;
}

/** Each member of a union without its `type`. */
type WithoutType<Message> = Message extends unknown ? Omit<Message, "type"> : never;

/**
 * A `trace` message without its `type`: one frame of this connection, its
 * opening handshake, or the note under a data frame that says what
 * compression did to its message.
 */
export type TraceReport = WithoutType<TraceMessage>;

/**
 * The frames this client understands, after checking. A `message` frame keeps
 * its message in one object because that object is what gets stored and shown.
 */
export type ServerFrame =
  | WelcomeFrame
  | { type: "message"; message: ChatMessage }
  /** `t` is the time our ping carried, sent back unchanged: now minus t is the round trip. */
  | { type: "pong"; t: number | null }
  | PresenceMessage
  | PresenceSummaryFrame
  | MembersFrame
  | HistoryFrame
  | RenamedMessage
  | ErrorFrame
  | { type: "trace"; trace: TraceReport }
  /** The frame lab's answer: the server's decoder walked the bytes (see part three). */
  | DecodedMessage;

/** Spaced hex as the server writes it: "7f 9f 4d", or "" for no bytes. */
const SPACED_HEX = /^(?:[0-9a-f]{2}(?: [0-9a-f]{2})*)?$/;

// server.ts imports node: modules, so the page cannot load it and copies the
// few values it needs. test/client.test.ts checks that each copy agrees with
// server.ts: MAX_TEXT_LENGTH and characterCount here, sessionIsValid in
// section 5, CLOSE_CODE_NAMES in part two.

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

function readMember(value: unknown): Member | null {
  if (!isRecord(value) || typeof value.name !== "string" || typeof value.sid !== "string") return null;
  return { name: value.name, sid: value.sid, away: value.away === true };
}

/** A list of members, or null if it is not a list or one of them does not fit. */
function readMembers(value: unknown): Member[] | null {
  if (!Array.isArray(value)) return null;
  const members: Member[] = [];
  for (const member of value.map(readMember)) {
    if (member === null) return null;
    members.push(member);
  }
  return members;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function readWelcome(value: Record<string, unknown>): WelcomeFrame | null {
  const { name, you, seq, epoch, resumed, memberCount, online, presenceBatched, oldestSeq } = value;
  const members = readMembers(value.members);
  if (typeof name !== "string" || typeof you !== "string" || members === null) return null;
  // The contract says the epoch is a string; a number is accepted too, because
  // refusing the welcome would leave the client unable to connect at all.
  if (typeof epoch !== "string" && typeof epoch !== "number") return null;
  // A server older than the counts sends every member and one frame per change:
  // the list is then the whole room.
  return {
    type: "welcome",
    name,
    you,
    members,
    memberCount: isCount(memberCount) ? memberCount : members.length,
    online: isCount(online) ? online : members.filter((member) => !member.away).length,
    presenceBatched: presenceBatched === true,
    seq: isSeq(seq) ? seq : 0,
    oldestSeq: isCount(oldestSeq) ? oldestSeq : null,
    epoch: String(epoch),
    resumed: resumed === true,
  };
}

function readPresenceSummary(value: Record<string, unknown>): PresenceSummaryFrame | null {
  const { memberCount, online, joinedCount, leftCount } = value;
  const joined = readMembers(value.joined);
  const left = readMembers(value.left);
  if (!isCount(memberCount) || !isCount(online) || !isCount(joinedCount) || !isCount(leftCount)) return null;
  if (joined === null || left === null) return null;
  return { type: "presence", memberCount, online, joinedCount, joined, leftCount, left };
}

function readMembersPage(value: Record<string, unknown>): MembersFrame | null {
  const { offset, memberCount, online, presenceBatched } = value;
  const members = readMembers(value.members);
  if (!isCount(offset) || !isCount(memberCount) || !isCount(online) || members === null) return null;
  return { type: "members", offset, memberCount, online, presenceBatched: presenceBatched === true, members };
}

function readHistoryPage(value: Record<string, unknown>): HistoryFrame | null {
  const { before, messages, more } = value;
  if (!isCount(before) || !Array.isArray(messages)) return null;
  const checked: ChatMessage[] = [];
  for (const message of messages) {
    const read = isRecord(message) ? readChatMessage(message) : null;
    // Only older messages belong here; anything else would be put in the wrong place.
    if (read !== null && read.seq < before) checked.push(read);
  }
  return { type: "history", before, messages: checked, more: more === true };
}

/** Reads the fields of a chat message from an untrusted object, or returns null. */
function readChatMessage(value: Record<string, unknown>): ChatMessage | null {
  const { seq, id, sid, from, text, time } = value;
  if (!isSeq(seq) || typeof from !== "string" || typeof text !== "string") return null;
  if (typeof time !== "number" || !Number.isFinite(time)) return null;
  // A message without an id cannot be anyone's acknowledgement, nor one
  // without a sid anyone's own, but both are worth showing.
  return { seq, id: typeof id === "string" ? id : "", sid: typeof sid === "string" ? sid : "", from, text, time };
}

/** Reads a trace message from an untrusted object, or returns null. */
function readTraceReport(value: Record<string, unknown>): TraceReport | null {
  const { direction, line, lines, frame } = value;
  if (direction === "handshake") return isStringArray(lines) ? { direction, lines } : null;
  if (direction === "note") return readTraceNote(value);
  if ((direction !== "received" && direction !== "sent") || typeof line !== "string" || !isRecord(frame)) return null;
  const { fin, rsv1, rsv2, rsv3, opcode, opcodeName, masked, maskKey, lengthBits, length, onWire, payload } = frame;
  const flags = [fin, rsv1, rsv2, rsv3, masked];
  if (!flags.every((flag) => typeof flag === "boolean")) return null;
  if (typeof opcode !== "number" || !Number.isInteger(opcode) || opcode < 0 || opcode > 15) return null;
  if (typeof opcodeName !== "string" || (lengthBits !== 7 && lengthBits !== 16 && lengthBits !== 64)) return null;
  if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) return null;
  if (maskKey !== null && (typeof maskKey !== "string" || !/^[0-9a-f]{8}$/.test(maskKey))) return null;
  if (typeof onWire !== "string" || typeof payload !== "string") return null;
  if (!SPACED_HEX.test(onWire) || !SPACED_HEX.test(payload)) return null;
  return {
    direction,
    line,
    frame: {
      fin: fin === true,
      rsv1: rsv1 === true,
      rsv2: rsv2 === true,
      rsv3: rsv3 === true,
      opcode,
      opcodeName,
      masked: masked === true,
      maskKey,
      lengthBits,
      length,
      onWire,
      payload,
    },
  };
}

/** The note under a data frame (RFC 7692): what the message was before or after compression. */
function readTraceNote(value: Record<string, unknown>): TraceReport | null {
  const { of, line, note } = value;
  if ((of !== "received" && of !== "sent") || typeof line !== "string" || !isRecord(note)) return null;
  const { compressed, binary, length, wireLength, payload, threshold, windowBits } = note;
  if (typeof compressed !== "boolean" || typeof binary !== "boolean") return null;
  if (!isCount(length) || !isCount(wireLength) || typeof payload !== "string" || !SPACED_HEX.test(payload)) return null;
  if (threshold !== undefined && !isCount(threshold)) return null;
  if (windowBits !== undefined && !isCount(windowBits)) return null;
  const fields: TraceNoteFields = { compressed, binary, length, wireLength, payload };
  if (threshold !== undefined) fields.threshold = threshold;
  if (windowBits !== undefined) fields.windowBits = windowBits;
  return { direction: "note", of, line, note: fields };
}

function readPresence(value: Record<string, unknown>): PresenceMessage | null {
  const { type, name, sid } = value;
  if (type !== "joined" && type !== "left" && type !== "away" && type !== "back") return null;
  return typeof name === "string" && typeof sid === "string" ? { type, name, sid } : null;
}

/**
 * One reader for every type of message the server sends (ServerMessage), so a
 * type added to server.ts does not compile here until the page decides what
 * to make of it.
 */
const frameReaders: Record<ServerMessage["type"], (value: Record<string, unknown>) => ServerFrame | null> = {
  welcome: readWelcome,
  message: (value) => {
    const message = readChatMessage(value);
    return message === null ? null : { type: "message", message };
  },
  pong: (value) => ({ type: "pong", t: typeof value.t === "number" && Number.isFinite(value.t) ? value.t : null }),
  joined: readPresence,
  left: readPresence,
  away: readPresence,
  back: readPresence,
  presence: readPresenceSummary,
  members: readMembersPage,
  history: readHistoryPage,
  // The frame lab's answer: the lines are the server's own words, shown as they are.
  decoded: (value) => {
    const { lines, outcome } = value;
    if (!isStringArray(lines)) return null;
    if (outcome !== "valid" && outcome !== "incomplete" && outcome !== "violation") return null;
    return { type: "decoded", lines, outcome };
  },
  renamed: (value) => {
    const { sid, from, to } = value;
    if (typeof sid !== "string" || typeof from !== "string" || typeof to !== "string") return null;
    return { type: "renamed", sid, from, to };
  },
  error: (value) => {
    const { code, message, id } = value;
    return {
      type: "error",
      code: typeof code === "string" ? code : "unknown",
      message: typeof message === "string" ? message : "",
      id: typeof id === "string" ? id : null,
    };
  },
  trace: (value) => {
    const trace = readTraceReport(value);
    return trace === null ? null : { type: "trace", trace };
  },
};

/**
 * Turns the text of one frame into a checked ServerFrame. Returns null for
 * anything this client does not use: broken JSON, missing fields, or types it
 * does not know. Ignoring those, rather than failing, lets the server grow
 * new frame types.
 */
export function parseServerFrame(data: unknown): ServerFrame | null {
  if (typeof data !== "string") return null;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!isRecord(value) || typeof value.type !== "string") return null;
  if (!Object.prototype.hasOwnProperty.call(frameReaders, value.type)) return null;
  return frameReaders[value.type as ServerMessage["type"]](value);
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
  /** This tab's secret: who we are to the server. Never shown, never sent but in the socket URL. */
  session: "chatRoom.session",
  /** Our public id from the last welcome, so our own messages show as ours before the next one. */
  you: "chatRoom.you",
  /** true while the frame inspector is open, so a reload opens it again (and asks for the handshake). */
  inspector: "chatRoom.inspector",
  /** true while the frame lab is open, so a reload keeps it open. */
  frameLab: "chatRoom.frameLab",
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

/** What the page takes from `crypto`; older or insecure pages lack randomUUID, very old ones both. */
export interface RandomSource {
  randomUUID?: () => string;
  getRandomValues?: (array: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer>;
}

/** 16 random bytes: from crypto.getRandomValues, or from `random` where there is none. */
function randomBytes(source: RandomSource | undefined, random: () => number): Uint8Array {
  const bytes = new Uint8Array(16);
  if (typeof source?.getRandomValues === "function") source.getRandomValues(bytes);
  else for (let index = 0; index < bytes.length; index++) bytes[index] = Math.floor(random() * 256);
  return bytes;
}

/**
 * A new message id, unique across reloads and tabs so the server can tell a
 * retry of the same message from a new one. `crypto.randomUUID` only exists
 * on https pages and localhost, so a phone opening http://192.168.x.x falls
 * back to random bytes written as 32 hexadecimal digits.
 */
export function createMessageId(
  source: RandomSource | undefined = globalThis.crypto,
  random: () => number = Math.random,
): string {
  if (typeof source?.randomUUID === "function") return source.randomUUID();
  return Array.from(randomBytes(source, random), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function isOutgoingMessage(value: unknown): value is OutgoingMessage {
  return (
    isRecord(value) &&
    typeof value.id === "string" &&
    typeof value.text === "string" &&
    typeof value.createdAt === "number"
  );
}

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

  constructor(storage: KeyValueStorage) {
    this.storage = storage;
    const stored = readStoredJson(storage, STORAGE_KEYS.outbox);
    if (isRecord(stored) && Array.isArray(stored.pending)) this.waiting = stored.pending.filter(isOutgoingMessage);
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

  /** The server sent the message back: it is in the history now. Returns false for unknown ids. */
  acknowledge(id: string): boolean {
    return this.remove(id);
  }

  /** The server refused the message for good (too long, empty): sending it again would not help. */
  discard(id: string): boolean {
    return this.remove(id);
  }

  private remove(id: string): boolean {
    if (!this.isPending(id)) return false;
    this.waiting = this.waiting.filter((message) => message.id !== id);
    this.save();
    return true;
  }

  private save(): void {
    writeStoredJson(this.storage, STORAGE_KEYS.outbox, { pending: this.waiting });
  }
}

// ---------------------------------------------------------------------------
// 5. TabSession: who this tab is
// ---------------------------------------------------------------------------

/**
 * A new session secret: 128 random bits as base64url (22 characters).
 * `crypto.getRandomValues` works on plain-http pages on a LAN, where
 * `crypto.randomUUID` and `crypto.subtle` do not exist.
 */
export function createSessionSecret(
  source: RandomSource | undefined = globalThis.crypto,
  random: () => number = Math.random,
): string {
  let binary = "";
  for (const byte of randomBytes(source, random)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** What the server accepts as a session: 16-64 characters of A-Z, a-z, 0-9, - and _. A copy of server.ts's. */
export function sessionIsValid(value: string): boolean {
  return /^[A-Za-z0-9_-]{16,64}$/.test(value);
}

/** The tabs of one origin talking to each other: a BroadcastChannel in a browser, a fake in tests. */
export interface TabChannel {
  post(message: unknown): void;
  listen(listener: (message: unknown) => void): void;
}

/**
 * This tab's session secret, kept in sessionStorage so a reload is the same
 * person. A duplicated tab gets a copy of sessionStorage, secret included,
 * and would be the same person as the tab it came from. So every tab says
 * "I am using session S" when it starts; a tab already using S answers
 * "taken", and the newcomer makes a secret of its own. The one that answers
 * was there first, so it keeps its identity.
 */
export class TabSession {
  private readonly storage: KeyValueStorage;
  private readonly createSecret: () => string;
  /** Tells one tab from another, for as long as this page lives. */
  private readonly tabId: string;
  private current: string;
  private readonly onReplaced: () => void;

  constructor(
    storage: KeyValueStorage,
    channel: TabChannel | null,
    createSecret: () => string,
    onReplaced: () => void,
  ) {
    this.storage = storage;
    this.createSecret = createSecret;
    this.onReplaced = onReplaced;
    this.tabId = createSecret();
    let stored: string | null = null;
    try {
      stored = storage.getItem(STORAGE_KEYS.session);
    } catch {
      // Unreadable storage: a new session, as for a new tab.
    }
    this.current = stored !== null && sessionIsValid(stored) ? stored : this.replace();
    if (channel === null) return;
    channel.listen((message) => {
      if (!isRecord(message) || message.session !== this.current) return;
      if (message.type === "using" && message.tab !== this.tabId) {
        channel.post({ type: "taken", session: this.current, to: message.tab });
      } else if (message.type === "taken" && message.to === this.tabId) {
        this.replace();
        this.onReplaced();
      }
    });
    channel.post({ type: "using", session: this.current, tab: this.tabId });
  }

  get secret(): string {
    return this.current;
  }

  private replace(): string {
    this.current = this.createSecret();
    try {
      this.storage.setItem(STORAGE_KEYS.session, this.current);
      // Our public id belonged to the old secret.
      this.storage.removeItem(STORAGE_KEYS.you);
    } catch {
      // Only a reload would notice; see writeStoredJson.
    }
    return this.current;
  }
}

// ---------------------------------------------------------------------------
// 6. Transcript
// ---------------------------------------------------------------------------

export type NoticeKind = "joined" | "left" | "renamed" | "gap" | "presence";

/**
 * One line on screen. `key` never repeats, so the page can keep one element
 * per line; `epoch` records which numbering a message's seq belongs to.
 */
export type TranscriptEntry =
  | { kind: "message"; key: string; epoch: string; message: ChatMessage }
  /** `name` is who joined or left, or the old name of a rename, whose new name is `to`. */
  | { kind: "notice"; key: string; notice: Exclude<NoticeKind, "presence">; name: string; time: number; to?: string }
  /**
   * A large room's joins and leaves, counted: the server names only a few of
   * them, so the line names none. `time` is the latest summary counted in it.
   */
  | { kind: "notice"; key: string; notice: "presence"; joined: number; left: number; time: number };

/** What the client puts in the URL to ask for only the messages it has not seen. */
export interface ResumePoint {
  since: number;
  epoch: string;
}

/** What a welcome meant for the transcript: see Transcript.welcome. */
export type WelcomeOutcome = "first" | "resumed" | "gap";

/**
 * How many lines to keep, and to store. sessionStorage holds about 5 MB and
 * every change rewrites the whole list. Older pages the user asked for are
 * kept on top of this while the page is open, and not stored.
 */
const TRANSCRIPT_LIMIT = 300;

function isTranscriptEntry(value: unknown): value is TranscriptEntry {
  if (!isRecord(value) || typeof value.key !== "string") return false;
  if (value.kind === "message") {
    return typeof value.epoch === "string" && isRecord(value.message) && readChatMessage(value.message) !== null;
  }
  if (value.kind !== "notice" || typeof value.time !== "number") return false;
  const { notice } = value;
  if (notice === "presence") return isCount(value.joined) && isCount(value.left);
  const knownNotice = notice === "joined" || notice === "left" || notice === "gap";
  return (knownNotice || (notice === "renamed" && typeof value.to === "string")) && typeof value.name === "string";
}

/**
 * The lines on screen, and the bookkeeping that lets a reconnection pick up
 * exactly where the last one stopped.
 *
 * Seq numbers only mean something within one epoch: a server that restarts
 * with an empty history starts a new epoch and counts from 1 again. So the
 * transcript compares seqs only against messages of the current epoch. Older
 * lines stay on screen, above a notice that marks the gap.
 *
 * A gap is only ever what a welcome says: the server could not continue from
 * our last seq. Messages older than the oldest one shown are not missing,
 * only not loaded (a first visit is sent the newest page of the history);
 * the user asks for them a page at a time (addOlder).
 */
export class Transcript {
  private readonly storage: KeyValueStorage;
  private lines: TranscriptEntry[] = [];
  private currentEpoch: string | null = null;
  /** The highest seq shown in the current epoch; 0 before the first. */
  private highestSeq = 0;
  /** Seqs of the current epoch that are on screen, to ignore a message that arrives twice. */
  private shownSeqs = new Set<number>();
  /**
   * Seqs up to here were dropped to respect the limit; a message that arrives
   * unasked with one of them counts as already seen. Only an older page the
   * user asked for brings them back.
   */
  private droppedThroughSeq = 0;
  /** Lines from older pages: the user asked for them, so they are kept on top of TRANSCRIPT_LIMIT. */
  private olderLines = 0;
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

  /** The lowest seq of the current epoch on screen: older pages are asked for from below it. Null if none. */
  get oldestShownSeq(): number | null {
    for (const line of this.lines) {
      if (line.kind === "message" && line.epoch === this.currentEpoch) return line.message.seq;
    }
    return null;
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
    if (message.seq <= this.droppedThroughSeq || !this.place(message)) return false;
    this.dropOldestBeyondLimit();
    this.save();
    return true;
  }

  /**
   * A page of older messages the user asked for: each goes in seq order above
   * what is shown, those already shown are skipped, and none is ever a gap.
   * They are kept however many lines there are; only the newest
   * TRANSCRIPT_LIMIT lines are stored. Returns how many were added.
   */
  addOlder(messages: readonly ChatMessage[]): number {
    let added = 0;
    // Newest first, so each walk back from the end stops right above the one before.
    for (const message of [...messages].sort((a, b) => b.seq - a.seq)) if (this.place(message)) added += 1;
    if (added === 0) return 0;
    this.olderLines += added;
    const oldest = this.oldestShownSeq;
    // Those that were dropped and came back are no longer dropped.
    if (oldest !== null) this.droppedThroughSeq = Math.min(this.droppedThroughSeq, oldest - 1);
    this.save();
    return added;
  }

  addNotice(notice: "joined" | "left", name: string, time: number): void {
    this.pushNotice({ kind: "notice", key: this.newKey(), notice, name, time });
  }

  /** One line for a rename: "小红 is now Bob". */
  addRename(from: string, to: string, time: number): void {
    this.pushNotice({ kind: "notice", key: this.newKey(), notice: "renamed", name: from, to, time });
  }

  /**
   * A large room's summary: "12 joined, 3 left". Summaries in a row with
   * nothing between them add up in one line, so a busy room's comings and
   * goings never push the conversation off the screen.
   */
  addPresence(joined: number, left: number, time: number): void {
    if (joined === 0 && left === 0) return;
    const lastLine = this.lines[this.lines.length - 1];
    if (lastLine?.kind === "notice" && lastLine.notice === "presence") {
      this.lines[this.lines.length - 1] = {
        ...lastLine,
        joined: lastLine.joined + joined,
        left: lastLine.left + left,
        time,
      };
      this.save();
      return;
    }
    this.pushNotice({ kind: "notice", key: this.newKey(), notice: "presence", joined, left, time });
  }

  /** Puts a message of the current epoch in seq order; false if it is shown already or there is no epoch yet. */
  private place(message: ChatMessage): boolean {
    const epoch = this.currentEpoch;
    // Messages only follow a welcome; one before it has no epoch to be numbered in.
    if (epoch === null || this.shownSeqs.has(message.seq)) return false;

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
    return true;
  }

  private pushNotice(entry: TranscriptEntry): void {
    this.lines.push(entry);
    this.dropOldestBeyondLimit();
    this.save();
  }

  private dropOldestBeyondLimit(): void {
    while (this.lines.length > TRANSCRIPT_LIMIT + this.olderLines) {
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

  /** Stores the newest TRANSCRIPT_LIMIT lines; after a reload, the ones left out count as dropped. */
  private save(): void {
    const cut = Math.max(0, this.lines.length - TRANSCRIPT_LIMIT);
    let droppedThroughSeq = this.droppedThroughSeq;
    for (const line of this.lines.slice(0, cut)) {
      if (line.kind === "message" && line.epoch === this.currentEpoch) {
        droppedThroughSeq = Math.max(droppedThroughSeq, line.message.seq);
      }
    }
    writeStoredJson(this.storage, STORAGE_KEYS.transcript, {
      epoch: this.currentEpoch,
      lastSeq: this.highestSeq,
      droppedThroughSeq,
      nextKeyNumber: this.nextKeyNumber,
      entries: cut === 0 ? this.lines : this.lines.slice(cut),
    });
  }
}

/**
 * How many messages came in below the line the reader last saw at the bottom
 * of the list (`lastReadKey`): what they missed while scrolled up. Older pages
 * go on top and notices are not messages, so neither counts. If that line has
 * been dropped (past the limit), everything shown came after it. Null: the
 * reader has not been at the bottom yet, so nothing counts as arrived since.
 */
export function countNewBelow(entries: readonly TranscriptEntry[], lastReadKey: string | null): number {
  if (lastReadKey === null) return 0;
  const read = entries.findIndex((entry) => entry.key === lastReadKey);
  return entries.slice(read + 1).filter((entry) => entry.kind === "message").length;
}

/** What the page offers above the oldest message shown; see HistoryPager. */
export type OlderMessages =
  /** Not connected: nothing can be asked. */
  | "unavailable"
  /** The server keeps messages older than the oldest shown: "load older messages". */
  | "available"
  /** Asked; the answer has not come. */
  | "loading"
  /** Nothing older than what is shown is kept on the server. */
  | "exhausted";

/**
 * Where the page is in asking for older messages, one page at a time: at
 * most one `history` request on the wire, and none once the oldest message
 * the server keeps is shown. It asks only when told to (the user scrolled to
 * the top, or pressed the button): requests count against the rate limit.
 */
type PagerPhase =
  /** No welcome on the current connection. */
  | { name: "closed" }
  /**
   * Connected. Nothing with a seq below `floor` exists on the server: the
   * welcome's oldestSeq, raised by an answer that said `more: false`.
   */
  | { name: "ready"; floor: number }
  /** A `history` request for the messages before `before` is on the wire. */
  | { name: "loading"; floor: number; before: number };

export class HistoryPager {
  private phase: PagerPhase = { name: "closed" };

  /** A welcome: `oldestSeq` null means the server sends its whole history and has no pages. */
  welcome(oldestSeq: number | null): void {
    this.phase = { name: "ready", floor: oldestSeq ?? Infinity };
  }

  /** The connection is gone, and with it any answer to a request on it. */
  close(): void {
    this.phase = { name: "closed" };
  }

  /** What to offer, given the oldest seq shown in the current epoch (null: none). */
  status(oldestShown: number | null): OlderMessages {
    const { phase } = this;
    if (phase.name === "closed") return "unavailable";
    if (phase.name === "loading") return "loading";
    return oldestShown !== null && oldestShown > phase.floor ? "available" : "exhausted";
  }

  /** The `before` to ask for now, or null when there is nothing to ask (or a request is out). */
  ask(oldestShown: number | null): number | null {
    const { phase } = this;
    if (phase.name !== "ready" || this.status(oldestShown) !== "available" || oldestShown === null) return null;
    this.phase = { name: "loading", floor: phase.floor, before: oldestShown };
    return oldestShown;
  }

  /** An answer: `more: false` means nothing older than its messages (or than `before`) is kept. */
  answered(page: HistoryFrame): void {
    const { phase } = this;
    if (phase.name === "closed") return;
    let floor = phase.floor;
    if (!page.more) floor = Math.max(floor, Math.min(page.before, ...page.messages.map((message) => message.seq)));
    this.phase = { name: "ready", floor };
  }

  /** The request was refused (rate_limited, say): the user may ask again. */
  refused(): void {
    const { phase } = this;
    if (phase.name === "loading") this.phase = { name: "ready", floor: phase.floor };
  }
}

// ---------------------------------------------------------------------------
// 7. MemberList
// ---------------------------------------------------------------------------

/** How far the member list shown can be trusted; see MemberList. */
export type MemberListStatus =
  /** Everyone in the room is shown. */
  | "complete"
  /** The first members in arrival order are shown, and more can be asked for from the end of them. */
  | "partial"
  /**
   * A summary counted leavers it did not name: some of those shown may have
   * left. Only the list from the start again can tell.
   */
  | "stale";

/**
 * Who is in the room, as far as this page knows. A small room sends the
 * whole list in the welcome and one frame per change, so the list is the
 * room. A large one sends the first page of the list (in arrival order, the
 * order `members` pages count in), and one `presence` summary a second with
 * the counts and a few names: the counts are always the server's, the list
 * only ever loses those it names as gone, and it says when it is partial or
 * may show someone who left. More is asked for only when the user asks.
 */
export class MemberList {
  private list: Member[] = [];
  private total = 0;
  private onlineCount = 0;
  private batched = false;
  private mayShowLeavers = false;
  /** Whether the list and counts are the server's: not before the first welcome, nor without a connection. */
  private isKnown = false;
  /** How many were online when the connection was lost; null before the first welcome. */
  private onlineWhenLost: number | null = null;
  /** The offset asked for in a `members` request that has not been answered; null when none is out. */
  private askedOffset: number | null = null;

  get members(): readonly Member[] {
    return this.list;
  }

  /** Everyone in the room, away or not. */
  get memberCount(): number {
    return this.total;
  }

  /** Those in the room with a connection open; 0 while not known. */
  get online(): number {
    return this.onlineCount;
  }

  /**
   * Whether the counts are the server's now. Without a connection nobody is
   * known to be here, and "0 online" would read as "everyone left".
   */
  get known(): boolean {
    return this.isKnown;
  }

  /** The online count now, or while not known, the last one there was (null if there never was one). */
  get lastKnownOnline(): number | null {
    return this.isKnown ? this.onlineCount : this.onlineWhenLost;
  }

  /** Whether joins and leaves come summed up once a second (a large room) rather than one frame each. */
  get presenceBatched(): boolean {
    return this.batched;
  }

  get status(): MemberListStatus {
    if (this.mayShowLeavers) return "stale";
    return this.list.length >= this.total ? "complete" : "partial";
  }

  /** Whether a `members` request is out. */
  get loading(): boolean {
    return this.askedOffset !== null;
  }

  /** The offset the next `members` request would ask for: from the start for a stale list. Null: nothing to ask. */
  get nextOffset(): number | null {
    switch (this.status) {
      case "complete":
        return null;
      case "partial":
        return this.list.length;
      case "stale":
        return 0;
    }
  }

  /** The welcome: the first page of the room, and the counts. */
  welcome(welcome: WelcomeFrame): void {
    this.replace(welcome.members, welcome.memberCount, welcome.online, welcome.presenceBatched);
  }

  /** No connection: nobody is known to be here until the next welcome; the last count is remembered. */
  clear(): void {
    if (this.isKnown) this.onlineWhenLost = this.onlineCount;
    this.replace([], 0, 0, false);
    this.isKnown = false;
  }

  /** The offset to send in a `members` request now, or null (nothing to ask, or one is out). */
  ask(): number | null {
    if (this.askedOffset !== null) return null;
    this.askedOffset = this.nextOffset;
    return this.askedOffset;
  }

  /** The request was refused: the user may ask again. */
  refused(): void {
    this.askedOffset = null;
  }

  /**
   * A page of the list. From 0 it is the list: the server also sends that
   * unasked, whole, when a large room became small. Later pages add to it.
   */
  page(page: MembersFrame): void {
    if (page.offset === 0) {
      this.replace(page.members, page.memberCount, page.online, page.presenceBatched);
      return;
    }
    const shown = new Set(this.list.map((member) => member.sid));
    this.list = [...this.list, ...page.members.filter((member) => !shown.has(member.sid))];
    this.total = page.memberCount;
    this.onlineCount = page.online;
    this.batched = page.presenceBatched;
    this.askedOffset = null;
  }

  /** One change in a small room (joined, left, away, back), with the counts kept by hand. */
  presence({ type, name, sid }: PresenceMessage): void {
    const index = this.list.findIndex((member) => member.sid === sid);
    const shown = index === -1 ? null : this.list[index]!;
    switch (type) {
      case "joined": {
        if (shown !== null) return;
        // A partial list is a prefix of the room in arrival order; a newcomer comes last, beyond it.
        const wasWhole = this.list.length >= this.total;
        this.total += 1;
        this.onlineCount += 1;
        if (wasWhole) this.list.push({ name, sid, away: false });
        return;
      }
      case "left":
        if (shown !== null) this.list.splice(index, 1);
        this.total = Math.max(0, this.total - 1);
        // A left comes after an away (the grace ran out), so one shown online was still counted online.
        if (shown !== null && !shown.away) this.onlineCount = Math.max(0, this.onlineCount - 1);
        return;
      case "away":
      case "back": {
        const away = type === "away";
        if (shown !== null && shown.away === away) return;
        this.onlineCount = Math.max(0, this.onlineCount + (away ? -1 : 1));
        // In place: the list keeps arrival order, which later pages count in.
        if (shown !== null) this.list[index] = { ...shown, name, away };
        return;
      }
    }
  }

  /**
   * A large room's summary. Newcomers join the list only if it was the whole
   * room (otherwise they are beyond its end, where "more" finds them); those
   * named as gone leave it, even if also named as new (they came and went).
   */
  summary(summary: PresenceSummaryFrame): void {
    const wasComplete = this.status === "complete";
    this.total = summary.memberCount;
    this.onlineCount = summary.online;
    this.batched = true;
    const gone = new Set(summary.left.map((member) => member.sid));
    if (wasComplete) {
      const shown = new Set(this.list.map((member) => member.sid));
      for (const member of summary.joined) {
        if (!shown.has(member.sid)) this.list.push(member);
      }
    }
    this.list = this.list.filter((member) => !gone.has(member.sid));
    if (summary.leftCount > summary.left.length) this.mayShowLeavers = true;
  }

  rename(sid: string, to: string): void {
    this.list = this.list.map((member) => (member.sid === sid ? { ...member, name: to } : member));
  }

  private replace(members: Member[], total: number, online: number, batched: boolean): void {
    this.list = members;
    this.total = total;
    this.onlineCount = online;
    this.batched = batched;
    this.mayShowLeavers = false;
    this.askedOffset = null;
    this.isKnown = true;
  }
}

// ---------------------------------------------------------------------------
// 8. Heartbeat
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
// 9. ChatConnection
// ---------------------------------------------------------------------------

/**
 * What a close event says (the browser's CloseEvent has these fields): the
 * code and reason of the server's close frame; 1005 if the frame had no code,
 * 1006 if no close frame arrived at all. Optional, because only the inspector
 * reads them and a test's fake socket need not invent them.
 */
export interface SocketCloseEvent {
  code?: number;
  reason?: string;
  wasClean?: boolean;
}

/**
 * The part of a WebSocket this client uses. A real WebSocket fits; tests use
 * a small fake. There is no "open" listener: the connection counts as up
 * only once the server's welcome arrives.
 */
export interface SocketLike {
  send(data: string): void;
  close(): void;
  addEventListener(type: "close", listener: (event: SocketCloseEvent) => void): void;
  addEventListener(type: "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
}

/**
 * What the page shows (#status[data-state], window.chatClient.state). Each
 * phase of a ChatConnection shows as one of these; see the diagram there.
 */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

/** What send() did with the text. */
export type SendOutcome = "sent" | "queued" | "empty" | "too_long";

export interface ServerError {
  code: string;
  message: string;
}

/** Error codes after which the outbox is sent again a little later: the refusal was temporary. */
const RESEND_LATER_CODES: ReadonlySet<string> = new Set<ErrorCode>(["rate_limited", "storage_failed"]);

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

/** Things that happen on the page's side of the connection, which no frame shows. */
export type ClientEvent =
  | { kind: "state"; from: ConnectionState; to: ConnectionState }
  | { kind: "opening"; url: string }
  /** Milliseconds from sending a heartbeat ping to receiving its pong. */
  | { kind: "rtt"; roundTripMs: number }
  /** The next attempt is planned: `attempt` counts failures since the last stable connection. */
  | { kind: "retry"; attempt: number; delayMs: number }
  /** A socket's close event; `current` is false for a socket this page had already given up on. */
  | { kind: "closed"; code: number | null; reason: string; wasClean: boolean | null; current: boolean }
  | { kind: "socket-error" }
  /** The heartbeat got no answer in time, or the server never sent its welcome: the socket is given up on. */
  | { kind: "silent"; timeoutMs: number }
  | { kind: "not-welcomed"; timeoutMs: number }
  /** The inspector was switched; `connected`: the server was told at once over the open socket. */
  | { kind: "inspect"; on: boolean; connected: boolean };

/**
 * Everything a ChatConnection tells its observer: its own events, and the
 * texts that pass through its current socket.
 */
export type ConnectionEvent =
  | ClientEvent
  /** A socket was created; `tracedFromStart`: its URL had inspect=1, so the server reports every frame of it. */
  | { kind: "socket"; tracedFromStart: boolean }
  /** The page handed this text to socket.send(). */
  | { kind: "sent"; text: string }
  /** A text message arrived that is not a trace. */
  | { kind: "received"; text: string }
  /** The server reported one of this connection's frames, or its opening handshake. */
  | { kind: "trace"; trace: TraceReport };

/** Watches a ChatConnection (the inspector, part two, does). Watching changes nothing the connection does. */
export type ConnectionObserver = (event: ConnectionEvent) => void;

export interface ChatConnectionOptions {
  /**
   * ws:// or wss:// address; name, since and epoch are added to its query.
   * Null: there is no address to use (an invalid ?server=, which the page
   * shows), and start() opens nothing.
   */
  serverUrl: string | null;
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
  observer?: ConnectionObserver;
  /** Where tabs of this origin hear each other, to notice a duplicated tab (BroadcastChannel); none in most tests. */
  tabChannel?: TabChannel | null;
  createSessionSecret?: () => string;
}

/**
 * The address to open: the server address plus who we are and what we have
 * already seen. `inspect` adds inspect=1, which makes the server keep the
 * opening handshake and report every frame from the first: a message asking
 * for that would come too late for the handshake.
 */
export function buildSocketUrl(
  serverUrl: string,
  session: string | null,
  name: string | null,
  resumePoint: ResumePoint | null,
  inspect = false,
): string {
  // encodeURIComponent rather than URLSearchParams: it writes a space as %20,
  // which every decoder reads back as a space (URLSearchParams writes "+").
  const parameters: string[] = [];
  if (session !== null) parameters.push(`session=${encodeURIComponent(session)}`);
  if (name !== null) parameters.push(`name=${encodeURIComponent(name)}`);
  if (resumePoint !== null) {
    parameters.push(`since=${resumePoint.since}`, `epoch=${encodeURIComponent(resumePoint.epoch)}`);
  }
  if (inspect) parameters.push("inspect=1");
  const url = new URL(serverUrl);
  const existing = url.search.slice(1);
  url.search = [existing, ...parameters].filter((part) => part !== "").join("&");
  return url.toString();
}

/** The address with the session's value replaced by "…", for the inspector: the secret is never shown. */
export function hideSession(url: string): string {
  return url.replace(/([?&]session=)[^&#]*/, "$1…");
}

/**
 * Where a ChatConnection is, and what it holds there. A socket and its timers
 * live in the phase they belong to, so none outlives it: leaving a phase
 * (ChatConnection.release) closes the one and cancels the others.
 */
type Phase =
  /** Before start(), and after stop(). */
  | { name: "stopped" }
  /** Started, but the browser reports no network: no attempt until wake(). */
  | { name: "offline" }
  /** A socket is open and the server's welcome has not come yet. `retry`: an earlier attempt failed. */
  | { name: "opening"; socket: SocketLike; connectTimer: number; retry: boolean }
  /**
   * Welcomed. `stableTimer` resets the backoff once the connection has lasted
   * stableAfterMs; `resendTimer`, when not null, sends the outbox again after
   * a rate_limited or storage_failed error.
   */
  | { name: "open"; socket: SocketLike; heartbeat: Heartbeat; stableTimer: number; resendTimer: number | null }
  /** No socket; the next attempt is due at `retryAt` (the Timers.now() clock). */
  | { name: "waiting"; retryTimer: number; retryAt: number };

/**
 * One chat connection over a sequence of sockets, as a state machine:
 *
 *   ┌─────────┐  start(), online   ┌─────────┐  welcome    ┌──────┐
 *   │ stopped ├───────────────────▶│ opening ├────────────▶│ open │
 *   └────┬────┘                    └──▲──┬─▲─┘             └──┬───┘
 *        │ start(),            wake() │  │ │ retry timer,     │
 *        │ offline        ┌───────────┘  │ │ wake()           │ lost
 *        ▼                │         lost ▼ │                  │
 *   ┌─────────┐           │        ┌───────┴─┐                │
 *   │ offline ├───────────┘        │ waiting │◀───────────────┘
 *   └────▲────┘                    └───┬─────┘
 *        └─────── noteOffline() ───────┘
 *
 * lost: the socket closed or failed, no welcome came within connectTimeoutMs,
 * or the heartbeat met silence; new WebSocket() throwing counts too (straight
 * from the phase that tried). It leads to waiting for the backoff's next
 * delay, or to offline while the browser reports no network. From every phase, stop()
 * leads to stopped; from every phase but stopped, a new session (this tab
 * turned out to be a duplicate) leads to opening at once, the backoff reset.
 *
 * The page shows stopped and offline as "offline", open as "connected",
 * waiting as "reconnecting", and opening as "connecting" on a first attempt
 * and "reconnecting" after a failed one.
 *
 * Every phase change goes through enter(), which first ends what the phase
 * left behind holds. Every socket is created in connect() and nowhere else,
 * and lives in the phase it was created for, so there is one current socket
 * at most. Its listeners, attached where it is created, act only while it is
 * the current one: a socket given up on can close, fail or deliver a late
 * message without effect.
 */
export class ChatConnection {
  private readonly options: ChatConnectionOptions;
  private readonly timers: Timers;
  private readonly timing: ConnectionTiming;
  private readonly outbox: Outbox;
  private readonly transcript: Transcript;
  private readonly backoff: Backoff;
  private readonly session: TabSession;

  private phase: Phase = { name: "stopped" };
  /** The name the server gave us, kept in storage so the next connection asks for it again. */
  private confirmedName: string | null;
  /** A name the user chose that the server has not confirmed yet (asked for on the next welcome if offline). */
  private requestedName: string | null = null;
  /** Our public id from the last welcome (kept in storage): a message is ours when its sid is this. */
  private ownSid: string | null;
  /** Who is in the room, as the current socket was told; empty while there is none. */
  private readonly roster = new MemberList();
  /** Asking for messages older than the oldest shown, on the current socket. */
  private readonly pager = new HistoryPager();
  /** Whether the frame inspector is open: the server is asked for traces on every connection. */
  private inspectOn: boolean;
  /** The frame lab's request on the current socket, and its answer (part three). */
  private readonly lab = new FrameLab();

  constructor(options: ChatConnectionOptions) {
    this.options = options;
    this.timers = options.timers;
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.outbox = new Outbox(options.storage);
    this.transcript = new Transcript(options.storage);
    this.backoff = new Backoff(options.random ?? Math.random, this.timing.backoffBaseMs, this.timing.backoffCapMs);
    const createSecret = options.createSessionSecret ?? createSessionSecret;
    this.session = new TabSession(options.storage, options.tabChannel ?? null, createSecret, () => {
      // A duplicated tab: we are someone new, and the old identity's marks are not ours.
      this.ownSid = null;
      this.reconnectNow();
    });
    this.confirmedName = options.storage.getItem(STORAGE_KEYS.name);
    this.ownSid = options.storage.getItem(STORAGE_KEYS.you);
    this.inspectOn = readStoredJson(options.storage, STORAGE_KEYS.inspector) === true;
  }

  // --- What the page reads ---

  get state(): ConnectionState {
    switch (this.phase.name) {
      case "stopped":
      case "offline":
        return "offline";
      case "opening":
        return this.phase.retry ? "reconnecting" : "connecting";
      case "open":
        return "connected";
      case "waiting":
        return "reconnecting";
    }
  }

  /** Failed attempts since the last stable connection: "attempt n" on screen. */
  get attempt(): number {
    return this.backoff.attempts;
  }

  /** When the next attempt is due (Timers.now() clock), while waiting for it; otherwise null. */
  get nextAttemptAt(): number | null {
    return this.phase.name === "waiting" ? this.phase.retryAt : null;
  }

  /** The name the server gave us in the last welcome. */
  get name(): string | null {
    return this.confirmedName;
  }

  /** The name the user chose and the server has not confirmed yet; null when there is none. */
  get wantedName(): string | null {
    return this.requestedName;
  }

  /** Our public id (the welcome's `you`); null before the first welcome. */
  get you(): string | null {
    return this.ownSid;
  }

  /** Who is in the room, as the current connection was told; empty without one. See MemberList. */
  get members(): readonly Member[] {
    return this.roster.members;
  }

  /** Everyone in the room (away or not), and those with a connection: the server's counts. */
  get memberCount(): number {
    return this.roster.memberCount;
  }

  get online(): number {
    return this.roster.online;
  }

  /** Whether the counts are the server's now (connected and welcomed); see MemberList.known. */
  get onlineKnown(): boolean {
    return this.roster.known;
  }

  /** The online count now, or the last one before the connection was lost; null before any welcome. */
  get lastKnownOnline(): number | null {
    return this.roster.lastKnownOnline;
  }

  /** Whether `members` is the whole room; see MemberListStatus. */
  get memberListStatus(): MemberListStatus {
    return this.roster.status;
  }

  /** What asking for more members would do: add to the list (its length) or load it again (0); null: nothing to ask. */
  get nextMembersOffset(): number | null {
    return this.roster.nextOffset;
  }

  get membersLoading(): boolean {
    return this.roster.loading;
  }

  /** What can be done about messages older than the oldest shown. */
  get olderMessages(): OlderMessages {
    return this.pager.status(this.transcript.oldestShownSeq);
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

  /** Whether the frame inspector is open (remembered in storage across reloads). */
  get inspecting(): boolean {
    return this.inspectOn;
  }

  /** The frame lab: nothing asked, waiting for the server, or its answer. */
  get frameLab(): FrameLabState {
    return this.lab.state;
  }

  /** Ours: sent by our session, under whatever name. Nothing else makes a message ours. */
  isMine(message: ChatMessage): boolean {
    return this.ownSid !== null && message.sid === this.ownSid;
  }

  // --- What the page does ---

  start(): void {
    if (this.phase.name !== "stopped" || this.options.serverUrl === null) return;
    if (this.isOnline()) this.connect();
    else this.enter({ name: "offline" });
  }

  stop(): void {
    this.enter({ name: "stopped" });
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
    const connected = this.phase.name === "open";
    if (connected) this.sendSay(message);
    this.notify();
    return connected ? "sent" : "queued";
  }

  /**
   * Opens or closes the frame inspector. While it is open the server reports
   * every frame of this connection as a `trace` message; each new socket asks
   * for that in its URL (inspect=1, which also gets the handshake) and again
   * after the welcome. An open socket is told at once.
   */
  setInspecting(on: boolean): void {
    if (on === this.inspectOn) return;
    this.inspectOn = on;
    writeStoredJson(this.options.storage, STORAGE_KEYS.inspector, on);
    const connected = this.phase.name === "open";
    this.sendFrame({ type: "inspect", on });
    this.observe({ kind: "inspect", on, connected });
  }

  /**
   * Asks for the page of messages before the oldest one shown, if the server
   * keeps older ones and no request is out. Only on the user's action (a
   * scroll to the top, a button): requests count against the rate limit.
   */
  loadOlder(): void {
    if (this.phase.name !== "open") return;
    const before = this.pager.ask(this.transcript.oldestShownSeq);
    if (before === null) return;
    this.sendFrame({ type: "history", before });
    this.notify();
  }

  /**
   * Asks the server to decode `hex` as a client's or a server's frames (the
   * frame lab). Only over an open connection and with no other request out:
   * the answer names no request, so only one may be waiting. Returns whether
   * it was sent.
   */
  decode(hex: string, from: FrameLabSource): boolean {
    if (this.phase.name !== "open") return false;
    const request = this.lab.ask(hex, from);
    if (request === null) return false;
    this.sendFrame({ type: "decode", hex: request.hex, from: request.from });
    this.notify();
    return true;
  }

  /** Asks for the next page of the member list, or the list again if it may show leavers; on the user's action only. */
  loadMoreMembers(): void {
    if (this.phase.name !== "open") return;
    const offset = this.roster.ask();
    if (offset === null) return;
    this.sendFrame({ type: "members", offset });
    this.notify();
  }

  /**
   * Asks for a new name over the open connection ({"type":"rename"}); the
   * server answers everyone with `renamed`, or us with name_taken or
   * bad_name. Offline, the name is asked for after the next welcome.
   */
  rename(rawName: string): void {
    const name = rawName.trim();
    if (name === "" || name === (this.requestedName ?? this.confirmedName)) return;
    this.requestedName = name === this.confirmedName ? null : name;
    if (this.requestedName !== null) this.sendFrame({ type: "rename", name });
    this.notify();
  }

  /**
   * The browser says the network is back or the page is visible again. If we
   * are waiting to retry, retry now. If we believe we are connected, check:
   * a network change is exactly when connections die without a word.
   */
  wake(): void {
    const { phase } = this;
    if (phase.name === "offline" || phase.name === "waiting") this.connect();
    else if (phase.name === "open") phase.heartbeat.probe();
  }

  /**
   * The browser says the network is gone. Waiting to retry is pointless until
   * it comes back; a connection that looks open is probably dead, so check it.
   */
  noteOffline(): void {
    const { phase } = this;
    if (phase.name === "offline" || phase.name === "waiting") this.enter({ name: "offline" });
    else if (phase.name === "open") phase.heartbeat.probe();
  }

  // --- The state machine ---

  /** Creates a socket: the only place one is made. */
  private connect(): void {
    const { serverUrl } = this.options;
    // Only start() leaves stopped, and it does not without an address.
    if (serverUrl === null) return;
    const inspect = this.inspectOn;
    const name = this.requestedName ?? this.confirmedName;
    const resumePoint = this.transcript.resumePoint();
    const url = buildSocketUrl(serverUrl, this.session.secret, name, resumePoint, inspect);
    this.observe({ kind: "opening", url: hideSession(url) });
    let socket: SocketLike;
    try {
      socket = this.options.createSocket(url);
    } catch {
      // new WebSocket() throws on an address it cannot use: a lost socket like any other.
      this.retryLater();
      return;
    }
    this.observe({ kind: "socket", tracedFromStart: inspect });
    const connectTimer = this.timers.setTimeout(() => {
      this.observe({ kind: "not-welcomed", timeoutMs: this.timing.connectTimeoutMs });
      this.retryLater();
    }, this.timing.connectTimeoutMs);
    this.enter({ name: "opening", socket, connectTimer, retry: this.backoff.attempts > 0 });

    socket.addEventListener("message", (event) => {
      if (this.isCurrent(socket)) this.handleFrame(event.data);
    });
    socket.addEventListener("close", (event) => {
      const current = this.isCurrent(socket);
      // Observed even for a socket already given up on: its close code is still worth seeing.
      this.observe({
        kind: "closed",
        code: typeof event.code === "number" ? event.code : null,
        reason: typeof event.reason === "string" ? event.reason : "",
        wasClean: typeof event.wasClean === "boolean" ? event.wasClean : null,
        current,
      });
      if (current) this.retryLater();
    });
    socket.addEventListener("error", () => {
      if (!this.isCurrent(socket)) return;
      this.observe({ kind: "socket-error" });
      this.retryLater();
    });
  }

  /** The welcome: the server knows who we are and has sent what we missed after it. */
  private opened(socket: SocketLike): void {
    const heartbeat = new Heartbeat({
      intervalMs: this.timing.heartbeatIntervalMs,
      timeoutMs: this.timing.heartbeatTimeoutMs,
      timers: this.timers,
      sendPing: (time) => this.sendFrame({ type: "ping", t: time }),
      onSilence: () => {
        this.observe({ kind: "silent", timeoutMs: this.timing.heartbeatTimeoutMs });
        this.retryLater();
      },
    });
    heartbeat.start();
    // Resetting the backoff on the welcome itself would let a server that
    // accepts and then crashes pull every client into a tight loop.
    const stableTimer = this.timers.setTimeout(() => this.backoff.reset(), this.timing.stableAfterMs);
    this.enter({ name: "open", socket, heartbeat, stableTimer, resendTimer: null });
  }

  /** The current socket is lost: wait for the backoff's next delay, or for the network. */
  private retryLater(): void {
    if (!this.isOnline()) {
      this.enter({ name: "offline" });
      return;
    }
    const delayMs = this.backoff.next();
    const retryTimer = this.timers.setTimeout(() => this.connect(), delayMs);
    this.enter({ name: "waiting", retryTimer, retryAt: this.timers.now() + delayMs });
    this.observe({ kind: "retry", attempt: this.backoff.attempts, delayMs });
  }

  /** A deliberate reconnection, not a failure: no waiting, no backoff. Entering opening closes the old socket. */
  private reconnectNow(): void {
    if (this.phase.name === "stopped") return;
    this.backoff.reset();
    this.connect();
  }

  /** The one place the phase changes; the observer hears of the state the page shows changing. */
  private enter(next: Phase): void {
    const from = this.state;
    this.release("socket" in next ? next.socket : null);
    this.phase = next;
    const to = this.state;
    if (to !== from) this.observe({ kind: "state", from, to });
    this.notify();
  }

  /**
   * Ends what the current phase holds: its timers are cancelled and its socket
   * closed, unless it is `keep` (the socket an opening phase hands to the open
   * one).
   */
  private release(keep: SocketLike | null): void {
    const { phase } = this;
    if (phase.name === "opening") this.timers.clearTimeout(phase.connectTimer);
    if (phase.name === "waiting") this.timers.clearTimeout(phase.retryTimer);
    if (phase.name === "open") {
      phase.heartbeat.stop();
      this.timers.clearTimeout(phase.stableTimer);
      if (phase.resendTimer !== null) this.timers.clearTimeout(phase.resendTimer);
    }
    if ((phase.name === "opening" || phase.name === "open") && phase.socket !== keep) {
      // Without a connection we do not know who is online, and no answer to a request is coming.
      this.roster.clear();
      this.pager.close();
      this.lab.close();
      try {
        // We do not wait for the close to finish: on a half-open connection it never would.
        phase.socket.close();
      } catch {
        // Closing a socket that is already closed is not worth reporting.
      }
    }
  }

  private isCurrent(socket: SocketLike): boolean {
    const { phase } = this;
    return (phase.name === "opening" || phase.name === "open") && phase.socket === socket;
  }

  // --- Frames from the server ---

  private handleFrame(data: unknown): void {
    // Any frame proves the way back from the server works, a trace as much as a pong.
    if (this.phase.name === "open") this.phase.heartbeat.noteActivity();
    const frame = parseServerFrame(data);
    if (frame?.type === "trace") {
      // A report about this connection, not part of the chat: it goes to the
      // observer and nowhere else, and changes nothing on screen.
      this.observe({ kind: "trace", trace: frame.trace });
      return;
    }
    if (typeof data === "string") this.observe({ kind: "received", text: data });
    if (frame === null) return;
    switch (frame.type) {
      case "welcome":
        this.handleWelcome(frame);
        break;
      case "message":
        this.outbox.acknowledge(frame.message.id);
        this.transcript.addMessage(frame.message);
        break;
      case "pong": {
        // Our pings carry the time they were sent, and the server sends it back.
        const roundTripMs = frame.t === null ? -1 : this.timers.now() - frame.t;
        if (roundTripMs >= 0) this.observe({ kind: "rtt", roundTripMs });
        break;
      }
      case "joined":
      case "left":
      case "away":
      case "back":
        this.handlePresence(frame);
        break;
      case "presence":
        this.handlePresenceSummary(frame);
        break;
      case "members":
        this.roster.page(frame);
        break;
      case "history":
        // Only ever an answer to our request on this socket, which only an open one sends.
        if (this.phase.name !== "open") break;
        this.transcript.addOlder(frame.messages);
        this.pager.answered(frame);
        break;
      case "renamed":
        this.handleRename(frame);
        break;
      case "error":
        this.handleError(frame);
        break;
      case "decoded":
        this.lab.answered(frame);
        break;
    }
    this.notify();
  }

  private handleWelcome(welcome: WelcomeFrame): void {
    if (this.phase.name !== "opening" && this.phase.name !== "open") return;
    this.rememberName(welcome.name);
    this.ownSid = welcome.you;
    this.store(STORAGE_KEYS.you, welcome.you);
    this.roster.welcome(welcome);
    this.transcript.welcome(welcome.epoch, welcome.resumed, this.timers.now());
    this.pager.welcome(welcome.oldestSeq);
    this.opened(this.phase.socket);
    // Asked in the URL already (inspect=1), but asking again costs one small
    // message and also works with a server that ignores the URL.
    if (this.inspectOn) this.sendFrame({ type: "inspect", on: true });
    this.sendPending();
    // A name chosen while offline: our identity may hold another one.
    if (this.requestedName === welcome.name) this.requestedName = null;
    if (this.requestedName !== null) this.sendFrame({ type: "rename", name: this.requestedName });
  }

  /**
   * Presence changes the member list. Only joined and left are news worth a
   * line: away and back are a reload or a blip, shown in the list alone.
   */
  private handlePresence(presence: PresenceMessage): void {
    const { type, name, sid } = presence;
    this.roster.presence(presence);
    if (sid === this.ownSid) return;
    if (type === "joined" || type === "left") this.transcript.addNotice(type, name, this.timers.now());
  }

  /** A large room's second of comings and goings: the list and counts, and one line of counts (we are not news). */
  private handlePresenceSummary(summary: PresenceSummaryFrame): void {
    this.roster.summary(summary);
    const isMe = (member: Member) => member.sid === this.ownSid;
    const joined = summary.joinedCount - (summary.joined.some(isMe) ? 1 : 0);
    const left = summary.leftCount - (summary.left.some(isMe) ? 1 : 0);
    this.transcript.addPresence(Math.max(0, joined), Math.max(0, left), this.timers.now());
  }

  private handleRename({ sid, from, to }: RenamedMessage): void {
    this.roster.rename(sid, to);
    if (sid === this.ownSid) {
      this.rememberName(to);
      if (this.requestedName === to) this.requestedName = null;
    }
    this.transcript.addRename(from, to, this.timers.now());
  }

  private handleError(error: ErrorFrame): void {
    const { phase } = this;
    // The frame lab's bad input is the lab's to show, and about no other request.
    if (isFrameLabError(error)) {
      this.lab.refused(error.message);
      return;
    }
    // A request refused for its rate may have been the lab's as much as any other.
    if (error.code === "rate_limited") this.lab.refused(error.message);
    // An error about a `say` names it, and one about a name is about the rename;
    // any other may be the answer to a members or history request (rate_limited,
    // most likely), which is then no longer out, so the user can ask again.
    if (error.id === null && error.code !== "bad_name" && error.code !== "name_taken") {
      this.roster.refused();
      this.pager.refused();
    }
    if (error.code === "bad_name" || error.code === "name_taken") {
      // Refused: our name stays what it was, and asking again would only repeat this.
      this.requestedName = null;
    } else if (RESEND_LATER_CODES.has(error.code)) {
      // The server did not take some of our messages; they are still in the outbox.
      if (phase.name === "open" && phase.resendTimer === null) {
        phase.resendTimer = this.timers.setTimeout(() => {
          phase.resendTimer = null;
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
    for (const message of this.outbox.pending) this.sendSay(message);
  }

  private sendSay(message: OutgoingMessage): void {
    this.sendFrame({ type: "say", id: message.id, text: message.text });
  }

  /** Sends over the open connection; before the welcome, and without one, nothing is sent. */
  private sendFrame(frame: ClientMessage): void {
    if (this.phase.name !== "open") return;
    const text = JSON.stringify(frame);
    try {
      this.phase.socket.send(text);
    } catch {
      // The socket is closing. Whatever was lost is still in the outbox.
      return;
    }
    this.observe({ kind: "sent", text });
  }

  // --- Small helpers ---

  private rememberName(name: string): void {
    this.confirmedName = name;
    this.store(STORAGE_KEYS.name, name);
  }

  private store(key: string, value: string): void {
    try {
      this.options.storage.setItem(key, value);
    } catch {
      // Only a reload would notice; see writeStoredJson.
    }
  }

  private isOnline(): boolean {
    return this.options.isOnline?.() ?? true;
  }

  private observe(event: ConnectionEvent): void {
    this.options.observer?.(event);
  }

  private notify(): void {
    this.options.onChange?.();
  }
}

// ---------------------------------------------------------------------------
// 10. The chat page
// ---------------------------------------------------------------------------
//
// Everything above works without a page. This section reads the state of a
// ChatConnection and shows it in client.html, and turns the user's actions
// and the browser's signals into calls on it.

/**
 * Where the chat server is, and how the page knows. A page the server served
 * connects back to its own host. A page opened from disk (file://) has no host,
 * so it tries the server's usual local address, which is only there if someone
 * started it. ?server= chooses any ws:// or wss:// address; anything else there
 * is a mistake to show, not to replace with a guess the reader never asked for.
 */
export type ServerAddress =
  | { kind: "page"; url: string }
  | { kind: "disk"; url: string }
  | { kind: "chosen"; url: string }
  /** ?server= holds something that is not a ws:// or wss:// URL: `given`, as it was written. */
  | { kind: "invalid"; given: string };

/** The server's address when the page is opened from disk: `npm start`'s default port on this machine. */
export const DEFAULT_LOCAL_SERVER = "ws://localhost:5500/";

/** Where the server is: ?server= if given, else the host that served the page, else (file://) this machine. */
export function resolveServer(page: { protocol: string; host: string; search: string }): ServerAddress {
  const requested = new URLSearchParams(page.search).get("server");
  if (requested !== null) {
    return isWebSocketUrl(requested) ? { kind: "chosen", url: requested } : { kind: "invalid", given: requested };
  }
  if (page.protocol === "https:") return { kind: "page", url: `wss://${page.host}/` };
  if (page.protocol === "http:") return { kind: "page", url: `ws://${page.host}/` };
  return { kind: "disk", url: DEFAULT_LOCAL_SERVER };
}

function isWebSocketUrl(text: string): boolean {
  try {
    const { protocol } = new URL(text);
    return protocol === "ws:" || protocol === "wss:";
  } catch {
    return false;
  }
}

/** What the page says under its status about the server's address; see serverHelp. */
export type ServerHelp =
  | { kind: "none" }
  /** Attempts to `url` failed; `local`: it is this machine, where the reader can start the server. */
  | { kind: "no-answer"; url: string; local: boolean }
  | { kind: "invalid"; given: string };

/**
 * Whether to explain the address. A page its server served needs no
 * explanation: the reconnecting status says it all. A page from disk or with
 * ?server= tries an address the reader may not know about, and an empty page
 * saying "Reconnecting (attempt 3)" does not tell them that nothing listens
 * there, nor how to start it.
 */
export function serverHelp(address: ServerAddress, state: ConnectionState): ServerHelp {
  if (address.kind === "invalid") return { kind: "invalid", given: address.given };
  if (address.kind === "page" || state !== "reconnecting") return { kind: "none" };
  let local = false;
  try {
    const { hostname } = new URL(address.url);
    local = hostname === "localhost" || hostname === "127.0.0.1" || hostname === "[::1]";
  } catch {
    // A chosen address is a valid URL already; nothing to add if not.
  }
  return { kind: "no-answer", url: address.url, local };
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

/** From this many characters on, the composer counts them against MAX_TEXT_LENGTH. */
export const COUNTER_FROM = 1800;

/**
 * The composer's counter for `text`: null while far from the limit. It counts
 * what send() would send (trimmed, in characters as the server counts them; a
 * line break is one), so it says exactly when a message will be refused.
 */
export function composerCount(text: string): { count: number; over: boolean } | null {
  const count = characterCount(text.trim());
  return count < COUNTER_FROM ? null : { count, over: count > MAX_TEXT_LENGTH };
}

/**
 * A message's time as the page shows it: the time of day for today's, the
 * date too for older ones (history from last week is not "14:05"), and the
 * year when it is not this year's. In the reader's locale and time zone;
 * tests pass both.
 */
export class MessageTimeFormat {
  private readonly day: Intl.DateTimeFormat;
  private readonly year: Intl.DateTimeFormat;
  private readonly timeOnly: Intl.DateTimeFormat;
  private readonly withDate: Intl.DateTimeFormat;
  private readonly withYear: Intl.DateTimeFormat;
  private readonly full: Intl.DateTimeFormat;

  constructor(locale?: string, timeZone?: string) {
    const time = { hour: "2-digit", minute: "2-digit", timeZone } as const;
    // Calendar days compared as text, in the same time zone as what is shown.
    this.day = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit", timeZone });
    this.year = new Intl.DateTimeFormat("en-CA", { year: "numeric", timeZone });
    this.timeOnly = new Intl.DateTimeFormat(locale, time);
    this.withDate = new Intl.DateTimeFormat(locale, { ...time, month: "short", day: "numeric" });
    this.withYear = new Intl.DateTimeFormat(locale, { ...time, year: "numeric", month: "short", day: "numeric" });
    this.full = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium", timeZone });
  }

  /** The short form, next to the message; `now` decides what "today" is. */
  format(time: number, now: number): string {
    if (this.day.format(time) === this.day.format(now)) return this.timeOnly.format(time);
    return (this.year.format(time) === this.year.format(now) ? this.withDate : this.withYear).format(time);
  }

  /** Date and time in full, for the tooltip. */
  long(time: number): string {
    return this.full.format(time);
  }
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

/** Words, and commands to be shown as code ({ code: "npm start" }). */
export type TextPart = string | { code: string };

export interface PageText {
  htmlLang: string;
  heading: string;
  connecting: string;
  connected: string;
  reconnecting(attempt: number): string;
  nextTryIn(seconds: number): string;
  offline: string;
  /** The status when there is no address to connect to (an invalid ?server=). */
  notConnected: string;
  retryNow: string;
  /** A page from disk or with ?server= whose server does not answer: where it tries, how to start one. */
  noServer(url: string, local: boolean): TextPart[];
  /** ?server= that is not a ws:// or wss:// address: nothing is connected. */
  badServer(given: string): TextPart[];
  /** The heading of the member list: null while not connected, when nobody is known to be online. */
  online(count: number | null): string;
  /** Under the list while not connected: the count before the connection was lost. */
  lastOnline(count: number): string;
  /** Under a member list that is not the whole room: how many of how many it shows. */
  showingMembers(shown: number, total: number): string;
  /** Under a list a summary could not keep exact: it may still show someone who left. */
  staleMembers: string;
  moreMembers: string;
  reloadMembers: string;
  loadingMembers: string;
  olderMessages: string;
  loadingOlder: string;
  /** The label on the user's own messages and name: 我 in Chinese, "me" in English. */
  me: string;
  sending: string;
  waitingToSend: string;
  joined(name: string): string;
  left(name: string): string;
  renamed(from: string, to: string): string;
  /** A large room's comings and goings, counted: "12 joined, 3 left". */
  presence(joined: number, left: number): string;
  /** Beside a member whose last connection closed: the name is kept for them for a while. */
  away: string;
  gap: string;
  nameLabel: string;
  inputLabel: string;
  inputPlaceholder: string;
  /** The composer's count near the limit: "1,950 / 2,000". */
  counter(count: number, max: number): string;
  /** Over messages that came while the reader was scrolled up: a button to the newest. */
  newBelow(count: number): string;
  send: string;
  messagesLabel: string;
  tooLong: string;
  /** Friendlier words for some server error codes; others show the server's own sentence. */
  errors: Partial<Record<ErrorCode, string>>;
}

export const TEXT: Record<Language, PageText> = {
  zh: {
    htmlLang: "zh-CN",
    heading: "聊天室",
    connecting: "正在连接…",
    connected: "已连接",
    reconnecting: (attempt) => `正在重连（第 ${attempt} 次尝试）`,
    nextTryIn: (seconds) => `，${seconds} 秒后重试`,
    offline: "离线",
    notConnected: "未连接",
    retryNow: "立即重试",
    noServer: (url, local) => [
      `${url} 没有聊天服务器应答。`,
      ...(local
        ? [
            "在聊天室的文件夹里运行 ",
            { code: "npm start" },
            " 启动服务器（Node 24 也可以直接运行 ",
            { code: "node server.ts" },
            "）。",
          ]
        : ["地址对吗？服务器启动了吗？"]),
    ],
    badServer: (given) => [
      "地址栏里的 ",
      { code: `?server=${given}` },
      " 不是 WebSocket 地址（应以 ws:// 或 wss:// 开头），所以没有连接任何服务器。改正它，或者删掉它。",
    ],
    online: (count) => `在线（${count ?? "—"}）`,
    lastOnline: (count) => `断线前 ${count} 人在线`,
    showingMembers: (shown, total) => `显示 ${shown} / ${total} 人`,
    staleMembers: "名单里可能还有已离开的人",
    moreMembers: "更多…",
    reloadMembers: "重新加载名单",
    loadingMembers: "正在加载…",
    olderMessages: "加载更早的消息",
    loadingOlder: "正在加载更早的消息…",
    me: "我",
    sending: "发送中…",
    waitingToSend: "等待发送",
    joined: (name) => `${name} 加入了聊天室`,
    left: (name) => `${name} 离开了聊天室`,
    renamed: (from, to) => `${from} 改名为 ${to}`,
    presence: (joined, left) =>
      [joined > 0 ? `${joined} 人加入` : "", left > 0 ? `${left} 人离开` : ""].filter((part) => part !== "").join("，"),
    away: "暂时离开",
    gap: "聊天记录已重置，可能有消息缺失",
    nameLabel: "名字",
    inputLabel: "消息",
    inputPlaceholder: "输入消息，Enter 发送，Shift+Enter 换行",
    counter: (count, max) => `${count.toLocaleString("zh-CN")} / ${max.toLocaleString("zh-CN")}`,
    newBelow: (count) => `${count} 条新消息 ↓`,
    send: "发送",
    messagesLabel: "聊天消息",
    tooLong: `消息太长了（最多 ${MAX_TEXT_LENGTH} 个字符）`,
    errors: {
      name_taken: "这个名字已经有人在用了",
      bad_name: "名字要有 1–32 个字符，不能有控制字符",
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
    notConnected: "Not connected",
    retryNow: "Retry now",
    noServer: (url, local) => [
      `No chat server answers at ${url}. `,
      ...(local
        ? [
            "Start one in the chat room's folder: ",
            { code: "npm start" },
            " (or ",
            { code: "node server.ts" },
            " on Node 24).",
          ]
        : ["Is the address right, and is the server running?"]),
    ],
    badServer: (given) => [
      { code: `?server=${given}` },
      " in the address bar is not a WebSocket address (ws:// or wss://), so nothing was connected. " +
        "Correct it, or remove it.",
    ],
    online: (count) => `Online (${count ?? "—"})`,
    lastOnline: (count) => `${count} online when last connected`,
    showingMembers: (shown, total) => `Showing ${shown} of ${total}`,
    staleMembers: "Some who left may still be listed",
    moreMembers: "More…",
    reloadMembers: "Reload the list",
    loadingMembers: "Loading…",
    olderMessages: "Load older messages",
    loadingOlder: "Loading older messages…",
    me: "me",
    sending: "sending…",
    waitingToSend: "waiting to send",
    joined: (name) => `${name} joined`,
    left: (name) => `${name} left`,
    renamed: (from, to) => `${from} is now ${to}`,
    presence: (joined, left) =>
      [joined > 0 ? `${joined} joined` : "", left > 0 ? `${left} left` : ""].filter((part) => part !== "").join(", "),
    away: "away",
    gap: "History was reset; some messages may be missing",
    nameLabel: "Name",
    inputLabel: "Message",
    inputPlaceholder: "Type a message: Enter sends, Shift+Enter starts a new line",
    counter: (count, max) => `${count.toLocaleString("en")} / ${max.toLocaleString("en")}`,
    newBelow: (count) => (count === 1 ? "1 new message ↓" : `${count} new messages ↓`),
    send: "Send",
    messagesLabel: "Chat messages",
    tooLong: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`,
    errors: {
      name_taken: "Someone else has that name",
      bad_name: "A name has 1-32 characters and no control characters",
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
  readonly you: string | null;
  /** The members the page shows by name, and the same with ids (and who is away); see memberListStatus. */
  readonly users: readonly string[];
  readonly members: readonly Member[];
  /** The server's counts: everyone in the room, and those connected. */
  readonly memberCount: number;
  readonly online: number;
  readonly memberListStatus: MemberListStatus;
  readonly olderMessages: OlderMessages;
  readonly lastSeq: number;
  readonly epoch: string | null;
  readonly outboxLength: number;
  readonly inspecting: boolean;
}

declare global {
  interface Window {
    chatClient?: ChatClientDebugView;
  }
}

/** The elements of client.html that the chat uses. */
interface ChatElements {
  heading: HTMLElement;
  status: HTMLElement;
  statusText: HTMLElement;
  statusName: HTMLElement;
  statusCountdown: HTMLElement;
  retry: HTMLButtonElement;
  serverHelp: HTMLElement;
  usersHeading: HTMLElement;
  users: HTMLUListElement;
  usersNote: HTMLElement;
  usersMore: HTMLButtonElement;
  older: HTMLButtonElement;
  messages: HTMLOListElement;
  newBelow: HTMLButtonElement;
  alert: HTMLElement;
  nameForm: HTMLFormElement;
  nameLabel: HTMLLabelElement;
  name: HTMLInputElement;
  composer: HTMLFormElement;
  inputLabel: HTMLLabelElement;
  input: HTMLTextAreaElement;
  counter: HTMLElement;
  send: HTMLButtonElement;
}

function findElement<Kind extends HTMLElement>(id: string, kind: { new (): Kind; prototype: Kind }): Kind {
  const found = document.getElementById(id);
  if (!(found instanceof kind)) throw new Error(`client.html has no <${kind.name}> with id "${id}"`);
  return found;
}

function findChatElements(): ChatElements {
  return {
    heading: findElement("heading", HTMLElement),
    status: findElement("status", HTMLElement),
    statusText: findElement("status-text", HTMLElement),
    statusName: findElement("status-name", HTMLElement),
    statusCountdown: findElement("status-countdown", HTMLElement),
    retry: findElement("retry", HTMLButtonElement),
    serverHelp: findElement("server-help", HTMLElement),
    usersHeading: findElement("users-heading", HTMLElement),
    users: findElement("users", HTMLUListElement),
    usersNote: findElement("users-note", HTMLElement),
    usersMore: findElement("users-more", HTMLButtonElement),
    older: findElement("older", HTMLButtonElement),
    messages: findElement("messages", HTMLOListElement),
    newBelow: findElement("new-below", HTMLButtonElement),
    alert: findElement("alert", HTMLElement),
    nameForm: findElement("name-form", HTMLFormElement),
    nameLabel: findElement("name-label", HTMLLabelElement),
    name: findElement("name", HTMLInputElement),
    composer: findElement("composer", HTMLFormElement),
    inputLabel: findElement("input-label", HTMLLabelElement),
    input: findElement("input", HTMLTextAreaElement),
    counter: findElement("counter", HTMLElement),
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

function createElement<Tag extends keyof HTMLElementTagNameMap>(
  tag: Tag,
  className: string,
): HTMLElementTagNameMap[Tag] {
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

/** One notice line: only a presence line's words and time ever change (summaries in a row add up in it). */
interface NoticeRow {
  element: HTMLLIElement;
  time: HTMLTimeElement;
  words: HTMLElement;
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
  private readonly elements: ChatElements;
  private readonly text: PageText;
  private readonly address: ServerAddress;
  /** In the browser's own locale and time zone, as the rest of its dates are. */
  private readonly timeFormat = new MessageTimeFormat();
  /** Lines currently in the list, by key: a message's id, or the transcript key of a notice. */
  private readonly messageRows = new Map<string, MessageRow>();
  private readonly noticeRows = new Map<string, NoticeRow>();
  private renderQueued = false;
  /** Scroll to the newest line on the next render even if the reader had scrolled up. */
  private scrollToNewest = true;
  private alertTimer: number | null = null;
  /** The users list as last drawn, to skip redrawing it when nothing changed. */
  private shownUsers = "";
  /** The help under the status as last drawn, for the same reason. */
  private shownHelp = "";
  /** The transcript key of the last line the reader saw at the bottom of the list; see countNewBelow. */
  private lastReadKey: string | null = null;

  constructor(elements: ChatElements, text: PageText, address: ServerAddress) {
    this.elements = elements;
    this.text = text;
    this.address = address;
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
    setText(elements.older, text.olderMessages);
    elements.input.placeholder = text.inputPlaceholder;
    elements.name.placeholder = text.nameLabel;
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
    this.renderStatus(connection);
    this.renderUsers(connection);
    this.renderName(connection);
    this.renderOlder(connection);
    this.renderMessages(connection);
    this.renderNewBelow(connection);
  }

  followNewest(): void {
    this.scrollToNewest = true;
  }

  renderStatus(connection: ChatConnection): void {
    const { status, statusText, statusName, statusCountdown, retry } = this.elements;
    const { state, attempt, nextAttemptAt } = connection;
    const nowhere = this.address.kind === "invalid";
    status.dataset.state = state;
    status.dataset.attempt = String(attempt);
    const labels: Record<ConnectionState, string> = {
      connecting: this.text.connecting,
      connected: this.text.connected,
      reconnecting: this.text.reconnecting(attempt),
      offline: nowhere ? this.text.notConnected : this.text.offline,
    };
    setText(statusText, labels[state]);
    // Apart, so that a phone's header can leave it out: the name field beside it says the same.
    setText(statusName, state === "connected" && connection.name !== null ? ` · ${connection.name}` : "");
    const waiting = state === "reconnecting" && nextAttemptAt !== null;
    const seconds = waiting ? Math.max(0, Math.ceil((nextAttemptAt - Date.now()) / 1000)) : 0;
    setText(statusCountdown, waiting ? this.text.nextTryIn(seconds) : "");
    // Without an address, retrying has nothing to try.
    retry.hidden = nowhere || !(waiting || state === "offline");
    this.renderServerHelp(serverHelp(this.address, state));
  }

  /** Where the page tries to connect and how to start a server there, or why it connects nowhere. */
  private renderServerHelp(help: ServerHelp): void {
    const { serverHelp: element } = this.elements;
    const signature = JSON.stringify(help);
    if (signature === this.shownHelp) return;
    this.shownHelp = signature;
    element.dataset.kind = help.kind;
    element.hidden = help.kind === "none";
    let parts: TextPart[] = [];
    if (help.kind === "no-answer") parts = this.text.noServer(help.url, help.local);
    if (help.kind === "invalid") parts = this.text.badServer(help.given);
    element.replaceChildren(
      ...parts.map((part) => {
        if (typeof part === "string") return part;
        const code = document.createElement("code");
        code.textContent = part.code;
        return code;
      }),
    );
  }

  /** The count under the composer near the limit; see composerCount. */
  renderCounter(): void {
    const { counter, input } = this.elements;
    const shown = composerCount(input.value);
    counter.hidden = shown === null;
    counter.dataset.over = String(shown?.over ?? false);
    setText(counter, shown === null ? "" : this.text.counter(shown.count, MAX_TEXT_LENGTH));
  }

  /** Whether the message list is scrolled (nearly) to its end. */
  private atBottom(): boolean {
    const list = this.elements.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  /**
   * "3 new messages ↓" while messages came in below a reader scrolled up;
   * gone once they are at the bottom, which also marks everything read.
   */
  renderNewBelow(connection: ChatConnection): void {
    const { newBelow } = this.elements;
    const { entries } = connection;
    if (this.atBottom()) this.lastReadKey = entries[entries.length - 1]?.key ?? null;
    const count = countNewBelow(entries, this.lastReadKey);
    newBelow.hidden = count === 0;
    newBelow.dataset.count = String(count);
    setText(newBelow, count === 0 ? "" : this.text.newBelow(count));
  }

  /** The new-messages button: to the newest line, which marks them read. */
  showNewest(connection: ChatConnection): void {
    const list = this.elements.messages;
    list.scrollTop = list.scrollHeight;
    this.renderNewBelow(connection);
  }

  showAlert(message: string, code: string | null = null): void {
    const { alert } = this.elements;
    setText(alert, message);
    alert.hidden = false;
    // Which server error the line shows, for tests and for styling.
    if (code === null) delete alert.dataset.code;
    else alert.dataset.code = code;
    if (this.alertTimer !== null) window.clearTimeout(this.alertTimer);
    this.alertTimer = window.setTimeout(() => this.hideAlert(), 8000);
  }

  showServerError(error: ServerError): void {
    const { errors } = this.text;
    // The server may send a code this page has no words for, even one named like an Object method.
    const known = Object.prototype.hasOwnProperty.call(errors, error.code);
    const words = known ? errors[error.code as ErrorCode] : undefined;
    this.showAlert(words ?? (error.message || error.code), error.code);
  }

  private hideAlert(): void {
    const { alert } = this.elements;
    alert.hidden = true;
    alert.textContent = "";
    delete alert.dataset.code;
  }

  private renderUsers(connection: ChatConnection): void {
    const { users, usersHeading, usersNote, usersMore } = this.elements;
    const { members, you, memberListStatus: status, nextMembersOffset, onlineKnown, lastKnownOnline } = connection;
    // Without a connection nobody is known to be online: "0" would say everyone left.
    setText(usersHeading, this.text.online(onlineKnown ? connection.online : null));
    // A list that is not the whole room says so, and offers the rest (or, if it may show leavers, a fresh start).
    const note = [
      !onlineKnown && lastKnownOnline !== null ? this.text.lastOnline(lastKnownOnline) : "",
      status === "complete" ? "" : this.text.showingMembers(members.length, connection.memberCount),
      status === "stale" ? this.text.staleMembers : "",
    ].filter((part) => part !== "");
    setText(usersNote, note.join(" · "));
    usersNote.hidden = note.length === 0;
    users.dataset.status = status;
    usersMore.hidden = nextMembersOffset === null || connection.state !== "connected";
    usersMore.disabled = connection.membersLoading;
    const moreLabel = nextMembersOffset === 0 ? this.text.reloadMembers : this.text.moreMembers;
    setText(usersMore, connection.membersLoading ? this.text.loadingMembers : moreLabel);
    // The list is short and not a live region, so it is simply rebuilt, but only when it changed.
    const signature = JSON.stringify([you, members]);
    if (signature === this.shownUsers) return;
    this.shownUsers = signature;
    users.replaceChildren(
      ...members.map((member) => {
        const isMe = member.sid === you;
        const item = createElement("li", isMe ? "user me" : "user");
        item.classList.toggle("away", member.away);
        item.dataset.name = member.name;
        item.dataset.sid = member.sid;
        // Its own direction, from its own letters: a Hebrew or Arabic name is not reordered with what follows.
        const name = createElement("span", "user-name");
        name.dir = "auto";
        name.textContent = member.name;
        item.append(name);
        if (isMe) item.append(" ", this.createMeBadge());
        if (member.away) {
          const label = createElement("span", "away-label");
          label.textContent = this.text.away;
          item.append(" ", label);
        }
        return item;
      }),
    );
  }

  private renderName(connection: ChatConnection): void {
    const { name } = this.elements;
    // Never overwrite what the user is typing.
    if (document.activeElement !== name) name.value = connection.name ?? "";
  }

  /** The button above the messages, for older ones; scrolling to the top does the same. */
  private renderOlder(connection: ChatConnection): void {
    const { older } = this.elements;
    const status = connection.olderMessages;
    older.hidden = status !== "available" && status !== "loading";
    older.disabled = status === "loading";
    older.dataset.status = status;
    setText(older, status === "loading" ? this.text.loadingOlder : this.text.olderMessages);
  }

  private renderMessages(connection: ChatConnection): void {
    const list = this.elements.messages;
    const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const forced = this.scrollToNewest;
    const followNewest = forced || wasAtBottom;
    this.scrollToNewest = false;
    // The row to keep still if lines are added above it (an older page) or
    // taken away: the first one in view, or at the bottom the first of all,
    // so that the rows in view stay where they are.
    const previousFirst = list.firstElementChild;
    const anchor = followNewest ? previousFirst : this.firstRowInView(list);
    const anchorTop = anchor?.getBoundingClientRect().top ?? 0;

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
        wanted.push(this.noticeRow(entry));
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
      // Before the first welcome there is no name yet; the 我 badge says whose it is.
      const from = connection.name ?? connection.wantedName ?? "";
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

    const grewAbove = previousFirst !== null && previousFirst.isConnected && previousFirst !== list.firstElementChild;
    if (!forced && anchor !== null && anchor.isConnected && (!followNewest || grewAbove)) {
      list.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    } else if (followNewest) {
      list.scrollTop = list.scrollHeight;
    }
  }

  private firstRowInView(list: HTMLElement): Element | null {
    const top = list.getBoundingClientRect().top;
    for (const row of list.children) if (row.getBoundingClientRect().bottom > top) return row;
    return null;
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
    row.time.hidden = line.time === null;
    if (line.time !== null) {
      const isoTime = new Date(line.time).toISOString();
      if (row.time.dateTime !== isoTime) row.time.dateTime = isoTime;
      const long = this.timeFormat.long(line.time);
      if (row.time.title !== long) row.time.title = long;
      setText(row.time, this.timeFormat.format(line.time, Date.now()));
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
      me: this.createMeBadge(),
      time: createElement("time", "time"),
      mark: createElement("span", "mark"),
      text: createElement("p", "text"),
    };
    // Names and texts take their direction from their own first strong letter, so
    // "שלום עולם, 123 abc!" reads right to left and is not reordered by the page's left-to-right.
    row.from.dir = "auto";
    row.text.dir = "auto";
    meta.append(row.from, row.me, row.time, row.mark);
    element.append(meta, row.text);
    return row;
  }

  /** The mark on the user's own messages and name: 我, or "me" in English. */
  private createMeBadge(): HTMLSpanElement {
    const badge = createElement("span", "me-badge");
    badge.textContent = this.text.me;
    return badge;
  }

  private noticeRow(notice: Extract<TranscriptEntry, { kind: "notice" }>): HTMLLIElement {
    let row = this.noticeRows.get(notice.key);
    if (row === undefined) {
      const element = createElement("li", "notice");
      element.dataset.kind = notice.notice;
      row = { element, time: createElement("time", "time"), words: createElement("span", "words") };
      element.append(row.time, " ", row.words);
      this.noticeRows.set(notice.key, row);
    }
    const isoTime = new Date(notice.time).toISOString();
    if (row.time.dateTime !== isoTime) row.time.dateTime = isoTime;
    setText(row.time, this.timeFormat.format(notice.time, Date.now()));
    setText(row.words, this.noticeWords(notice));
    return row.element;
  }

  private noticeWords(notice: Extract<TranscriptEntry, { kind: "notice" }>): string {
    switch (notice.notice) {
      case "joined":
        return this.text.joined(notice.name);
      case "left":
        return this.text.left(notice.name);
      case "renamed":
        return this.text.renamed(notice.name, notice.to ?? "");
      case "gap":
        return this.text.gap;
      case "presence":
        return this.text.presence(notice.joined, notice.left);
    }
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

/** The tabs of this page's origin, to notice a duplicated tab; null where BroadcastChannel is missing. */
function openTabChannel(): TabChannel | null {
  if (typeof BroadcastChannel !== "function") return null;
  try {
    const channel = new BroadcastChannel("chatRoom.session");
    return {
      post: (message) => channel.postMessage(message),
      listen: (listener) => channel.addEventListener("message", (event) => listener(event.data)),
    };
  } catch {
    return null;
  }
}

const browserTimers: Timers = {
  setTimeout: (callback, delayMs) => window.setTimeout(callback, delayMs),
  clearTimeout: (timerId) => window.clearTimeout(timerId),
  now: () => Date.now(),
};

/**
 * Builds the chat on client.html around a new ChatConnection, and returns the
 * connection, not yet started. `observer` watches it (the inspector does);
 * `onChange` hears of every change, as the chat's own view does (the frame lab).
 */
function createChatPage(
  language: Language,
  observer: ConnectionObserver | undefined,
  onChange: () => void = () => {},
): ChatConnection {
  const elements = findChatElements();
  const text = TEXT[language];
  const address = resolveServer(location);
  const view = new ChatView(elements, text, address);
  view.applyLanguage();

  const connection: ChatConnection = new ChatConnection({
    serverUrl: address.kind === "invalid" ? null : address.url,
    tabChannel: openTabChannel(),
    createSocket: (url) => new WebSocket(url),
    storage: openSessionStorage(),
    timers: browserTimers,
    timing: readTimingFromQuery(location.search),
    isOnline: () => navigator.onLine,
    onChange: () => {
      view.scheduleRender(connection);
      onChange();
    },
    onServerError: (error) => view.showServerError(error),
    observer,
  });

  elements.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const outcome = connection.send(elements.input.value);
    if (outcome === "too_long") view.showAlert(text.tooLong);
    if (outcome === "sent" || outcome === "queued") {
      elements.input.value = "";
      fitInput();
      view.renderCounter();
      view.followNewest();
    }
  });
  // The box grows with its lines (up to the max-height in client.html), and shrinks back after sending.
  const fitInput = () => {
    const { input } = elements;
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
  };
  elements.input.addEventListener("input", () => {
    fitInput();
    view.renderCounter();
  });
  elements.input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey) return;
    // Enter also picks a candidate in a Chinese (or any) input method. That
    // Enter belongs to the input method and must not send a half-typed line.
    // keyCode 229 is how some browsers say the same as isComposing.
    if (event.isComposing || event.keyCode === 229) return;
    // Enter sends; Shift+Enter is left to the box, which starts a new line.
    event.preventDefault();
    elements.composer.requestSubmit();
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
  elements.older.addEventListener("click", () => connection.loadOlder());
  elements.newBelow.addEventListener("click", () => view.showNewest(connection));
  elements.usersMore.addEventListener("click", () => connection.loadMoreMembers());
  // Scrolling up to the top asks for older messages. Only a move upward
  // counts: the page's own scrolling (to the newest line, or keeping the
  // place after a page was added above) goes down, so it never asks by itself.
  let lastScrollTop = elements.messages.scrollTop;
  elements.messages.addEventListener(
    "scroll",
    () => {
      const { scrollTop } = elements.messages;
      if (scrollTop < lastScrollTop && scrollTop < 40) connection.loadOlder();
      lastScrollTop = scrollTop;
      // Reaching the bottom reads what came in meanwhile.
      view.renderNewBelow(connection);
    },
    { passive: true },
  );
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
    get you() {
      return connection.you;
    },
    get users() {
      return connection.members.map((member) => member.name);
    },
    get members() {
      return connection.members.map((member) => ({ ...member }));
    },
    get memberCount() {
      return connection.memberCount;
    },
    get online() {
      return connection.online;
    },
    get memberListStatus() {
      return connection.memberListStatus;
    },
    get olderMessages() {
      return connection.olderMessages;
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
    get inspecting() {
      return connection.inspecting;
    },
  });

  view.render(connection);
  return connection;
}

// ═══════════════════════════════════════════════════════════════════════════
// Part two: the frame inspector
// ═══════════════════════════════════════════════════════════════════════════
//
// Browsers show a WebSocket's messages, never its frames. The server can: a
// page that sends {"type":"inspect","on":true} gets a `trace` message for
// every frame of its own connection, as the server read it (sent by the page:
// masked) or wrote it (unmasked). The inspector hears of those, and of the
// connection's own events (state changes, heartbeat round trips, retries,
// close codes), through the ChatConnection's observer, and shows them.

// ---------------------------------------------------------------------------
// 11. InspectorLog
// ---------------------------------------------------------------------------
//
// InspectorLog turns ConnectionEvents into the entries of the inspector panel.
// It formats only: nothing here changes what is sent.

/** Entries kept; the oldest go first. Each is a few DOM nodes, and a busy room adds two per message. */
export const INSPECTOR_LIMIT = 500;

/** How many payload bytes an entry shows in hex; the text line shows all the server sent (up to 128). */
const HEX_BYTES_SHOWN = 16;

/**
 * Texts sent but not yet matched with their trace. A server that never sends
 * traces would let them pile up; past this many, matching stops (see pageSent).
 */
const UNMATCHED_LIMIT = 100;

/**
 * §7.4: what the close codes mean. 1005 and 1006 never travel in a frame: the
 * browser reports them. A copy of server.ts's closeCodeNames (see section 1).
 */
export const CLOSE_CODE_NAMES: Readonly<Record<number, string>> = {
  1000: "normal closure",
  1001: "going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status received",
  1006: "abnormal closure",
  1007: "invalid frame payload data",
  1008: "policy violation",
  1009: "message too big",
  1010: "mandatory extension",
  1011: "internal error",
  1012: "service restart",
  1013: "try again later",
  1014: "bad gateway",
  1015: "TLS handshake",
};

/** "received" is page → server, "sent" is server → page, as the server names them. */
export type InspectorDirection = "received" | "sent" | "handshake" | "client";

/** One labelled line of an entry: "MASK" and "1 · …". */
export interface InspectorField {
  label: string;
  value: string;
}

/**
 * One entry of the panel. An entry is never changed in place: the one time it
 * changes (the server's note about the message a frame ended has come), the
 * log holds a new object with the same id, and the page redraws that entry.
 */
export interface InspectorEntry {
  /** Increases by one per entry and never repeats, so the page can keep one element per entry. */
  id: number;
  time: number;
  direction: InspectorDirection;
  /** The frame's opcode name ("text", "ping", …); null for the handshake and the page's own events. */
  opcode: string | null;
  /** Which of the page's own events this is; null for frames and the handshake. */
  kind: ClientEvent["kind"] | null;
  /** One line, always shown: what this frame or event is. */
  summary: string;
  fields: InspectorField[];
  /** Preformatted lines: the handshake request, key arithmetic and response. */
  lines: string[];
  /** The server's own description (as `--trace` prints it, with its note's line); null for the page's events. */
  serverLine: string | null;
}

/** A frame that ended a message, waiting for the server's note about that message (see InspectorLog.note). */
interface AwaitingNote {
  id: number;
  frame: TraceFrameFields;
  knownText: string | null;
}

/** The inspector's words in one language. Protocol names (FIN, MASK, opcode names) stay as the RFC writes them. */
export interface InspectorWords {
  toggle: string;
  heading: string;
  clear: string;
  framesLabel: string;
  pageToServer: string;
  serverToPage: string;
  handshake: string;
  thisPage: string;
  fin(fin: boolean): string;
  rsv(compressed: boolean): string;
  /** The server's note: it sent this message plainly although compression was agreed, as too short to gain. */
  sentPlain(threshold: number): string;
  sentPlainWindow(windowBits: number): string;
  /** The server's note on a compressed message: its size on the wire and as a message, `percent` = wire / message. */
  deflate(direction: "received" | "sent", wireLength: number, length: number, percent: number): string;
  /** In the summary line of a compressed message: its own size. */
  inflatedSize(length: number): string;
  mask(masked: boolean): string;
  length(length: number, bits: 7 | 16 | 64): string;
  /** unmasked = masked XOR key, byte by byte; one byte worked as an example. */
  xor(masked: string, key: string, unmasked: string): string;
  moreBytes(count: number): string;
  noPayload: string;
  /** The browser compressed what the page sent; the text shown is what the page handed to send(). */
  compressedByPage: string;
  /** The server compressed it; the text shown is what the browser inflated it to. */
  compressedByServer: string;
  compressedUnknown: string;
  notText: string;
  closeReason(reason: string): string;
  // What a frame means, from its JSON or its opcode.
  say(text: string): string;
  message(from: string, text: string): string;
  appPing: string;
  appPong: string;
  welcome(name: string): string;
  joined(name: string): string;
  left(name: string): string;
  renamed(from: string, to: string): string;
  rename(name: string): string;
  away(name: string): string;
  back(name: string): string;
  error(code: string): string;
  inspectMessage(on: boolean): string;
  /** The frame lab's request and the server's answer (part three). */
  decodeRequest(from: string): string;
  decodedAnswer(outcome: string, lines: number): string;
  /** A large room's second of comings and goings, in one frame. */
  presenceSummary(joined: number, left: number, online: number): string;
  membersRequest(offset: number): string;
  /** `count` members from position `offset` (0-based) of `total`. */
  membersPage(offset: number, count: number, total: number): string;
  historyRequest(before: number): string;
  historyPage(count: number, before: number, more: boolean): string;
  protocolPing: string;
  protocolPong: string;
  /** Why there are protocol pings and pongs, which no JavaScript ever sees; for the "note" line. */
  pingNote(direction: "received" | "sent"): string;
  pongNote(direction: "received" | "sent"): string;
  closeFrame(direction: "received" | "sent"): string;
  continuation: string;
  // The page's own events.
  state(from: ConnectionState, to: ConnectionState): string;
  opening(url: string): string;
  rtt(roundTripMs: number): string;
  retry(attempt: number, delayMs: number): string;
  closed(code: string, reason: string, wasClean: boolean | null, current: boolean): string;
  socketError: string;
  silent(timeoutMs: number): string;
  notWelcomed(timeoutMs: number): string;
  inspect(on: boolean, connected: boolean): string;
}

/** The summary line stays one line on a phone; the text field below it has the rest. */
const SUMMARY_CHARACTERS = 80;

/** At most `limit` characters (as a person counts them, see characterCount), then "…". */
function shorten(text: string, limit: number): string {
  const characters = Array.from(text);
  return characters.length <= limit ? text : `${characters.slice(0, limit - 1).join("")}…`;
}

/** "1 KiB" for a whole number of KiB, else "1000 bytes" (in the words' own `unit`). */
function byteSize(bytes: number, unit: string): string {
  return bytes > 0 && bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} ${unit}`;
}

/** Seconds with at most one decimal: 1.5 s, 30 s. */
function seconds(milliseconds: number): string {
  return String(Math.round(milliseconds / 100) / 10);
}

export const INSPECTOR_WORDS: Record<Language, InspectorWords> = {
  zh: {
    toggle: "帧检查器",
    heading: "帧检查器",
    clear: "清空",
    framesLabel: "这个连接的帧",
    pageToServer: "页面 → 服务器",
    serverToPage: "服务器 → 页面",
    handshake: "握手",
    thisPage: "本页",
    fin: (fin) => (fin ? "1 · 这条消息的最后一帧" : "0 · 这条消息后面还有帧"),
    rsv: (compressed) => (compressed ? " · RSV1=1：用 permessage-deflate 压缩（RFC 7692 §6）" : " · 没有扩展用到它们"),
    sentPlain: (threshold) => ` · 未压缩发送：短于 ${byteSize(threshold, "字节")}（--deflate-threshold），不值得压缩`,
    sentPlainWindow: (windowBits) =>
      ` · 未压缩发送：客户端要求 server_max_window_bits=${windowBits}，而 zlib 只能用 2^9 字节以上的窗口压缩`,
    deflate: (direction, wireLength, length, percent) =>
      direction === "received"
        ? `${wireLength} 字节 deflate 数据解压为 ${length} 字节（${percent}%）；上面的文本是服务器解压出的内容`
        : `${length} 字节压缩为 ${wireLength} 字节（${percent}%）；上面的文本是压缩前的消息`,
    inflatedSize: (length) => `解压后 ${length} B`,
    mask: (masked) => (masked ? "1 · 浏览器发出的每一帧都必须加掩码（RFC 6455 §5.3）" : "0 · 服务器发出的帧从不加掩码"),
    length: (length, bits) =>
      bits === 7
        ? `${length} 字节 · 直接写在 7 位长度字段里（0–125）`
        : `${length} 字节 · 7 位字段写 ${bits === 16 ? 126 : 127}，真正的长度在后面的 ${bits} 位里`,
    xor: (masked, key, unmasked) => `逐字节与密钥异或：${masked} ⊕ ${key} = ${unmasked}`,
    moreBytes: (count) => ` … 另有 ${count} 字节`,
    noPayload: "没有负载",
    compressedByPage:
      "浏览器压缩了这条消息（permessage-deflate），线上是 deflate 数据；上面的文本是本页交给 send() 的内容",
    compressedByServer: "服务器压缩了这条消息（permessage-deflate）；上面的文本是浏览器解压后的内容",
    compressedUnknown: "已压缩（permessage-deflate）：线上是 deflate 数据，不是可读文本",
    notText: "不是可读文本",
    closeReason: (reason) => ` · 原因 "${reason}"`,
    say: (text) => `聊天消息 "${text}"`,
    message: (from, text) => `${from} 的聊天消息 "${text}"`,
    appPing: "心跳 ping（应用层：文本帧里的 JSON）",
    appPong: "心跳 pong（应用层：文本帧里的 JSON）",
    welcome: (name) => `欢迎：你是 ${name}`,
    joined: (name) => `${name} 加入`,
    left: (name) => `${name} 离开`,
    renamed: (from, to) => `${from} 改名为 ${to}`,
    rename: (name) => `请求改名为 ${name}`,
    away: (name) => `${name} 的最后一个连接断开了：名字为 TA 保留一段时间`,
    back: (name) => `${name} 回来了（同一个会话）`,
    error: (code) => `错误 ${code}`,
    inspectMessage: (on) => (on ? "请服务器报告这个连接的帧" : "请服务器不再报告帧"),
    decodeRequest: (from) => `帧实验室：请服务器把这些字节当作${from === "server" ? "服务器" : "客户端"}的帧解码`,
    decodedAnswer: (outcome, lines) => `帧实验室的回答：${FRAME_LAB_WORDS.zh.outcome(outcome)}（${lines} 行）`,
    presenceSummary: (joined, left, online) => `这一秒：${joined} 人加入，${left} 人离开，${online} 人在线`,
    membersRequest: (offset) => `请求成员名单（从第 ${offset + 1} 人起）`,
    membersPage: (offset, count, total) =>
      count === 0
        ? `成员名单：共 ${total} 人，这一页是空的`
        : `成员名单：第 ${offset + 1}–${offset + count} 人，共 ${total} 人`,
    historyRequest: (before) => `请求 seq ${before} 之前的消息`,
    historyPage: (count, before, more) =>
      `seq ${before} 之前的 ${count} 条消息` + (more ? "（服务器还有更早的）" : "（没有更早的了）"),
    protocolPing: "协议层 ping（opcode 0x9）",
    protocolPong: "协议层 pong（opcode 0xA）",
    pingNote: (direction) =>
      direction === "sent"
        ? "服务器定期发 ping 确认页面还在（默认每 30 秒）；浏览器自动回复，JavaScript 看不到这两帧"
        : "对方必须尽快回复同样负载的 pong",
    pongNote: (direction) =>
      direction === "received" ? "浏览器自动回复服务器的 ping；JavaScript 看不到它" : "回复页面的 ping，负载相同",
    closeFrame: (direction) => (direction === "received" ? "关闭帧：页面要结束连接" : "关闭帧：服务器要结束连接"),
    continuation: "分片消息的后续帧",
    state: (from, to) => `状态：${from} → ${to}`,
    opening: (url) => `打开连接 ${url}`,
    rtt: (roundTripMs) => `心跳往返 ${roundTripMs} 毫秒（发出 ping 到收到 pong）`,
    retry: (attempt, delayMs) => `第 ${attempt} 次重连，${seconds(delayMs)} 秒后（指数退避加随机抖动）`,
    closed: (code, reason, wasClean, current) =>
      `连接关闭：${code}` +
      (reason === "" ? "" : ` · 原因 "${reason}"`) +
      (wasClean === false ? " · 没有完成关闭握手" : "") +
      (current ? "" : " · （已放弃的旧连接）"),
    socketError: "连接出错（浏览器不给细节，随后会有 close 事件）",
    silent: (timeoutMs) => `心跳 ${seconds(timeoutMs)} 秒内没有回应：放弃这个连接`,
    notWelcomed: (timeoutMs) => `${seconds(timeoutMs)} 秒内没有收到 welcome：放弃这个连接`,
    inspect: (on, connected) =>
      on
        ? "帧检查器已打开" +
          (connected
            ? "：从现在起服务器报告这个连接的每一帧（握手只在连接时保留，下次连接时才能看到）"
            : "：下次连接时从握手开始报告")
        : "帧检查器已关闭",
  },
  en: {
    toggle: "Frames",
    heading: "Frame inspector",
    clear: "Clear",
    framesLabel: "Frames of this connection",
    pageToServer: "page → server",
    serverToPage: "server → page",
    handshake: "opening handshake",
    thisPage: "this page",
    fin: (fin) => (fin ? "1 · the last frame of its message" : "0 · more frames of this message follow"),
    rsv: (compressed) =>
      compressed ? " · RSV1=1: compressed with permessage-deflate (RFC 7692 §6)" : " · no extension uses them",
    sentPlain: (threshold) =>
      ` · sent uncompressed: shorter than ${byteSize(threshold, "bytes")} (--deflate-threshold), ` +
      "not worth compressing",
    sentPlainWindow: (windowBits) =>
      ` · sent uncompressed: the client asked for server_max_window_bits=${windowBits}, ` +
      "and zlib deflates only with windows of 2^9 bytes or more",
    deflate: (direction, wireLength, length, percent) =>
      direction === "received"
        ? `${wireLength} bytes of deflate data inflate to ${length} (${percent}%); ` +
          "the text above is what the server inflated"
        : `${length} bytes deflated to ${wireLength} (${percent}%); the text above is the message before compression`,
    inflatedSize: (length) => `${length} B inflated`,
    mask: (masked) =>
      masked ? "1 · a browser must mask every frame it sends (RFC 6455 §5.3)" : "0 · a server never masks",
    length: (length, bits) =>
      bits === 7
        ? `${length} bytes · in the 7-bit length field itself (0–125)`
        : `${length} bytes · the 7-bit field says ${bits === 16 ? 126 : 127}, the length follows in ${bits} bits`,
    xor: (masked, key, unmasked) => `each byte XOR the key byte in turn: ${masked} ⊕ ${key} = ${unmasked}`,
    moreBytes: (count) => ` … +${count} bytes`,
    noPayload: "no payload",
    compressedByPage:
      "the browser compressed this message (permessage-deflate), so the wire carries deflate data; " +
      "the text above is what this page gave to send()",
    compressedByServer:
      "the server compressed this message (permessage-deflate); the text above is what the browser inflated it to",
    compressedUnknown: "compressed (permessage-deflate): deflate data, not readable text",
    notText: "not readable text",
    closeReason: (reason) => ` · reason "${reason}"`,
    say: (text) => `chat message "${text}"`,
    message: (from, text) => `chat message from ${from}: "${text}"`,
    appPing: "heartbeat ping (app level: JSON in a text frame)",
    appPong: "heartbeat pong (app level: JSON in a text frame)",
    welcome: (name) => `welcome: you are ${name}`,
    joined: (name) => `${name} joined`,
    left: (name) => `${name} left`,
    renamed: (from, to) => `${from} is now ${to}`,
    rename: (name) => `asks to be called ${name}`,
    away: (name) => `${name}'s last connection closed: the name is kept for them for a while`,
    back: (name) => `${name} is back (same session)`,
    error: (code) => `error ${code}`,
    inspectMessage: (on) =>
      on ? "asks the server to report this connection's frames" : "asks the server to stop reporting frames",
    decodeRequest: (from) => `frame lab: asks the server to decode these bytes as ${from}'s frames`,
    decodedAnswer: (outcome, lines) => `frame lab's answer: ${FRAME_LAB_WORDS.en.outcome(outcome)} (${lines} lines)`,
    presenceSummary: (joined, left, online) => `this second: ${joined} joined, ${left} left, ${online} online`,
    membersRequest: (offset) => `asks for the member list from member ${offset + 1}`,
    membersPage: (offset, count, total) =>
      count === 0
        ? `member list: ${total} in all, an empty page`
        : `members ${offset + 1}–${offset + count} of ${total}`,
    historyRequest: (before) => `asks for the messages before seq ${before}`,
    historyPage: (count, before, more) =>
      `${count} messages before seq ${before}` + (more ? " (the server keeps older ones)" : " (no older ones)"),
    protocolPing: "protocol-level ping (opcode 0x9)",
    protocolPong: "protocol-level pong (opcode 0xA)",
    pingNote: (direction) =>
      direction === "sent"
        ? "the server checks that the page is still there (every 30 s by default); " +
          "the browser answers by itself, and JavaScript sees neither frame"
        : "the other side must answer soon with a pong carrying the same payload",
    pongNote: (direction) =>
      direction === "received"
        ? "the browser answers the server's ping by itself; JavaScript never sees it"
        : "the answer to the page's ping, with the same payload",
    closeFrame: (direction) =>
      direction === "received"
        ? "close frame: the page ends the connection"
        : "close frame: the server ends the connection",
    continuation: "a later frame of a fragmented message",
    state: (from, to) => `state: ${from} → ${to}`,
    opening: (url) => `opening ${url}`,
    rtt: (roundTripMs) => `heartbeat round trip ${roundTripMs} ms (ping sent to pong received)`,
    retry: (attempt, delayMs) =>
      `reconnect attempt ${attempt} in ${seconds(delayMs)} s (exponential backoff, random jitter)`,
    closed: (code, reason, wasClean, current) =>
      `socket closed: ${code}` +
      (reason === "" ? "" : ` · reason "${reason}"`) +
      (wasClean === false ? " · closing handshake not completed" : "") +
      (current ? "" : " · (an earlier socket, already given up)"),
    socketError: "socket error (the browser gives no details; a close event follows)",
    silent: (timeoutMs) => `no answer to the heartbeat within ${seconds(timeoutMs)} s: this socket is given up`,
    notWelcomed: (timeoutMs) => `no welcome within ${seconds(timeoutMs)} s: this socket is given up`,
    inspect: (on, connected) =>
      on
        ? "inspector on" +
          (connected
            ? ": the server reports every frame of this connection from now on " +
              "(the handshake is kept only when a connection opens, so it shows from the next one)"
            : ": the next connection is reported from its handshake on")
        : "inspector off",
  },
};

/**
 * "7f 9f 4d" or "7f9f4d" → bytes. The trace was checked on arrival
 * (readTraceReport), so there is an even number of hex digits.
 */
export function hexToBytes(hex: string): Uint8Array {
  const pairs = hex.replace(/ /g, "").match(/../g) ?? [];
  return Uint8Array.from(pairs, (pair) => parseInt(pair, 16));
}

/** Bytes as spaced hex, at most `limit` of them, then "…". */
export function bytesToHex(bytes: Uint8Array, limit = bytes.length): string {
  const shown = Array.from(bytes.subarray(0, limit), (byte) => byte.toString(16).padStart(2, "0"));
  return shown.join(" ") + (bytes.length > limit ? " …" : "");
}

/** "1000 (normal closure)". */
export function describeCloseCode(code: number): string {
  return `${code} (${CLOSE_CODE_NAMES[code] ?? (code >= 4000 ? "application's own code" : "unknown")})`;
}

/**
 * The start of a payload as text, or null if it is not text. `totalLength`
 * tells whether the bytes are only a prefix: a prefix may stop in the middle
 * of a character, which is cut off rather than counted as invalid.
 */
export function previewText(bytes: Uint8Array, totalLength: number): string | null {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  // A UTF-8 character is at most 4 bytes, so at most 3 belong to a cut one.
  const shortest = bytes.length < totalLength ? Math.max(0, bytes.length - 3) : bytes.length;
  for (let end = bytes.length; end >= shortest; end--) {
    let text: string;
    try {
      text = decoder.decode(bytes.subarray(0, end));
    } catch {
      continue;
    }
    // Control characters other than newline and tab mean this is not text meant for people.
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text)) return null;
    return text;
  }
  return null;
}

/** What a chat JSON message means, in a few words; null if it is not one this room uses. */
function describeChatJson(text: string, words: InspectorWords): string | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isRecord(value)) return null;
  const asText = (field: unknown): string => (typeof field === "string" ? field : "");
  const asCount = (field: unknown): number => (isCount(field) ? field : 0);
  switch (value.type) {
    case "say":
      return words.say(asText(value.text));
    case "message":
      return words.message(asText(value.from), asText(value.text));
    case "ping":
      return words.appPing;
    case "pong":
      return words.appPong;
    case "welcome":
      return words.welcome(asText(value.name));
    case "joined":
      return words.joined(asText(value.name));
    case "left":
      return words.left(asText(value.name));
    case "away":
      return words.away(asText(value.name));
    case "back":
      return words.back(asText(value.name));
    case "renamed":
      return words.renamed(asText(value.from), asText(value.to));
    case "rename":
      return words.rename(asText(value.name));
    case "error":
      return words.error(asText(value.code));
    case "inspect":
      return words.inspectMessage(value.on !== false);
    case "decode":
      return words.decodeRequest(value.from === "server" ? "server" : "client");
    case "decoded":
      return words.decodedAnswer(asText(value.outcome), Array.isArray(value.lines) ? value.lines.length : 0);
    case "presence":
      return words.presenceSummary(asCount(value.joinedCount), asCount(value.leftCount), asCount(value.online));
    // The request and its answer share a type; only the answer carries the list.
    case "members":
      return Array.isArray(value.members)
        ? words.membersPage(asCount(value.offset), value.members.length, asCount(value.memberCount))
        : words.membersRequest(asCount(value.offset));
    case "history":
      return Array.isArray(value.messages)
        ? words.historyPage(value.messages.length, asCount(value.before), value.more === true)
        : words.historyRequest(asCount(value.before));
    default:
      return null;
  }
}

/** Whether a text the page sent switches the inspector: true (on), false (off), or null (neither). */
function inspectSwitch(text: string): boolean | null {
  try {
    const value: unknown = JSON.parse(text);
    return isRecord(value) && value.type === "inspect" ? value.on !== false : null;
  } catch {
    return null;
  }
}

/** Data frames carry messages; 0x8 and up are control frames (close, ping, pong). */
function isDataOpcode(opcode: number): boolean {
  return opcode === 0x0 || opcode === 0x1 || opcode === 0x2;
}

/**
 * The labelled lines of one traced frame. `knownText` is the whole message
 * when the page knows it from elsewhere (see InspectorLog.trace). `note` is
 * the server's note under the frame that ends a message, once it has come: it
 * holds a compressed message's first bytes as they were before compression,
 * and why a short message the server sent was not compressed.
 */
export function describeTraceFrame(
  frame: TraceFrameFields,
  direction: "received" | "sent",
  knownText: string | null,
  words: InspectorWords,
  note: TraceNoteFields | null = null,
): { summary: string; fields: InspectorField[] } {
  const onWire = hexToBytes(frame.onWire);
  const payload = hexToBytes(frame.payload);
  const compressed = frame.rsv1;
  // The note tells the message's own bytes only for a compressed one; a plain one's are in the frame. Only
  // the first frame of a message carries RSV1 (RFC 7692 §6.1), and the note is under the last.
  const inflated = note?.compressed === true ? note : null;
  const rsvBits = `${frame.rsv1 ? 1 : 0} ${frame.rsv2 ? 1 : 0} ${frame.rsv3 ? 1 : 0}`;
  const plain = note !== null && !note.compressed && !compressed ? note : null;
  const rsvMeaning =
    plain?.windowBits !== undefined
      ? words.sentPlainWindow(plain.windowBits)
      : plain?.threshold !== undefined
        ? words.sentPlain(plain.threshold)
        : words.rsv(compressed);
  const fields: InspectorField[] = [
    { label: "FIN", value: words.fin(frame.fin) },
    { label: "RSV1-3", value: rsvBits + rsvMeaning },
    { label: "opcode", value: `0x${frame.opcode.toString(16)} · ${frame.opcodeName}` },
    { label: "MASK", value: words.mask(frame.masked) },
    { label: "length", value: words.length(frame.length, frame.lengthBits) },
  ];
  const more = frame.length > HEX_BYTES_SHOWN ? words.moreBytes(frame.length - HEX_BYTES_SHOWN) : "";
  const shownHex = (bytes: Uint8Array) => bytesToHex(bytes.subarray(0, HEX_BYTES_SHOWN)) + more;
  if (frame.maskKey !== null) {
    const key = hexToBytes(frame.maskKey);
    fields.push({ label: "masking key", value: bytesToHex(key) });
    if (frame.length > 0) {
      fields.push({ label: "masked", value: shownHex(onWire) }, { label: "unmasked", value: shownHex(payload) });
      const [first, keyByte, plain] = [onWire[0], key[0], payload[0]];
      if (first !== undefined && keyByte !== undefined && plain !== undefined) {
        const hex = (byte: number) => byte.toString(16).padStart(2, "0");
        fields.push({ label: "⊕", value: words.xor(hex(first), hex(keyByte), hex(plain)) });
      }
    }
  } else if (frame.length > 0) {
    fields.push({ label: "payload", value: shownHex(payload) });
  }
  if (frame.length === 0) fields.push({ label: "payload", value: words.noPayload });

  let meaning: string | null = null;
  if (frame.opcode === 0x8) {
    meaning = words.closeFrame(direction);
    if (payload.length >= 2 && !compressed) {
      const code = (payload[0]! << 8) | payload[1]!;
      const reason = previewText(payload.subarray(2), frame.length - 2) ?? "";
      const value = describeCloseCode(code) + (reason === "" ? "" : words.closeReason(reason));
      fields.push({ label: "close", value });
      meaning = `${meaning} · ${describeCloseCode(code)}`;
    }
  } else if (frame.opcode === 0x9) {
    meaning = words.protocolPing;
    fields.push({ label: "note", value: words.pingNote(direction) });
  } else if (frame.opcode === 0xa) {
    meaning = words.protocolPong;
    fields.push({ label: "note", value: words.pongNote(direction) });
  } else if (isDataOpcode(frame.opcode) && frame.length > 0) {
    // What the frame says as text: the whole message if the page knows it,
    // else the uncompressed bytes the server showed us (in the frame, or for a
    // compressed message in its note). Where both exist they must agree: a
    // match that does not is dropped rather than shown.
    const plain = inflated !== null ? hexToBytes(inflated.payload) : compressed ? null : payload;
    const plainLength = inflated?.length ?? frame.length;
    const binary = inflated !== null ? inflated.binary : frame.opcode === 0x2;
    const prefix = plain === null || binary ? null : previewText(plain, plainLength);
    let text: string | null = knownText;
    if (text !== null && plain !== null && (prefix === null || !text.startsWith(prefix))) text = null;
    if (text === null && prefix !== null) {
      const cut = plainLength - new TextEncoder().encode(prefix).length;
      text = prefix + (cut > 0 ? words.moreBytes(cut) : "");
    }
    fields.push({
      label: "text",
      value: text ?? (compressed && plain === null ? words.compressedUnknown : words.notText),
    });
    if (inflated !== null) {
      if (binary && plain !== null) fields.push({ label: "inflated", value: bytesToHex(plain, HEX_BYTES_SHOWN) });
      const percent = inflated.length === 0 ? 0 : Math.round((inflated.wireLength / inflated.length) * 100);
      fields.push({ label: "deflate", value: words.deflate(direction, inflated.wireLength, inflated.length, percent) });
    } else if (compressed && text !== null) {
      const value = direction === "received" ? words.compressedByPage : words.compressedByServer;
      fields.push({ label: "RSV1=1", value });
    }
    if (frame.opcode === 0x0) meaning = words.continuation;
    else if (text !== null) meaning = describeChatJson(text, words) ?? text;
  }
  const size = `${frame.opcodeName} · ${frame.length} B`;
  const summary = inflated === null ? size : `${size} (${words.inflatedSize(inflated.length)})`;
  return { summary: meaning === null ? summary : `${summary} · ${shorten(meaning, SUMMARY_CHARACTERS)}`, fields };
}

/** The one line that tells a ClientEvent. */
export function describeClientEvent(event: ClientEvent, words: InspectorWords): string {
  switch (event.kind) {
    case "state":
      return words.state(event.from, event.to);
    case "opening":
      return words.opening(event.url);
    case "rtt":
      return words.rtt(event.roundTripMs);
    case "retry":
      return words.retry(event.attempt, event.delayMs);
    case "closed": {
      const code = event.code === null ? "?" : describeCloseCode(event.code);
      return words.closed(code, event.reason, event.wasClean, event.current);
    }
    case "socket-error":
      return words.socketError;
    case "silent":
      return words.silent(event.timeoutMs);
    case "not-welcomed":
      return words.notWelcomed(event.timeoutMs);
    case "inspect":
      return words.inspect(event.on, event.connected);
  }
}

export interface InspectorLogOptions {
  words: InspectorWords;
  now: () => number;
  limit?: number;
  /** Something was added or cleared; the page batches its redraws. */
  onChange?: () => void;
}

/**
 * The inspector's entries, newest last, at most `limit` of them.
 *
 * It also puts text to compressed frames. Chromium compresses every message
 * it sends once permessage-deflate is agreed, so the server's trace of "hi"
 * going out holds deflate bytes, and with the browser's compression context
 * carried from message to message they cannot be inflated on their own. But
 * the page knows what it sent, and TCP keeps order: the n-th data message the
 * server reports receiving is the n-th one the page sent since the server
 * started watching. The other way is simpler: the server writes a frame, then
 * its trace, so a trace of a sent message follows the message itself.
 */
export class InspectorLog {
  private readonly options: InspectorLogOptions;
  private readonly limit: number;
  private list: InspectorEntry[] = [];
  private nextId = 1;
  /** Whether the server reports every frame the page sends from here on, so texts can be matched. */
  private matching = false;
  /** Texts the page sent whose trace has not arrived yet, oldest first. */
  private unmatched: string[] = [];
  /** The last message that arrived, for the trace of it that follows. */
  private lastReceived: string | null = null;
  /**
   * In each direction, the frame that ended the last message, until the
   * server's note about that message comes. The server sends the note right
   * after the frame's trace, so the last such frame is the one it is about.
   */
  private awaitingNote: Record<"received" | "sent", AwaitingNote | null> = { received: null, sent: null };

  constructor(options: InspectorLogOptions) {
    this.options = options;
    this.limit = options.limit ?? INSPECTOR_LIMIT;
  }

  get entries(): readonly InspectorEntry[] {
    return this.list;
  }

  clear(): void {
    this.list = [];
    this.options.onChange?.();
  }

  /** What the ChatConnection's observer is given: every event goes through here. */
  observe(event: ConnectionEvent): void {
    switch (event.kind) {
      case "socket":
        return this.socketOpened(event.tracedFromStart);
      case "sent":
        return this.pageSent(event.text);
      case "received":
        return this.pageReceived(event.text);
      case "trace":
        return this.trace(event.trace);
      default:
        return this.clientEvent(event);
    }
  }

  /** One of the page's own lines. */
  clientEvent(event: ClientEvent): void {
    const summary = describeClientEvent(event, this.options.words);
    this.add({ direction: "client", opcode: null, kind: event.kind, summary, fields: [], lines: [], serverLine: null });
  }

  /** A new socket: what was being matched belonged to the old one. */
  socketOpened(tracedFromStart: boolean): void {
    // With inspect=1 in the URL the server reports this socket's frames from the first.
    this.matching = tracedFromStart;
    this.unmatched = [];
    this.lastReceived = null;
    this.awaitingNote = { received: null, sent: null };
  }

  /** A text the page sent, to be matched with the server's trace of it. */
  pageSent(text: string): void {
    const inspect = inspectSwitch(text);
    if (inspect === true && !this.matching) {
      // The server starts watching after it has read this message, so this
      // one is not reported, and everything after it is.
      this.matching = true;
      this.unmatched = [];
      return;
    }
    if (!this.matching) return;
    this.unmatched.push(text);
    // Reported still (the server reads it before it stops), and nothing after it.
    if (inspect === false) this.matching = false;
    if (this.unmatched.length > UNMATCHED_LIMIT) {
      // No traces are coming back. Better no text than another message's text.
      this.matching = false;
      this.unmatched = [];
    }
  }

  /** A text that arrived (not a trace), for the trace of it that follows. */
  pageReceived(text: string): void {
    this.lastReceived = text;
  }

  /** One frame of this connection as the server reported it, or its opening handshake. */
  trace(trace: TraceReport): void {
    if (trace.direction === "handshake") {
      const { lines } = trace;
      const summary = this.options.words.handshake;
      this.add({ direction: "handshake", opcode: null, kind: null, summary, fields: [], lines, serverLine: null });
      return;
    }
    if (trace.direction === "note") return this.note(trace.of, trace.note, trace.line);
    const { frame, direction } = trace;
    let knownText: string | null = null;
    // Only the last frame of a message completes it (FIN=1); control frames are no one's message.
    if (isDataOpcode(frame.opcode) && frame.fin) {
      if (direction === "received") {
        knownText = this.unmatched.shift() ?? null;
      } else {
        // Binary messages are not kept as text (the chat sends none), so only a text frame may use it.
        knownText = frame.opcode === 0x2 ? null : this.lastReceived;
        this.lastReceived = null;
      }
    }
    const { summary, fields } = describeTraceFrame(frame, direction, knownText, this.options.words);
    this.add({ direction, opcode: frame.opcodeName, kind: null, summary, fields, lines: [], serverLine: trace.line });
    if (isDataOpcode(frame.opcode) && frame.fin)
      this.awaitingNote[direction] = { id: this.nextId - 1, frame, knownText };
  }

  /**
   * The server's note about the message the last data frame in `of` ended:
   * that frame's entry is described again with it (the text a compressed
   * message inflates to, or why a short one went uncompressed). A note whose
   * frame is not in the list (cleared, or traced before this socket) is
   * dropped: on its own it would describe nothing on screen.
   */
  note(of: "received" | "sent", note: TraceNoteFields, line: string): void {
    const awaiting = this.awaitingNote[of];
    this.awaitingNote[of] = null;
    if (awaiting === null) return;
    const index = this.list.findIndex((entry) => entry.id === awaiting.id);
    const entry = this.list[index];
    if (entry === undefined) return;
    const { frame, knownText } = awaiting;
    const { summary, fields } = describeTraceFrame(frame, of, knownText, this.options.words, note);
    const serverLine = entry.serverLine === null ? line : `${entry.serverLine}\n${line}`;
    this.list[index] = { ...entry, summary, fields, serverLine };
    this.options.onChange?.();
  }

  private add(entry: Omit<InspectorEntry, "id" | "time">): void {
    this.list.push({ id: this.nextId, time: this.options.now(), ...entry });
    this.nextId += 1;
    if (this.list.length > this.limit) this.list.splice(0, this.list.length - this.limit);
    this.options.onChange?.();
  }
}

// ---------------------------------------------------------------------------
// 12. InspectorView
// ---------------------------------------------------------------------------

/** The elements of client.html that the inspector uses. */
interface InspectorElements {
  inspectorToggle: HTMLButtonElement;
  inspector: HTMLElement;
  inspectorHeading: HTMLElement;
  inspectorClear: HTMLButtonElement;
  inspectorFrames: HTMLOListElement;
}

function findInspectorElements(): InspectorElements {
  return {
    inspectorToggle: findElement("inspector-toggle", HTMLButtonElement),
    inspector: findElement("inspector", HTMLElement),
    inspectorHeading: findElement("inspector-heading", HTMLElement),
    inspectorClear: findElement("inspector-clear", HTMLButtonElement),
    inspectorFrames: findElement("inspector-frames", HTMLOListElement),
  };
}

/** "14:03:05.123": frames come milliseconds apart, so the time shows them. */
function clockTime(time: number): string {
  const date = new Date(time);
  const two = (value: number) => String(value).padStart(2, "0");
  const milliseconds = String(date.getMilliseconds()).padStart(3, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${milliseconds}`;
}

/** The inspector panel: draws an InspectorLog into #inspector, and opens and closes it. */
class InspectorView {
  /** What the panel shows; the ChatConnection's observer feeds it (see startPage). */
  readonly log: InspectorLog;
  private readonly elements: InspectorElements;
  private readonly words: InspectorWords;
  /**
   * The entries on screen, oldest first; entries only ever join at the end
   * and leave at the start. `entry` is the object drawn: when the log holds
   * another one for that id, the entry changed (see InspectorEntry).
   */
  private shown: Array<{ id: number; entry: InspectorEntry; element: HTMLLIElement }> = [];
  private renderQueued = false;

  constructor(elements: InspectorElements, words: InspectorWords) {
    this.elements = elements;
    this.words = words;
    this.log = new InspectorLog({ words, now: () => Date.now(), onChange: () => this.scheduleRender() });
  }

  /**
   * Opens the panel as it was before a reload (the connection keeps that in
   * sessionStorage), and lets its buttons switch the server's reports and
   * clear the list.
   */
  attach(connection: ChatConnection): void {
    const { inspectorToggle, inspectorClear } = this.elements;
    this.setOpen(connection.inspecting);
    inspectorToggle.addEventListener("click", () => {
      const open = !connection.inspecting;
      connection.setInspecting(open);
      this.setOpen(open);
    });
    inspectorClear.addEventListener("click", () => this.log.clear());
  }

  applyLanguage(): void {
    const { elements, words } = this;
    setText(elements.inspectorToggle, words.toggle);
    setText(elements.inspectorHeading, words.heading);
    setText(elements.inspectorClear, words.clear);
    elements.inspectorFrames.setAttribute("aria-label", words.framesLabel);
  }

  private setOpen(open: boolean): void {
    const { inspector, inspectorToggle, inspectorFrames } = this.elements;
    inspector.hidden = !open;
    inspectorToggle.setAttribute("aria-expanded", String(open));
    if (!open) return;
    this.render();
    inspectorFrames.scrollTop = inspectorFrames.scrollHeight;
  }

  /** Redraws once after a burst: a resumed connection brings many frames at once. */
  private scheduleRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  private render(): void {
    // A closed panel is brought up to date when it opens.
    if (this.elements.inspector.hidden) return;
    const list = this.elements.inspectorFrames;
    const entries = this.log.entries;
    const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;

    // Entries the log no longer has (over the limit, or cleared) leave from the top.
    const oldestKept = entries[0]?.id ?? Infinity;
    while (this.shown.length > 0 && this.shown[0]!.id < oldestKept) this.shown.shift()!.element.remove();
    // Entries that changed are drawn again where they are. Ids run without
    // gaps in both lists, so the shown row of an entry is found by offset.
    const offset = this.shown.length > 0 ? this.shown[0]!.id - oldestKept : 0;
    this.shown.forEach((row, index) => {
      const entry = entries[index + offset];
      if (entry === undefined || entry.id !== row.id || entry === row.entry) return;
      const element = this.entryElement(entry);
      row.element.replaceWith(element);
      row.element = element;
      row.entry = entry;
    });
    // New ones join at the bottom.
    const newestShown = this.shown[this.shown.length - 1]?.id ?? 0;
    const added = entries
      .filter((entry) => entry.id > newestShown)
      .map((entry) => ({ id: entry.id, entry, element: this.entryElement(entry) }));
    list.append(...added.map((row) => row.element));
    this.shown.push(...added);

    if (wasAtBottom && added.length > 0) list.scrollTop = list.scrollHeight;
  }

  /** One entry; built once, since an entry never changes. All text goes in as text. */
  private entryElement(entry: InspectorEntry): HTMLLIElement {
    const element = createElement("li", "frame");
    element.dataset.direction = entry.direction;
    if (entry.opcode !== null) element.dataset.opcode = entry.opcode;
    if (entry.kind !== null) element.dataset.kind = entry.kind;

    const head = createElement("p", "frame-head");
    const time = createElement("time", "");
    time.dateTime = new Date(entry.time).toISOString();
    time.textContent = clockTime(entry.time);
    const directions: Record<InspectorDirection, string> = {
      received: this.words.pageToServer,
      sent: this.words.serverToPage,
      handshake: this.words.handshake,
      client: this.words.thisPage,
    };
    const direction = createElement("span", "frame-direction");
    direction.textContent = directions[entry.direction];
    const summary = createElement("span", "frame-summary");
    summary.textContent = entry.direction === "handshake" ? "" : entry.summary;
    head.append(time, " ", direction, " ", summary);
    element.append(head);

    if (entry.fields.length > 0) {
      const fields = createElement("dl", "frame-fields");
      for (const field of entry.fields) {
        const row = createElement("div", "");
        const label = createElement("dt", "");
        label.textContent = field.label;
        const value = createElement("dd", "");
        value.textContent = field.value;
        row.append(label, value);
        fields.append(row);
      }
      element.append(fields);
    }
    if (entry.lines.length > 0) {
      const lines = createElement("pre", "frame-lines");
      lines.textContent = entry.lines.join("\n");
      element.append(lines);
    }
    if (entry.serverLine !== null) {
      // The same frame as `node server.ts --trace` prints it, for comparing with the server's log.
      const raw = createElement("details", "frame-raw");
      const label = createElement("summary", "");
      label.textContent = "--trace";
      const line = createElement("code", "");
      line.textContent = entry.serverLine;
      raw.append(label, line);
      element.append(raw);
    }
    return element;
  }
}

// ═══════════════════════════════════════════════════════════════════════════
// Part three: the frame lab
// ═══════════════════════════════════════════════════════════════════════════
//
// The inspector shows the frames a browser happens to send; the lab lets a
// learner send the server any bytes at all, and break each rule on purpose.
// The bytes never go on the wire as frames: they travel as hex inside a
// `decode` message, and the server feeds them to a fresh FrameDecoder (the one
// every connection uses) and answers with its walk, line by line. The page
// shows the server's lines as they are: the decoder, not the page, decides.

// ---------------------------------------------------------------------------
// 13. FrameLab
// ---------------------------------------------------------------------------

/** Whose frames the bytes are: a client's must be masked, a server's must not (RFC 6455 §5.1). */
export type FrameLabSource = "client" | "server";

export type FrameLabOutcome = DecodedMessage["outcome"];

/** An example to start from: bytes from RFC 6455 §5.7, or a frame that breaks one rule. */
export interface FrameLabPreset {
  id: string;
  label: Record<Language, string>;
  /** Spaced hex, as the server's own lines write bytes. */
  hex: string;
  from: FrameLabSource;
  /** What the server's decoder makes of it; test/client.test.ts checks each against server.ts. */
  outcome: FrameLabOutcome;
  /** For a broken one, the close code the connection would be failed with (§7.4.1). */
  closeCode: number | null;
}

/** The §5.7 masking key, used for every masked example so the bytes can be checked by hand. */
const LAB_KEY = "37 fa 21 3d";

/** `count` bytes as spaced hex, each from `byte(index)`. */
function labBytes(count: number, byte: (index: number) => number): string {
  return Array.from({ length: count }, (_, index) => byte(index).toString(16).padStart(2, "0")).join(" ");
}

export const FRAME_LAB_PRESETS: readonly FrameLabPreset[] = [
  {
    id: "hello",
    label: { en: 'a masked "Hello" (§5.7)', zh: '加掩码的 "Hello"（§5.7）' },
    hex: `81 85 ${LAB_KEY} 7f 9f 4d 51 58`,
    from: "client",
    outcome: "valid",
    closeCode: null,
  },
  {
    id: "fragmented",
    label: { en: 'an unmasked "Hel" + "lo" in two frames (§5.7)', zh: '不加掩码、分成两帧的 "Hel" + "lo"（§5.7）' },
    hex: "01 03 48 65 6c 80 02 6c 6f",
    from: "server",
    outcome: "valid",
    closeCode: null,
  },
  {
    id: "ping",
    label: { en: 'an unmasked ping carrying "Hello" (§5.7)', zh: '不加掩码、带 "Hello" 的 ping（§5.7）' },
    hex: "89 05 48 65 6c 6c 6f",
    from: "server",
    outcome: "valid",
    closeCode: null,
  },
  {
    id: "binary-256",
    label: { en: "256 bytes of binary: a 16-bit length (§5.7)", zh: "256 字节的二进制消息：16 位长度（§5.7）" },
    hex: `82 7e 01 00 ${labBytes(256, (index) => index)}`,
    from: "server",
    outcome: "valid",
    closeCode: null,
  },
  {
    id: "binary-64k",
    label: {
      en: "64 KiB of binary, the header only: a 64-bit length (§5.7)",
      zh: "64 KiB 的二进制消息，只有帧头：64 位长度（§5.7）",
    },
    hex: "82 7f 00 00 00 00 00 01 00 00",
    from: "server",
    outcome: "incomplete",
    closeCode: null,
  },
  {
    id: "unmasked-client",
    label: { en: "an unmasked client frame (§5.1)", zh: "没加掩码的客户端帧（§5.1）" },
    hex: "81 05 48 65 6c 6c 6f",
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
  {
    id: "rsv1",
    label: { en: "RSV1 set with no extension agreed (§5.2)", zh: "没有协商扩展却置了 RSV1（§5.2）" },
    hex: `c1 85 ${LAB_KEY} 7f 9f 4d 51 58`,
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
  {
    id: "control-fragmented",
    label: { en: "a fragmented control frame: a ping with FIN=0 (§5.5)", zh: "分片的控制帧：FIN=0 的 ping（§5.5）" },
    hex: `09 85 ${LAB_KEY} 7f 9f 4d 51 58`,
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
  {
    id: "control-too-long",
    label: { en: "a control frame over 125 bytes (§5.5)", zh: "超过 125 字节的控制帧（§5.5）" },
    hex: `89 fe 00 7e ${LAB_KEY} ${labBytes(126, () => 0)}`,
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
  {
    id: "utf8-split",
    label: { en: "invalid UTF-8 split across two fragments (§8.1)", zh: "跨两个分片的无效 UTF-8（§8.1）" },
    hex: `01 83 ${LAB_KEY} 7f 18 a3 80 81 ${LAB_KEY} 1f`,
    from: "client",
    outcome: "violation",
    closeCode: 1007,
  },
  {
    id: "close-1005",
    label: { en: "close code 1005 on the wire (§7.4.1)", zh: "线上出现关闭码 1005（§7.4.1）" },
    hex: `88 82 ${LAB_KEY} 34 17`,
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
  {
    id: "reserved-opcode",
    label: { en: "a reserved opcode, 0x3 (§5.2)", zh: "保留的 opcode 0x3（§5.2）" },
    hex: `83 80 ${LAB_KEY}`,
    from: "client",
    outcome: "violation",
    closeCode: 1002,
  },
];

export interface FrameLabRequest {
  hex: string;
  from: FrameLabSource;
}

/**
 * The lab's one request and what became of it:
 *   idle ──ask──▶ waiting ──decoded──▶ answered
 *                    │ ├──bad hex, rate limit──▶ refused
 *                    │ └──connection lost──────▶ interrupted
 * and from any but waiting, ask again. The server's answer names no request,
 * so a second one is not sent while the first waits.
 */
export type FrameLabState =
  | { name: "idle" }
  | { name: "waiting"; request: FrameLabRequest }
  | { name: "answered"; request: FrameLabRequest; lines: string[]; outcome: FrameLabOutcome }
  | { name: "refused"; request: FrameLabRequest; message: string }
  | { name: "interrupted"; request: FrameLabRequest };

/** The server's refusal of the lab's input: its message says "Frame lab: …" (server.ts, decode). */
export function isFrameLabError(error: { code: string; message: string }): boolean {
  return error.code === "bad_message" && error.message.startsWith("Frame lab:");
}

/** The frame lab's request and answer, without a socket: ChatConnection sends what ask() returns. */
export class FrameLab {
  private current: FrameLabState = { name: "idle" };

  get state(): FrameLabState {
    return this.current;
  }

  /** The request to send, or null while one is waiting. The hex goes as typed: the server reads it. */
  ask(hex: string, from: FrameLabSource): FrameLabRequest | null {
    if (this.current.name === "waiting") return null;
    const request = { hex: hex.trim(), from };
    this.current = { name: "waiting", request };
    return request;
  }

  /** The server's walk; one that nothing waits for (after a refusal) is not ours to show. */
  answered(answer: DecodedMessage): void {
    if (this.current.name !== "waiting") return;
    const { request } = this.current;
    this.current = { name: "answered", request, lines: answer.lines, outcome: answer.outcome };
  }

  /** The server refused the request: hex it cannot read, or too many requests. */
  refused(message: string): void {
    if (this.current.name !== "waiting") return;
    this.current = { name: "refused", request: this.current.request, message };
  }

  /** The connection is gone, and with it the answer. */
  close(): void {
    if (this.current.name !== "waiting") return;
    this.current = { name: "interrupted", request: this.current.request };
  }
}

/** The lab's words in one language. The server's lines stay as it writes them (in English, like --trace). */
export interface FrameLabWords {
  toggle: string;
  heading: string;
  examples: string;
  chooseExample: string;
  examplesFromRfc: string;
  examplesBroken: string;
  bytes: string;
  bytesHint: string;
  readAs: string;
  fromClient: string;
  fromServer: string;
  decode: string;
  decoding: string;
  needsConnection: string;
  idle: string;
  outcome(outcome: string): string;
  refused(message: string): string;
  interrupted: string;
  result: string;
}

export const FRAME_LAB_WORDS: Record<Language, FrameLabWords> = {
  zh: {
    toggle: "帧实验室",
    heading: "帧实验室",
    examples: "例子",
    chooseExample: "选一个例子…",
    examplesFromRfc: "RFC 6455 §5.7 的例子",
    examplesBroken: "违反规则的帧",
    bytes: "字节（十六进制）",
    bytesHint: "可以带空格、逗号、冒号或 0x；最多 64 KiB。改一个位，看解码器怎么说。",
    readAs: "当作",
    fromClient: "客户端帧（加掩码）",
    fromServer: "服务器帧（不加掩码）",
    decode: "解码",
    decoding: "正在解码…",
    needsConnection: "解码需要连接",
    idle: "选一个例子或输入字节，然后按“解码”：服务器的解码器逐位说明它读到了什么。",
    outcome: (outcome) =>
      outcome === "valid"
        ? "✓ 有效：每一帧都解码完了"
        : outcome === "incomplete"
          ? "… 目前有效，还在等更多字节：最后一帧没有收完"
          : outcome === "violation"
            ? "✗ 违反规则：连接会以下面的关闭码失败"
            : outcome,
    refused: (message) => `服务器拒绝了这个请求：${message}`,
    interrupted: "回答到来之前连接断了；连上以后再解码一次。",
    result: "解码器的过程",
  },
  en: {
    toggle: "Frame lab",
    heading: "Frame lab",
    examples: "Examples",
    chooseExample: "Choose an example…",
    examplesFromRfc: "RFC 6455 §5.7 examples",
    examplesBroken: "Frames that break a rule",
    bytes: "Bytes (hex)",
    bytesHint: "Spaces, commas, colons and 0x are fine; up to 64 KiB. Change one bit and see what the decoder says.",
    readAs: "Read as",
    fromClient: "client frames (masked)",
    fromServer: "server frames (unmasked)",
    decode: "Decode",
    decoding: "Decoding…",
    needsConnection: "Decode: needs the connection",
    idle: "Choose an example or type bytes, then Decode: the server's decoder says what it reads, bit by bit.",
    outcome: (outcome) =>
      outcome === "valid"
        ? "✓ valid: every frame decoded"
        : outcome === "incomplete"
          ? "… valid so far, waiting for more bytes: the last frame is not complete"
          : outcome === "violation"
            ? "✗ violation: the connection would be failed with the close code below"
            : outcome,
    refused: (message) => `The server refused the request: ${message}`,
    interrupted: "The connection was lost before the answer; decode again once connected.",
    result: "The decoder's walk",
  },
};

/** What the lab panel shows for a state: the status line, the lines, and the outcome to highlight. */
export function describeFrameLab(
  state: FrameLabState,
  connected: boolean,
  words: FrameLabWords,
): {
  status: string;
  outcome: FrameLabOutcome | "refused" | null;
  lines: string[];
  decodeLabel: string;
  canDecode: boolean;
} {
  const waiting = state.name === "waiting";
  const canDecode = connected && !waiting;
  const decodeLabel = waiting ? words.decoding : connected ? words.decode : words.needsConnection;
  switch (state.name) {
    case "idle":
    case "waiting":
      return { status: waiting ? words.decoding : words.idle, outcome: null, lines: [], decodeLabel, canDecode };
    case "answered":
      return {
        status: words.outcome(state.outcome),
        outcome: state.outcome,
        lines: state.lines,
        decodeLabel,
        canDecode,
      };
    case "refused":
      return { status: words.refused(state.message), outcome: "refused", lines: [], decodeLabel, canDecode };
    case "interrupted":
      return { status: words.interrupted, outcome: null, lines: [], decodeLabel, canDecode };
  }
}

// ---------------------------------------------------------------------------
// 14. FrameLabView
// ---------------------------------------------------------------------------

interface FrameLabElements {
  toggle: HTMLButtonElement;
  panel: HTMLElement;
  heading: HTMLElement;
  form: HTMLFormElement;
  presetLabel: HTMLLabelElement;
  preset: HTMLSelectElement;
  hexLabel: HTMLLabelElement;
  hex: HTMLTextAreaElement;
  hint: HTMLElement;
  readAs: HTMLElement;
  fromClient: HTMLInputElement;
  fromClientLabel: HTMLElement;
  fromServer: HTMLInputElement;
  fromServerLabel: HTMLElement;
  decode: HTMLButtonElement;
  status: HTMLElement;
  resultHeading: HTMLElement;
  output: HTMLPreElement;
}

function findFrameLabElements(): FrameLabElements {
  return {
    toggle: findElement("framelab-toggle", HTMLButtonElement),
    panel: findElement("framelab", HTMLElement),
    heading: findElement("framelab-heading", HTMLElement),
    form: findElement("framelab-form", HTMLFormElement),
    presetLabel: findElement("framelab-preset-label", HTMLLabelElement),
    preset: findElement("framelab-preset", HTMLSelectElement),
    hexLabel: findElement("framelab-hex-label", HTMLLabelElement),
    hex: findElement("framelab-hex", HTMLTextAreaElement),
    hint: findElement("framelab-hint", HTMLElement),
    readAs: findElement("framelab-read-as", HTMLElement),
    fromClient: findElement("framelab-from-client", HTMLInputElement),
    fromClientLabel: findElement("framelab-from-client-label", HTMLElement),
    fromServer: findElement("framelab-from-server", HTMLInputElement),
    fromServerLabel: findElement("framelab-from-server-label", HTMLElement),
    decode: findElement("framelab-decode", HTMLButtonElement),
    status: findElement("framelab-status", HTMLElement),
    resultHeading: findElement("framelab-result-heading", HTMLElement),
    output: findElement("framelab-output", HTMLPreElement),
  };
}

/** The lab panel: opens and closes like the inspector's (remembered across reloads), and draws the FrameLab. */
class FrameLabView {
  private readonly elements: FrameLabElements;
  private readonly words: FrameLabWords;
  private readonly language: Language;
  private readonly storage: KeyValueStorage;
  private renderQueued = false;
  /** The state drawn last, so a redraw that changes nothing touches nothing (the status is read out). */
  private drawn: { state: FrameLabState; connected: boolean } | null = null;

  constructor(elements: FrameLabElements, language: Language, storage: KeyValueStorage) {
    this.elements = elements;
    this.language = language;
    this.words = FRAME_LAB_WORDS[language];
    this.storage = storage;
  }

  applyLanguage(): void {
    const { elements, words } = this;
    setText(elements.toggle, words.toggle);
    setText(elements.heading, words.heading);
    setText(elements.presetLabel, words.examples);
    setText(elements.hexLabel, words.bytes);
    setText(elements.hint, words.bytesHint);
    setText(elements.readAs, words.readAs);
    setText(elements.fromClientLabel, words.fromClient);
    setText(elements.fromServerLabel, words.fromServer);
    setText(elements.resultHeading, words.result);
    elements.hex.placeholder = `81 85 ${LAB_KEY} 7f 9f 4d 51 58`;
    const none = new Option(words.chooseExample, "");
    const groups = [
      { label: words.examplesFromRfc, presets: FRAME_LAB_PRESETS.filter((preset) => preset.closeCode === null) },
      { label: words.examplesBroken, presets: FRAME_LAB_PRESETS.filter((preset) => preset.closeCode !== null) },
    ].map(({ label, presets }) => {
      const group = document.createElement("optgroup");
      group.label = label;
      group.append(...presets.map((preset) => new Option(preset.label[this.language], preset.id)));
      return group;
    });
    elements.preset.replaceChildren(none, ...groups);
  }

  attach(connection: ChatConnection): void {
    const { elements } = this;
    this.setOpen(readStoredJson(this.storage, STORAGE_KEYS.frameLab) === true);
    elements.toggle.addEventListener("click", () => {
      const open = elements.panel.hidden !== false; // "until-found" is hidden too
      writeStoredJson(this.storage, STORAGE_KEYS.frameLab, open);
      this.setOpen(open);
    });
    elements.preset.addEventListener("change", () => {
      const preset = FRAME_LAB_PRESETS.find((candidate) => candidate.id === elements.preset.value);
      if (preset === undefined) return;
      elements.hex.value = preset.hex;
      elements.fromClient.checked = preset.from === "client";
      elements.fromServer.checked = preset.from === "server";
    });
    // Edited bytes are no longer the example: the list says so rather than name what is not there.
    elements.hex.addEventListener("input", () => (elements.preset.value = ""));
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      // aria-disabled rather than disabled: the button stays focusable, so its label can say why it does nothing.
      if (elements.decode.getAttribute("aria-disabled") === "true") return;
      connection.decode(elements.hex.value, elements.fromServer.checked ? "server" : "client");
    });
    this.render(connection);
  }

  /** Called on every change of the connection; draws once after a burst. */
  scheduleRender(connection: ChatConnection): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.render(connection);
    });
  }

  private setOpen(open: boolean): void {
    this.elements.panel.hidden = !open;
    this.elements.toggle.setAttribute("aria-expanded", String(open));
  }

  private render(connection: ChatConnection): void {
    const state = connection.frameLab;
    const connected = connection.state === "connected";
    if (this.drawn !== null && this.drawn.state === state && this.drawn.connected === connected) return;
    this.drawn = { state, connected };
    const { elements } = this;
    const shown = describeFrameLab(state, connected, this.words);
    setText(elements.decode, shown.decodeLabel);
    elements.decode.setAttribute("aria-disabled", String(!shown.canDecode));
    setText(elements.status, shown.status);
    if (shown.outcome === null) delete elements.status.dataset.outcome;
    else elements.status.dataset.outcome = shown.outcome;
    // One span a line, so the broken rule and the messages can be marked; all text goes in as text.
    elements.output.replaceChildren(
      ...shown.lines.map((line) => {
        const span = createElement("span", "");
        const trimmed = line.trimStart();
        if (trimmed.startsWith("✗")) span.className = "lab-violation";
        else if (trimmed.startsWith("→")) span.className = "lab-message";
        span.textContent = `${line}\n`;
        return span;
      }),
    );
    elements.output.hidden = shown.lines.length === 0;
    elements.resultHeading.hidden = shown.lines.length === 0;
  }
}

// ═══════════════════════════════════════════════════════════════════════════
// Start-up
// ═══════════════════════════════════════════════════════════════════════════

/**
 * The chat (part one) on the page, with the inspector (part two) as its
 * connection's observer and the frame lab (part three) drawn on its changes.
 */
function startPage(): void {
  const language = pickLanguage(navigator.languages?.length ? navigator.languages : [navigator.language]);
  const inspector = new InspectorView(findInspectorElements(), INSPECTOR_WORDS[language]);
  inspector.applyLanguage();
  const lab = new FrameLabView(findFrameLabElements(), language, openSessionStorage());
  lab.applyLanguage();
  const connection = createChatPage(
    language,
    (event) => inspector.log.observe(event),
    () => lab.scheduleRender(connection),
  );
  inspector.attach(connection);
  lab.attach(connection);
  connection.start();
}

// Under Node (the tests import this file) there is no document, and nothing starts.
if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startPage);
  else startPage();
}
