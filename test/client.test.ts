// Unit tests of the browser client's logic. No browser, no server, no real
// time: the socket, the clock and the storage are fakes, and time moves only
// when a test calls clock.advance().
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repositoryRoot } from "./support/spawn.ts";
import {
  MAX_TEXT_LENGTH as SERVER_MAX_TEXT_LENGTH,
  characterCount as serverCharacterCount,
  closeCodeNames as serverCloseCodeNames,
  sessionIsValid as serverSessionIsValid,
  parseHex,
  walkFrames,
  type TraceFrameFields,
  type TraceNoteFields,
} from "../server.ts";
import {
  Backoff,
  CLOSE_CODE_NAMES,
  COUNTER_FROM,
  ChatConnection,
  FRAME_LAB_PRESETS,
  FRAME_LAB_WORDS,
  FrameLab,
  Heartbeat,
  INSPECTOR_LIMIT,
  INSPECTOR_WORDS,
  InspectorLog,
  MAX_TEXT_LENGTH,
  MemberList,
  MessageTimeFormat,
  Outbox,
  STORAGE_KEYS,
  TEXT,
  TabSession,
  Transcript,
  buildSocketUrl,
  bytesToHex,
  characterCount,
  composerCount,
  countNewBelow,
  createMemoryStorage,
  createMessageId,
  createSessionSecret,
  describeClientEvent,
  describeCloseCode,
  describeFrameLab,
  describeTraceFrame,
  hexToBytes,
  isFrameLabError,
  hideSession,
  parseServerFrame,
  previewText,
  pickLanguage,
  readTimingFromQuery,
  reconnectDelay,
  resolveServer,
  serverHelp,
  sessionIsValid,
  watchBrowserSignals,
  type ChatConnectionOptions,
  type ClientEvent,
  type ConnectionEvent,
  type InspectorEntry,
  type KeyValueStorage,
  type Member,
  type ServerError,
  type SocketCloseEvent,
  type SocketLike,
  type TabChannel,
  type Timers,
  type TranscriptEntry,
} from "../client.ts";

// ---------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------

/** A clock whose timers run only inside advance(), in the order they fall due. */
class FakeClock implements Timers {
  private currentTime = 1_700_000_000_000;
  private nextTimerId = 1;
  private readonly timers = new Map<number, { dueAt: number; callback: () => void }>();

  now(): number {
    return this.currentTime;
  }

  setTimeout(callback: () => void, delayMs: number): number {
    const timerId = this.nextTimerId++;
    this.timers.set(timerId, { dueAt: this.currentTime + Math.max(0, delayMs), callback });
    return timerId;
  }

  clearTimeout(timerId: number): void {
    this.timers.delete(timerId);
  }

  advance(durationMs: number): void {
    const end = this.currentTime + durationMs;
    for (;;) {
      // Earliest first; among equals, the one set first (Map keeps insertion order).
      let dueId: number | null = null;
      let dueAt = Infinity;
      for (const [timerId, timer] of this.timers) {
        if (timer.dueAt <= end && timer.dueAt < dueAt) {
          dueId = timerId;
          dueAt = timer.dueAt;
        }
      }
      if (dueId === null) break;
      const timer = this.timers.get(dueId)!;
      this.timers.delete(dueId);
      this.currentTime = timer.dueAt;
      timer.callback();
    }
    this.currentTime = end;
  }
}

/** A frame the client sent, as the tests look at it. */
interface SentFrame {
  type: string;
  id?: string;
  text?: string;
  t?: number;
}

/** Every listener the fake holds; each event type passes its own kind of event object. */
type Listener = (event: { data: unknown; code?: number; reason?: string; wasClean?: boolean }) => void;

/** Just enough WebSocket for ChatConnection, plus buttons for the test to press. */
class FakeSocket implements SocketLike {
  readonly url: string;
  readonly sent: string[] = [];
  closedByClient = false;
  private readonly listeners = new Map<string, Listener[]>();

  constructor(url: string) {
    this.url = url;
  }

  addEventListener(type: "close", listener: (event: SocketCloseEvent) => void): void;
  addEventListener(type: "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: string, listener: Listener): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  send(data: string): void {
    this.sent.push(data);
  }

  close(): void {
    this.closedByClient = true;
  }

  // --- What the test does with it ---

  receive(frame: object): void {
    this.emit("message", { data: JSON.stringify(frame) });
  }

  receiveText(text: string): void {
    this.emit("message", { data: text });
  }

  /** The server (or the network) closed the connection; by default as a dropped one does (1006, no close frame). */
  closeFromServer(code = 1006, reason = "", wasClean = false): void {
    this.emit("close", { data: undefined, code, reason, wasClean });
  }

  fail(): void {
    this.emit("error", { data: undefined });
  }

  sentFrames(): SentFrame[] {
    return this.sent.map((data) => JSON.parse(data) as SentFrame);
  }

  sentOfType(type: string): SentFrame[] {
    return this.sentFrames().filter((frame) => frame.type === type);
  }

  query(name: string): string | null {
    return new URL(this.url).searchParams.get(name);
  }

  private emit(type: string, event: Parameters<Listener>[0]): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }
}

interface WelcomeOptions {
  name?: string;
  you?: string;
  /** Everyone else in the room; we are added first. */
  others?: Array<{ name: string; sid: string; away?: boolean }>;
  seq?: number;
  epoch?: string;
  resumed?: boolean;
  /** The counts of a room larger than its first page; without them, the welcome is an older server's. */
  memberCount?: number;
  online?: number;
  presenceBatched?: boolean;
  oldestSeq?: number;
}

/** Our public id in these tests, and another person's. */
const MY_SID = "sid-me";
const OTHER_SID = "sid-other";

function welcome(options: WelcomeOptions = {}) {
  const { name = "小明", you = MY_SID, others = [], seq = 0, epoch = "epoch-1", resumed = false } = options;
  const { memberCount, online, presenceBatched, oldestSeq } = options;
  const members = [{ name, sid: you }, ...others];
  const users = members.map((member) => member.name);
  return {
    type: "welcome",
    name,
    you,
    users,
    members,
    seq,
    epoch,
    resumed,
    memberCount,
    online,
    presenceBatched,
    oldestSeq,
  };
}

function chatMessage(seq: number, fields: { id?: string; sid?: string; from?: string; text?: string } = {}) {
  return {
    type: "message",
    seq,
    id: fields.id ?? `other-${seq}`,
    sid: fields.sid ?? OTHER_SID,
    from: fields.from ?? "小红",
    text: fields.text ?? `message ${seq}`,
    time: 1_700_000_000_000 + seq,
  };
}

/** Every secret a harness makes is new, as random ones would be: two tabs never share one by chance. */
let secretsMade = 0;

/** A ChatConnection wired to fakes. Pass the same storage twice to simulate a reload. */
function createHarness(options: Partial<ChatConnectionOptions> = {}) {
  const clock = new FakeClock();
  const sockets: FakeSocket[] = [];
  const errors: ServerError[] = [];
  const storage = options.storage ?? createMemoryStorage();
  let online = true;
  const connection = new ChatConnection({
    serverUrl: "ws://chat.test/",
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    storage,
    timers: clock,
    // Always the top of the jitter range, so each delay is predictable: ceiling - 1.
    random: () => 0.999_999,
    createSessionSecret: () => `test-secret-${String(++secretsMade).padStart(5, "0")}`,
    isOnline: () => online,
    onServerError: (error) => errors.push(error),
    ...options,
  });
  return {
    connection,
    clock,
    sockets,
    storage,
    errors,
    latest(): FakeSocket {
      const socket = sockets[sockets.length - 1];
      assert.ok(socket, "no socket was opened");
      return socket;
    },
    setOnline(value: boolean): void {
      online = value;
    },
    /** How long until the planned reconnection attempt. */
    delayUntilRetry(): number {
      assert.notEqual(connection.nextAttemptAt, null, "no attempt is planned");
      return connection.nextAttemptAt! - clock.now();
    },
  };
}

/** Starts a harness and completes the first welcome. */
function connectedHarness(options: Partial<ChatConnectionOptions> = {}, welcomeOptions: WelcomeOptions = {}) {
  const harness = createHarness(options);
  harness.connection.start();
  harness.latest().receive(welcome(welcomeOptions));
  assert.equal(harness.connection.state, "connected");
  return harness;
}

/** Who a notice is about; a presence line names nobody. */
function noticeName(entry: Extract<TranscriptEntry, { kind: "notice" }>): string {
  return entry.notice === "presence" ? "" : entry.name;
}

function shownSeqs(connection: ChatConnection): Array<number | string> {
  return connection.entries.map((entry) => (entry.kind === "message" ? entry.message.seq : entry.notice));
}

// ---------------------------------------------------------------------------
// Backoff
// ---------------------------------------------------------------------------

describe("backoff", () => {
  test("full jitter: a delay lies between 0 and a ceiling that doubles from 1 s", () => {
    const ceilings = [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
    ceilings.forEach((ceiling, attempt) => {
      assert.equal(
        reconnectDelay(attempt, () => 0),
        0,
      );
      assert.equal(
        reconnectDelay(attempt, () => 0.5),
        ceiling / 2,
      );
      assert.equal(
        reconnectDelay(attempt, () => 0.999_999),
        ceiling - 1,
      );
    });
  });

  test("the ceiling is capped at 30 s however many attempts were made", () => {
    for (const attempt of [5, 10, 50, 1000, 1e9]) {
      const delay = reconnectDelay(attempt, () => 0.999_999);
      assert.ok(delay < 30_000 && delay >= 29_999, `attempt ${attempt}: ${delay}`);
    }
  });

  test("Backoff counts attempts and starts over after reset()", () => {
    const backoff = new Backoff(() => 0.999_999);
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next()], [999, 1999, 3999]);
    assert.equal(backoff.attempts, 3);
    backoff.reset();
    assert.equal(backoff.attempts, 0);
    assert.equal(backoff.next(), 999);
  });

  test("a short-lived connection keeps backing off; one that stayed up resets it", () => {
    const { connection, clock, sockets, latest, delayUntilRetry } = connectedHarness();

    latest().closeFromServer();
    assert.equal(connection.state, "reconnecting");
    assert.equal(connection.attempt, 1);
    assert.equal(delayUntilRetry(), 999);

    clock.advance(999);
    assert.equal(sockets.length, 2);
    latest().receive(welcome());
    clock.advance(3000); // up, but not for long enough
    latest().closeFromServer();
    assert.equal(connection.attempt, 2);
    assert.equal(delayUntilRetry(), 1999);

    clock.advance(1999);
    latest().receive(welcome());
    clock.advance(10_000); // stable now
    latest().closeFromServer();
    assert.equal(connection.attempt, 1);
    assert.equal(delayUntilRetry(), 999);
  });

  test("a socket that is never welcomed is given up on after the connect timeout", () => {
    const { connection, clock, sockets } = createHarness();
    connection.start();
    assert.equal(connection.state, "connecting");
    clock.advance(9_999);
    assert.equal(sockets[0]!.closedByClient, false);
    clock.advance(1);
    assert.equal(sockets[0]!.closedByClient, true);
    assert.equal(connection.state, "reconnecting");
    clock.advance(999);
    assert.equal(sockets.length, 2);
  });
});

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

describe("outbox", () => {
  test("pending messages are stored, and a new Outbox on the same storage (a reload) has them", () => {
    const storage = createMemoryStorage();
    const outbox = new Outbox(storage);
    outbox.add("你好", "id-1", 10);
    outbox.add("still there?", "id-2", 20);
    assert.notEqual(storage.getItem(STORAGE_KEYS.outbox), null);

    const afterReload = new Outbox(storage);
    assert.deepEqual(afterReload.pending, [
      { id: "id-1", text: "你好", createdAt: 10 },
      { id: "id-2", text: "still there?", createdAt: 20 },
    ]);
  });

  test("acknowledge and discard remove a message, and a reload does not bring it back", () => {
    const storage = createMemoryStorage();
    const outbox = new Outbox(storage);
    outbox.add("one", "id-1", 1);
    outbox.add("two", "id-2", 2);
    assert.equal(outbox.acknowledge("id-1"), true);
    assert.equal(outbox.acknowledge("id-1"), false);
    assert.equal(outbox.acknowledge("someone-else"), false);
    assert.equal(outbox.discard("id-2"), true);
    assert.deepEqual(outbox.pending, []);

    assert.deepEqual(new Outbox(storage).pending, []);
  });

  test("unreadable storage gives an empty outbox instead of an exception", () => {
    const storage = createMemoryStorage();
    storage.setItem(STORAGE_KEYS.outbox, "{not json");
    assert.deepEqual(new Outbox(storage).pending, []);
    const pending = [{ id: 5 }, { id: "ok", text: "t", createdAt: 1 }];
    storage.setItem(STORAGE_KEYS.outbox, JSON.stringify({ pending }));
    assert.deepEqual(new Outbox(storage).pending, [{ id: "ok", text: "t", createdAt: 1 }]);
  });

  test("storage that refuses writes does not stop the outbox", () => {
    const refusing: KeyValueStorage = {
      getItem: () => null,
      setItem: () => {
        throw new Error("QuotaExceededError");
      },
      removeItem: () => {},
    };
    const outbox = new Outbox(refusing);
    outbox.add("text", "id-1", 1);
    assert.equal(outbox.pending.length, 1);
  });

  test("message ids: randomUUID when there is one, else 32 random hex digits", () => {
    assert.equal(createMessageId({ randomUUID: () => "uuid" }), "uuid");
    const fromBytes = createMessageId({ getRandomValues: (bytes) => bytes.fill(171) });
    assert.equal(fromBytes, "ab".repeat(16));
    const fromMathRandom = createMessageId({}, () => 0.5);
    assert.equal(fromMathRandom, "80".repeat(16));
    const ids = new Set(Array.from({ length: 1000 }, () => createMessageId()));
    assert.equal(ids.size, 1000);
    const fallbackIds = new Set(Array.from({ length: 1000 }, () => createMessageId(undefined)));
    assert.equal(fallbackIds.size, 1000);
  });

  test("a message typed before connecting is pending, stored, and sent after the welcome with its id", () => {
    const { connection, storage, latest } = createHarness();
    connection.start();
    assert.equal(connection.send("  hello  "), "queued");
    const [pending] = connection.pending;
    assert.ok(pending);
    assert.equal(pending.text, "hello");
    assert.match(storage.getItem(STORAGE_KEYS.outbox) ?? "", /hello/);
    assert.deepEqual(latest().sent, [], "nothing is sent before the welcome");

    latest().receive(welcome());
    assert.deepEqual(latest().sentOfType("say"), [{ type: "say", id: pending.id, text: "hello" }]);
  });

  test("an unacknowledged message is sent again after a reconnect with the same id, and leaves on its echo", () => {
    const { connection, clock, latest } = connectedHarness();
    assert.equal(connection.send("are you there"), "sent");
    const id = connection.pending[0]!.id;
    assert.equal(latest().sentOfType("say").length, 1);

    latest().closeFromServer();
    clock.advance(999);
    latest().receive(welcome({ resumed: true }));
    assert.deepEqual(latest().sentOfType("say"), [{ type: "say", id, text: "are you there" }]);

    latest().receive(chatMessage(1, { id, sid: MY_SID, from: "小明", text: "are you there" }));
    assert.equal(connection.pending.length, 0);
    assert.equal(connection.entries.length, 1);
    const entry = connection.entries[0]!;
    assert.ok(entry.kind === "message" && connection.isMine(entry.message));
  });

  test("after a reload the pending message is shown and sent again with the same id", () => {
    const storage = createMemoryStorage();
    const before = createHarness({ storage });
    before.connection.start();
    before.connection.send("typed offline");
    const id = before.connection.pending[0]!.id;

    const after = createHarness({ storage });
    assert.deepEqual(
      after.connection.pending.map((message) => message.id),
      [id],
    );
    after.connection.start();
    after.latest().receive(welcome());
    assert.deepEqual(after.latest().sentOfType("say"), [{ type: "say", id, text: "typed offline" }]);
  });

  test("empty and overlong text is refused rather than queued", () => {
    const { connection } = connectedHarness();
    assert.equal(connection.send("   "), "empty");
    assert.equal(connection.send("x".repeat(MAX_TEXT_LENGTH + 1)), "too_long");
    assert.equal(connection.send("x".repeat(MAX_TEXT_LENGTH)), "sent");
    const emoji = "😀".repeat(MAX_TEXT_LENGTH);
    assert.equal(connection.send(emoji), "sent", "an emoji is one character, as the server counts");
    assert.equal(connection.pending.length, 2);
  });

  test("我 is message.sid === welcome.you: not the name, not the id, and it survives a reload", () => {
    const { connection, latest, storage } = connectedHarness({}, { name: "小明" });
    connection.send("sent from here");
    const id = connection.pending[0]!.id;
    latest().receive(chatMessage(1, { id, sid: MY_SID, from: "阿明 (renamed)" }));
    latest().receive(chatMessage(2, { sid: OTHER_SID, from: "小明" }));
    latest().receive(chatMessage(3, { sid: OTHER_SID, id }));
    latest().receive(chatMessage(4, { sid: "", from: "小明" }));
    const mine = (current: ChatConnection) =>
      current.entries.map((entry) => entry.kind === "message" && current.isMine(entry.message));
    assert.deepEqual(mine(connection), [true, false, false, false], "a name or an id alone never makes a message ours");
    const reloaded = createHarness({ storage }).connection;
    assert.equal(reloaded.you, MY_SID, "before any welcome, the stored id marks our messages");
    assert.deepEqual(mine(reloaded), [true, false, false, false]);
  });

  test("rate_limited: unconfirmed messages are sent again a little later, same ids", () => {
    const { connection, clock, latest, errors } = connectedHarness();
    connection.send("one");
    connection.send("two");
    latest().receive(chatMessage(1, { id: connection.pending[0]!.id, from: "小明" }));
    latest().receive({ type: "error", code: "rate_limited", message: "Slow down." });
    assert.deepEqual(errors, [{ code: "rate_limited", message: "Slow down." }]);
    const before = latest().sentOfType("say").length;
    clock.advance(2000);
    const resent = latest().sentOfType("say").slice(before);
    assert.deepEqual(
      resent.map((frame) => frame.text),
      ["two"],
    );
  });

  test("an error naming a pending id drops that message: resending it would fail forever", () => {
    const { connection, latest } = connectedHarness();
    connection.send("doomed");
    latest().receive({ type: "error", code: "text_too_long", message: "Too long.", id: connection.pending[0]!.id });
    assert.equal(connection.pending.length, 0);
  });
});

// ---------------------------------------------------------------------------
// Resume and epochs
// ---------------------------------------------------------------------------

describe("resume", () => {
  test("the first URL carries only the session; later ones add since, epoch and the name from the last welcome", () => {
    const { connection, clock, sockets, latest, storage } = createHarness();
    connection.start();
    const session = storage.getItem(STORAGE_KEYS.session);
    assert.ok(session !== null && sessionIsValid(session));
    assert.equal(sockets[0]!.url, `ws://chat.test/?session=${session}`);

    latest().receive(welcome({ name: "小明 二号", epoch: "e/7" }));
    latest().receive(chatMessage(1));
    latest().receive(chatMessage(2));
    latest().closeFromServer();
    clock.advance(999);

    const url = latest().url;
    assert.equal(latest().query("since"), "2");
    assert.equal(latest().query("epoch"), "e/7");
    assert.equal(latest().query("name"), "小明 二号");
    assert.equal(latest().query("session"), session, "the same session on every socket");
    assert.match(url, /name=%E5%B0%8F%E6%98%8E%20%E4%BA%8C%E5%8F%B7/, "a space is %20, not +");
  });

  test("a seq already shown is ignored", () => {
    const { connection, latest } = connectedHarness();
    latest().receive(chatMessage(1));
    latest().receive(chatMessage(2));
    latest().receive(chatMessage(2, { text: "again" }));
    latest().receive(chatMessage(1));
    assert.deepEqual(shownSeqs(connection), [1, 2]);
  });

  test("messages are shown in seq order, even one that arrives late", () => {
    const { connection, latest } = connectedHarness();
    latest().receive(chatMessage(1));
    latest().receive(chatMessage(4));
    latest().receive({ type: "joined", name: "小军", sid: "sid-jun" });
    latest().receive(chatMessage(2));
    latest().receive(chatMessage(3));
    latest().receive(chatMessage(5));
    assert.deepEqual(shownSeqs(connection), [1, 2, 3, 4, "joined", 5]);
    assert.equal(connection.lastSeq, 5);
  });

  test("a reload keeps the transcript and resumes from the stored seq and epoch", () => {
    const storage = createMemoryStorage();
    const before = connectedHarness({ storage }, { epoch: "epoch-A" });
    before.latest().receive(chatMessage(1));
    before.latest().receive(chatMessage(2));

    const after = createHarness({ storage });
    assert.deepEqual(shownSeqs(after.connection), [1, 2]);
    after.connection.start();
    assert.equal(after.latest().query("since"), "2");
    assert.equal(after.latest().query("epoch"), "epoch-A");
    assert.equal(after.latest().query("name"), "小明");
    after.latest().receive(welcome({ epoch: "epoch-A", resumed: true }));
    after.latest().receive(chatMessage(2));
    after.latest().receive(chatMessage(3));
    assert.deepEqual(shownSeqs(after.connection), [1, 2, 3]);
  });

  test("no gap notice on the very first connection, even when the server says resumed:false", () => {
    const { connection, latest } = connectedHarness({}, { resumed: false });
    latest().receive(chatMessage(1));
    assert.deepEqual(shownSeqs(connection), [1]);
  });

  test("a new epoch: old seqs forgotten, old lines kept, one gap notice, nothing new swallowed", () => {
    const { connection, clock, latest } = connectedHarness({}, { epoch: "old" });
    for (const seq of [1, 2, 3]) latest().receive(chatMessage(seq));
    connection.send("unconfirmed");
    const id = connection.pending[0]!.id;

    latest().closeFromServer();
    clock.advance(999);
    assert.equal(latest().query("since"), "3");
    latest().receive(welcome({ epoch: "new", resumed: false }));
    // The new server numbers from 1 again; these are new messages, not repeats.
    latest().receive(chatMessage(1, { text: "new one" }));
    latest().receive(chatMessage(2, { text: "new two" }));

    assert.deepEqual(shownSeqs(connection), [1, 2, 3, "gap", 1, 2]);
    assert.equal(connection.epoch, "new");
    assert.equal(connection.lastSeq, 2);
    assert.deepEqual(
      latest()
        .sentOfType("say")
        .map((frame) => frame.id),
      [id],
      "the outbox is re-sent as usual",
    );

    // A second reset with nothing in between does not stack a second notice.
    latest().closeFromServer();
    clock.advance(1999);
    latest().receive(welcome({ epoch: "newer", resumed: false }));
    latest().closeFromServer();
    clock.advance(3999);
    latest().receive(welcome({ epoch: "newest", resumed: false }));
    assert.equal(connection.entries.filter((entry) => entry.kind === "notice" && entry.notice === "gap").length, 2);
  });

  test("resumed:false in the same epoch marks a gap but still knows which seqs it has", () => {
    const { connection, clock, latest } = connectedHarness({}, { epoch: "same" });
    latest().receive(chatMessage(7));
    latest().closeFromServer();
    clock.advance(999);
    latest().receive(welcome({ epoch: "same", resumed: false }));
    latest().receive(chatMessage(7));
    latest().receive(chatMessage(8));
    assert.deepEqual(shownSeqs(connection), [7, "gap", 8]);
  });

  test("Transcript.welcome reports what happened", () => {
    const transcript = new Transcript(createMemoryStorage());
    assert.equal(transcript.resumePoint(), null);
    assert.equal(transcript.welcome("a", false, 0), "first");
    assert.deepEqual(transcript.resumePoint(), { since: 0, epoch: "a" });
    assert.equal(transcript.welcome("a", true, 0), "resumed");
    assert.equal(transcript.welcome("b", true, 0), "gap", "resumed in another epoch cannot be right");
  });

  test("the transcript keeps the newest 300 lines and does not take back the ones it dropped", () => {
    const transcript = new Transcript(createMemoryStorage());
    transcript.welcome("e", false, 0);
    for (let seq = 1; seq <= 310; seq++) transcript.addMessage(chatMessage(seq));
    assert.equal(transcript.entries.length, 300);
    assert.equal(transcript.addMessage(chatMessage(5)), false);
    assert.equal(transcript.lastSeq, 310);
  });
});

// ---------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------

describe("heartbeat", () => {
  test("Heartbeat pings every interval and reports silence once a ping goes unanswered", () => {
    const clock = new FakeClock();
    const pings: number[] = [];
    let silences = 0;
    const heartbeat = new Heartbeat({
      intervalMs: 10_000,
      timeoutMs: 5_000,
      timers: clock,
      sendPing: (time) => pings.push(time),
      onSilence: () => silences++,
    });
    const start = clock.now();
    heartbeat.start();
    clock.advance(10_000);
    assert.deepEqual(pings, [start + 10_000]);
    clock.advance(4_000);
    heartbeat.noteActivity();
    clock.advance(6_000);
    assert.deepEqual(pings, [start + 10_000, start + 20_000]);
    assert.equal(silences, 0);
    clock.advance(5_000);
    assert.equal(silences, 1);
    clock.advance(60_000);
    assert.equal(pings.length, 2, "stopped after reporting silence");
  });

  test("after the welcome: a ping every 10 s; no answer within 5 s closes the socket and a new one follows", () => {
    const { connection, clock, sockets, latest } = connectedHarness();
    const first = latest();
    clock.advance(10_000);
    const [ping] = first.sentOfType("ping");
    assert.equal(ping?.t, clock.now());

    clock.advance(4_999);
    assert.equal(first.closedByClient, false);
    clock.advance(1);
    assert.equal(first.closedByClient, true, "silent for 5 s: closed without waiting for the browser");
    assert.equal(connection.state, "reconnecting");
    assert.equal(sockets.length, 1);
    clock.advance(999);
    assert.equal(sockets.length, 2);
  });

  test("a pong, or any other frame, counts as life", () => {
    const { clock, latest } = connectedHarness();
    const socket = latest();
    clock.advance(10_000);
    socket.receive({ type: "pong", t: socket.sentOfType("ping")[0]!.t });
    clock.advance(10_000);
    socket.receive(chatMessage(1));
    clock.advance(10_000);
    socket.receiveText("not even json");
    clock.advance(10_000);
    socket.receive({ type: "trace", direction: "in" });
    clock.advance(4_000);
    assert.equal(socket.sentOfType("ping").length, 4);
    assert.equal(socket.closedByClient, false);
  });

  test("the intervals can be changed", () => {
    const { clock, latest } = connectedHarness({ timing: { heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 300 } });
    clock.advance(1000);
    assert.equal(latest().sentOfType("ping").length, 1);
    clock.advance(300);
    assert.equal(latest().closedByClient, true);
  });

  test("never two sockets: events from a replaced socket change nothing", () => {
    const { connection, clock, sockets, latest } = connectedHarness();
    const old = latest();
    clock.advance(15_000); // ping unanswered: old is given up on
    assert.equal(old.closedByClient, true);

    // Its close event arrives while we wait to retry: the plan stays as it was.
    const plannedAt = connection.nextAttemptAt;
    old.closeFromServer();
    assert.equal(connection.nextAttemptAt, plannedAt);
    assert.equal(connection.attempt, 1);
    clock.advance(999);
    assert.equal(sockets.length, 2);

    const replacement = sockets[1]!;
    replacement.receive(welcome({ resumed: true }));
    // The old socket comes back to life, far too late.
    old.closeFromServer();
    old.receive(chatMessage(99));
    old.receive({ type: "left", name: "小红" });
    assert.equal(sockets.length, 2);
    assert.equal(connection.state, "connected");
    assert.deepEqual(shownSeqs(connection), []);
    assert.equal(replacement.closedByClient, false);
  });
});

// ---------------------------------------------------------------------------
// The network coming and going
// ---------------------------------------------------------------------------

describe("online, visibility and offline", () => {
  test("wake() while waiting for a retry tries at once", () => {
    const { connection, clock, sockets, latest } = connectedHarness();
    for (let drop = 0; drop < 5; drop++) {
      latest().closeFromServer();
      clock.advance(connection.nextAttemptAt! - clock.now());
    }
    latest().closeFromServer();
    assert.ok(connection.nextAttemptAt! - clock.now() > 20_000);
    const before = sockets.length;
    connection.wake();
    assert.equal(sockets.length, before + 1);
    assert.equal(connection.nextAttemptAt, null);
    connection.wake();
    assert.equal(sockets.length, before + 1, "still one socket while it is connecting");
  });

  test("wake() while connected checks the connection with a ping right away", () => {
    const { connection, clock, latest } = connectedHarness();
    clock.advance(1000);
    connection.wake();
    assert.equal(latest().sentOfType("ping").length, 1);
    clock.advance(5000);
    assert.equal(latest().closedByClient, true);
  });

  test("while the browser is offline no attempts are made; the online signal brings one at once", () => {
    const harness = connectedHarness();
    const { connection, clock, sockets } = harness;
    harness.setOnline(false);
    harness.latest().closeFromServer();
    assert.equal(connection.state, "offline");
    clock.advance(120_000);
    assert.equal(sockets.length, 1);

    harness.setOnline(true);
    connection.wake();
    assert.equal(sockets.length, 2);
  });

  test("going offline while waiting to retry stops the retry clock", () => {
    const harness = connectedHarness();
    harness.latest().closeFromServer();
    harness.setOnline(false);
    harness.connection.noteOffline();
    assert.equal(harness.connection.state, "offline");
    assert.equal(harness.connection.nextAttemptAt, null);
    harness.clock.advance(60_000);
    assert.equal(harness.sockets.length, 1);
  });

  test("starting while offline waits for the network", () => {
    const harness = createHarness();
    harness.setOnline(false);
    harness.connection.start();
    assert.equal(harness.connection.state, "offline");
    assert.equal(harness.sockets.length, 0);
  });

  test("watchBrowserSignals: online and a visible page wake the connection, offline is passed on", () => {
    const calls: string[] = [];
    const windowTarget = new EventTarget();
    const page = Object.assign(new EventTarget(), { visibilityState: "hidden" });
    const connection = { wake: () => calls.push("wake"), noteOffline: () => calls.push("offline") };
    watchBrowserSignals(connection, windowTarget, page);

    windowTarget.dispatchEvent(new Event("offline"));
    windowTarget.dispatchEvent(new Event("online"));
    page.dispatchEvent(new Event("visibilitychange"));
    page.visibilityState = "visible";
    page.dispatchEvent(new Event("visibilitychange"));
    assert.deepEqual(calls, ["offline", "wake", "wake"]);
  });
});

// ---------------------------------------------------------------------------
// States, names, presence
// ---------------------------------------------------------------------------

describe("connection", () => {
  test("states: connecting, connected, reconnecting, connected, offline after stop()", () => {
    const states: string[] = [];
    const harness = createHarness({ onChange: () => states.push(harness.connection.state) });
    const { connection, clock, latest } = harness;
    connection.start();
    latest().receive(welcome());
    latest().closeFromServer();
    clock.advance(999);
    latest().receive(welcome({ resumed: true }));
    connection.stop();
    const distinct = states.filter((state, index) => state !== states[index - 1]);
    assert.deepEqual(distinct, ["connecting", "connected", "reconnecting", "connected", "offline"]);
    assert.equal(latest().closedByClient, true);
  });

  test("rename on an open connection sends {type:rename}; the server's renamed changes our name and shows one line", () => {
    const { connection, sockets, latest, storage } = connectedHarness({}, { name: "小红" });
    connection.rename("  Bob ");
    assert.equal(sockets.length, 1, "no reconnection");
    assert.deepEqual(latest().sentOfType("rename"), [{ type: "rename", name: "Bob" }]);
    assert.equal(connection.name, "小红", "not ours until the server says so");
    assert.equal(connection.wantedName, "Bob");
    latest().receive({ type: "renamed", sid: MY_SID, from: "小红", to: "Bob" });
    assert.equal(connection.name, "Bob");
    assert.equal(connection.wantedName, null);
    assert.equal(storage.getItem(STORAGE_KEYS.name), "Bob", "the next connection asks for Bob");
    assert.deepEqual(connection.members, [{ name: "Bob", sid: MY_SID, away: false }]);
    assert.deepEqual(
      connection.entries.map((entry) =>
        entry.kind === "notice"
          ? [entry.notice, noticeName(entry), entry.notice === "presence" ? undefined : entry.to]
          : "message",
      ),
      [["renamed", "小红", "Bob"]],
    );
    connection.rename("Bob");
    connection.rename("");
    assert.equal(latest().sentOfType("rename").length, 1, "same or empty name: nothing to do");
  });

  test("someone else's rename updates the member list and shows one line", () => {
    const { connection, latest } = connectedHarness({}, { others: [{ name: "Teacher", sid: OTHER_SID }] });
    latest().receive({ type: "renamed", sid: OTHER_SID, from: "Teacher", to: "老师" });
    assert.deepEqual(
      connection.members.map((member) => member.name),
      ["小明", "老师"],
    );
    assert.equal(connection.name, "小明");
    assert.equal(connection.entries.length, 1);
  });

  test("a refused rename (name_taken, bad_name) leaves the name as it was, and is not asked again", () => {
    const { connection, clock, latest, errors } = connectedHarness({}, { name: "小明" });
    connection.rename("Teacher");
    latest().receive({ type: "error", code: "name_taken", message: "Teacher is taken; you stay 小明." });
    assert.equal(connection.name, "小明");
    assert.equal(connection.wantedName, null);
    assert.equal(errors[0]?.code, "name_taken");
    connection.rename("\u0007bell");
    latest().receive({ type: "error", code: "bad_name", message: "No control characters. You stay 小明." });
    assert.equal(connection.wantedName, null);
    latest().closeFromServer();
    clock.advance(999);
    assert.equal(latest().query("name"), "小明");
    latest().receive(welcome({ name: "小明", resumed: true }));
    assert.deepEqual(latest().sentOfType("rename"), [], "nothing pending after the welcome");
  });

  test(
    "a rename while offline is asked for in the next URL, " +
      "and again after the welcome if our identity kept its old name",
    () => {
      const { connection, clock, latest } = connectedHarness({}, { name: "小明" });
      latest().closeFromServer();
      connection.rename("阿明");
      clock.advance(999);
      assert.equal(latest().query("name"), "阿明");
      // The server still holds our identity under 小明 (within its grace): it keeps that name.
      latest().receive(welcome({ name: "小明", resumed: true }));
      assert.deepEqual(latest().sentOfType("rename"), [{ type: "rename", name: "阿明" }]);
      latest().receive({ type: "renamed", sid: MY_SID, from: "小明", to: "阿明" });
      assert.equal(connection.name, "阿明");

      // A fresh identity (the server restarted) simply gets the asked-for name.
      latest().closeFromServer();
      connection.rename("Ming");
      clock.advance(1999);
      latest().receive(welcome({ name: "Ming", resumed: true }));
      assert.deepEqual(latest().sentOfType("rename"), []);
      assert.equal(connection.wantedName, null);
    },
  );

  test("joined, left, away and back keep the member list by sid; only joined and left are lines; our own sid is not news", () => {
    const { connection, latest } = connectedHarness({}, { name: "小明", others: [{ name: "小红", sid: "sid-hong" }] });
    latest().receive({ type: "joined", name: "小军", sid: "sid-jun" });
    latest().receive({ type: "away", name: "小红", sid: "sid-hong" });
    assert.deepEqual(
      connection.members.map((member) => `${member.name}${member.away ? " (away)" : ""}`),
      ["小明", "小红 (away)", "小军"],
      "in arrival order: away and back change a member in place",
    );
    assert.deepEqual([connection.memberCount, connection.online], [3, 2]);
    latest().receive({ type: "back", name: "小红", sid: "sid-hong" });
    latest().receive({ type: "left", name: "小军", sid: "sid-jun" });
    latest().receive({ type: "joined", name: "小明", sid: MY_SID });
    latest().receive({ type: "away", name: "小明", sid: MY_SID });
    latest().receive({ type: "back", name: "小明", sid: MY_SID });
    assert.deepEqual(
      connection.members.map((member) => member.name),
      ["小明", "小红"],
    );
    assert.deepEqual([connection.memberCount, connection.online], [2, 2]);
    assert.deepEqual(
      connection.entries.map((entry) => (entry.kind === "notice" ? `${entry.notice} ${noticeName(entry)}` : "message")),
      ["joined 小军", "left 小军"],
      "a reload elsewhere (away, back) is not a line, and we are not news to ourselves",
    );
  });

  test("a left for a name that is ours by name but not by sid is someone else leaving", () => {
    const { connection, latest } = connectedHarness(
      {},
      { name: "小明", others: [{ name: "小明 (old)", sid: OTHER_SID }] },
    );
    latest().receive({ type: "left", name: "小明", sid: OTHER_SID });
    assert.deepEqual(
      connection.members.map((member) => member.sid),
      [MY_SID],
    );
    assert.equal(connection.entries.length, 1);
  });

  test("frames it does not understand are ignored", () => {
    const { connection, latest } = connectedHarness();
    latest().receive({ type: "trace", frame: { opcode: 1 } });
    latest().receive({ type: "message", seq: "one" });
    latest().receiveText("[1,2,3]");
    latest().receiveText("{");
    assert.equal(connection.state, "connected");
    assert.equal(connection.entries.length, 0);
  });
});

// ---------------------------------------------------------------------------
// Large rooms: the member list a page at a time, presence summed up
// ---------------------------------------------------------------------------

/** `count` members named m1, m2, … with sids s1, s2, …, from number `from`. */
function someMembers(count: number, from = 1): Member[] {
  return Array.from({ length: count }, (_, index) => ({
    name: `m${from + index}`,
    sid: `s${from + index}`,
    away: false,
  }));
}

function welcomeFrame(members: Member[], counts: { memberCount: number; online: number; batched: boolean }) {
  return {
    type: "welcome" as const,
    name: "小明",
    you: MY_SID,
    members,
    memberCount: counts.memberCount,
    online: counts.online,
    presenceBatched: counts.batched,
    seq: 0,
    oldestSeq: 1,
    epoch: "e",
    resumed: false,
  };
}

function summaryFrame(fields: {
  memberCount: number;
  online: number;
  joined?: Member[];
  joinedCount?: number;
  left?: Member[];
  leftCount?: number;
}) {
  const { joined = [], left = [] } = fields;
  return {
    type: "presence" as const,
    memberCount: fields.memberCount,
    online: fields.online,
    joined,
    joinedCount: fields.joinedCount ?? joined.length,
    left,
    leftCount: fields.leftCount ?? left.length,
  };
}

function membersFrame(offset: number, members: Member[], memberCount: number, batched = true) {
  return { type: "members" as const, offset, memberCount, online: memberCount, presenceBatched: batched, members };
}

const sidsOf = (list: MemberList) => list.members.map((member) => member.sid);

describe("large rooms", () => {
  test("MemberList: a first page says it is partial, asks once for the rest from its end, and appends without repeats", () => {
    const list = new MemberList();
    list.welcome(welcomeFrame(someMembers(100), { memberCount: 250, online: 240, batched: true }));
    assert.deepEqual([list.status, list.memberCount, list.online, list.presenceBatched], ["partial", 250, 240, true]);
    assert.equal(list.nextOffset, 100);
    assert.equal(list.ask(), 100);
    assert.equal(list.loading, true);
    assert.equal(list.ask(), null, "no second request while one is out");
    // The answer overlaps what is shown (the room changed meanwhile): each sid once.
    list.page(membersFrame(100, someMembers(100, 99), 250));
    assert.equal(list.members.length, 198);
    assert.equal(new Set(sidsOf(list)).size, 198);
    assert.equal(list.loading, false);
    assert.equal(list.ask(), 198);
    list.refused();
    assert.equal(list.ask(), 198, "a refused request may be asked again");
    list.page(membersFrame(198, someMembers(52, 199), 250));
    assert.deepEqual([list.status, list.nextOffset, list.members.length], ["complete", null, 250]);
    assert.equal(list.ask(), null);
  });

  test("MemberList: a summary sets the counts, adds named newcomers to a whole list and drops the named leavers", () => {
    const list = new MemberList();
    list.welcome(welcomeFrame(someMembers(100), { memberCount: 100, online: 100, batched: false }));
    assert.equal(list.status, "complete");
    list.summary(summaryFrame({ memberCount: 101, online: 99, joined: someMembers(3, 101), left: someMembers(2, 1) }));
    assert.deepEqual([list.memberCount, list.online, list.presenceBatched], [101, 99, true]);
    assert.deepEqual(sidsOf(list).slice(0, 2), ["s3", "s4"]);
    assert.deepEqual(sidsOf(list).slice(-3), ["s101", "s102", "s103"]);
    assert.equal(list.status, "complete");

    // Someone who came and went within the second is named twice: gone.
    list.summary(
      summaryFrame({ memberCount: 101, online: 99, joined: someMembers(1, 200), left: someMembers(1, 200) }),
    );
    assert.equal(sidsOf(list).includes("s200"), false);

    // More newcomers than named: the list is no longer the whole room, and "more" asks from its end.
    list.summary(summaryFrame({ memberCount: 121, online: 119, joined: someMembers(10, 300), joinedCount: 20 }));
    assert.deepEqual([list.status, list.members.length, list.nextOffset], ["partial", 111, 111]);
    // Newcomers to a partial list are beyond its end: not added, "more" finds them.
    list.summary(summaryFrame({ memberCount: 122, online: 120, joined: someMembers(1, 400) }));
    assert.equal(sidsOf(list).includes("s400"), false);
  });

  test("MemberList: leavers counted but not named make the list stale, and only the list from 0 makes it honest again", () => {
    const list = new MemberList();
    list.welcome(welcomeFrame(someMembers(100), { memberCount: 150, online: 150, batched: true }));
    list.summary(summaryFrame({ memberCount: 130, online: 130, left: someMembers(10, 1), leftCount: 20 }));
    assert.equal(list.status, "stale", "ten unnamed leavers may be among those shown");
    assert.equal(sidsOf(list).includes("s1"), false, "the named ones are gone at once");
    assert.equal(list.nextOffset, 0);
    assert.equal(list.ask(), 0);
    list.page(membersFrame(0, someMembers(100, 21), 130));
    assert.deepEqual([list.status, list.members.length, list.nextOffset], ["partial", 100, 100]);
  });

  test("MemberList: a small room counts by hand; the unasked list from 0 (the room became small) replaces everything", () => {
    const list = new MemberList();
    list.welcome(welcomeFrame(someMembers(3), { memberCount: 3, online: 3, batched: false }));
    list.presence({ type: "away", name: "m2", sid: "s2" });
    list.presence({ type: "away", name: "m2", sid: "s2" });
    assert.deepEqual([list.memberCount, list.online], [3, 2], "news of what is known already changes nothing");
    list.presence({ type: "left", name: "m2", sid: "s2" });
    list.presence({ type: "joined", name: "m9", sid: "s9" });
    list.presence({ type: "joined", name: "m9", sid: "s9" });
    assert.deepEqual([list.memberCount, list.online, sidsOf(list)], [3, 3, ["s1", "s3", "s9"]]);

    list.welcome(welcomeFrame(someMembers(100), { memberCount: 300, online: 280, batched: true }));
    list.summary(summaryFrame({ memberCount: 300, online: 280, left: [], leftCount: 5 }));
    list.page(membersFrame(0, someMembers(90, 500), 90, false));
    assert.deepEqual(
      [list.status, list.presenceBatched, list.members.length, list.online],
      ["complete", false, 90, 90],
    );
    list.presence({ type: "joined", name: "new", sid: "s-new" });
    assert.equal(sidsOf(list).at(-1), "s-new", "one frame per change again, added to the whole list");
  });

  test("the connection: counts from the server, one line of counts per summary (summaries in a row add up), we are not news", () => {
    const { connection, latest } = connectedHarness(
      {},
      { others: someMembers(99), memberCount: 180, online: 170, presenceBatched: true, oldestSeq: 1 },
    );
    assert.deepEqual([connection.memberCount, connection.online, connection.memberListStatus], [180, 170, "partial"]);
    latest().receive(
      summaryFrame({
        memberCount: 193,
        online: 180,
        joined: [{ name: "小明", sid: MY_SID, away: false }],
        joinedCount: 13,
      }),
    );
    latest().receive(summaryFrame({ memberCount: 190, online: 177, left: someMembers(3, 1) }));
    latest().receive(summaryFrame({ memberCount: 190, online: 176 }));
    assert.deepEqual(
      connection.entries.map((entry) =>
        entry.kind === "notice" && entry.notice === "presence" ? [entry.joined, entry.left] : entry.kind,
      ),
      [[12, 3]],
      "one line, our own arrival not counted; a summary of only away and back writes nothing",
    );
    assert.deepEqual([connection.memberCount, connection.online], [190, 176]);
    latest().receive(chatMessage(1));
    latest().receive(summaryFrame({ memberCount: 191, online: 177, joinedCount: 1 }));
    assert.deepEqual(shownSeqs(connection), ["presence", 1, "presence"]);
    // A rename of someone beyond the page: a line, and nobody added to the list.
    latest().receive({ type: "renamed", sid: "s-far", from: "Far", to: "Away" });
    assert.equal(
      connection.members.some((member) => member.sid === "s-far"),
      false,
    );
    assert.equal(connection.entries.length, 4);
  });

  test("the connection: more members on request only, one request at a time, refused ones may be asked again; none offline", () => {
    const { connection, clock, latest } = connectedHarness(
      {},
      { others: someMembers(99), memberCount: 150, online: 150, presenceBatched: true, oldestSeq: 1 },
    );
    assert.deepEqual(latest().sentOfType("members"), [], "nothing is asked by itself");
    connection.loadMoreMembers();
    connection.loadMoreMembers();
    assert.deepEqual(latest().sentOfType("members"), [{ type: "members", offset: 100 }]);
    assert.equal(connection.membersLoading, true);
    latest().receive({ type: "error", code: "rate_limited", message: "Slow down." });
    assert.equal(connection.membersLoading, false);
    connection.loadMoreMembers();
    latest().receive(membersFrame(100, someMembers(50, 100), 150));
    assert.equal(connection.memberListStatus, "complete");
    assert.equal(connection.members.length, 150);
    connection.loadMoreMembers();
    assert.equal(latest().sentOfType("members").length, 2);

    latest().closeFromServer();
    assert.deepEqual([connection.members.length, connection.memberCount, connection.online], [0, 0, 0]);
    connection.loadMoreMembers();
    clock.advance(999);
    latest().receive(welcome({ others: someMembers(99), memberCount: 150, online: 150, presenceBatched: true }));
    assert.equal(connection.membersLoading, false, "a request on the old socket is not waited for");
    assert.deepEqual(latest().sentOfType("members"), []);
  });

  test("parseServerFrame reads presence summaries, member pages and history pages, and checks them", () => {
    const summary = { ...summaryFrame({ memberCount: 5, online: 4, joined: [{ name: "a", sid: "1", away: false }] }) };
    assert.deepEqual(parseServerFrame(JSON.stringify(summary)), summary);
    assert.equal(parseServerFrame(JSON.stringify({ ...summary, joined: [{ name: "a" }] })), null);
    assert.equal(parseServerFrame(JSON.stringify({ ...summary, online: -1 })), null);
    const page = membersFrame(100, [{ name: "b", sid: "2", away: true }], 101);
    assert.deepEqual(parseServerFrame(JSON.stringify(page)), page);
    assert.equal(parseServerFrame(JSON.stringify({ ...page, offset: "100" })), null);
    const history = {
      type: "history",
      before: 10,
      more: true,
      messages: [chatMessage(8), chatMessage(12), { seq: 9 }],
    };
    assert.deepEqual(
      parseServerFrame(JSON.stringify(history)),
      {
        type: "history",
        before: 10,
        more: true,
        messages: [readChatMessageOf(8)],
      },
      "a message that does not fit, or is not older than `before`, is left out",
    );
  });
});

/** chatMessage(seq) as parseServerFrame gives it back. */
function readChatMessageOf(seq: number) {
  const { type: _, ...message } = chatMessage(seq);
  return message;
}

// ---------------------------------------------------------------------------
// Older messages: a first visit shows the newest page; older ones on request
// ---------------------------------------------------------------------------

/** The messages with seqs from..to, as a `history` answer carries them. */
function messagesFrom(from: number, to: number) {
  const list = [];
  for (let seq = from; seq <= to; seq++) list.push(readChatMessageOf(seq));
  return list;
}

describe("older messages", () => {
  test("a first visit shows the newest page without a gap; scrolling up asks once; pages go on top, in order, never as gaps", () => {
    const { connection, latest } = connectedHarness({}, { seq: 250, oldestSeq: 1 });
    for (let seq = 151; seq <= 250; seq++) latest().receive(chatMessage(seq));
    assert.equal(connection.entries.length, 100, "no gap notice: older messages are only not loaded");
    assert.equal(connection.olderMessages, "available");

    connection.loadOlder();
    connection.loadOlder();
    assert.deepEqual(latest().sentOfType("history"), [{ type: "history", before: 151 }]);
    assert.equal(connection.olderMessages, "loading");
    latest().receive(chatMessage(251));
    latest().receive({ type: "history", before: 151, more: true, messages: messagesFrom(51, 150) });
    assert.deepEqual(shownSeqs(connection), range(51, 251));
    assert.equal(connection.olderMessages, "available");

    connection.loadOlder();
    assert.deepEqual(latest().sentOfType("history").at(-1), { type: "history", before: 51 });
    // Overlapping what is shown, as an answer may: each seq once.
    latest().receive({ type: "history", before: 51, more: false, messages: messagesFrom(1, 60) });
    assert.deepEqual(shownSeqs(connection), range(1, 251));
    assert.equal(connection.olderMessages, "exhausted");
    connection.loadOlder();
    assert.equal(latest().sentOfType("history").length, 2);
    assert.equal(connection.lastSeq, 251, "older pages do not move the resume point");
  });

  test("nothing is offered once the oldest seq the server keeps is shown, nor by a server that sends no oldestSeq", () => {
    const kept = connectedHarness({}, { seq: 120, oldestSeq: 21 });
    for (let seq = 21; seq <= 120; seq++) kept.latest().receive(chatMessage(seq));
    assert.equal(kept.connection.olderMessages, "exhausted");
    kept.connection.loadOlder();
    assert.deepEqual(kept.latest().sentOfType("history"), []);

    const older = connectedHarness({}, { seq: 120 });
    older.latest().receive(chatMessage(120));
    assert.equal(older.connection.olderMessages, "exhausted");

    const empty = connectedHarness({}, { seq: 0, oldestSeq: 1 });
    assert.equal(empty.connection.olderMessages, "exhausted", "nothing shown: nothing to ask below");
  });

  test("a refused request may be asked again; a lost connection's request is not waited for; offline nothing is asked", () => {
    const { connection, clock, latest } = connectedHarness({}, { seq: 300, oldestSeq: 1 });
    latest().receive(chatMessage(300));
    connection.loadOlder();
    latest().receive({ type: "error", code: "rate_limited", message: "Slow down." });
    assert.equal(connection.olderMessages, "available");
    connection.loadOlder();
    assert.equal(latest().sentOfType("history").length, 2);

    latest().closeFromServer();
    assert.equal(connection.olderMessages, "unavailable");
    connection.loadOlder();
    clock.advance(999);
    latest().receive(welcome({ seq: 300, oldestSeq: 1, resumed: true }));
    assert.equal(connection.olderMessages, "available");
    assert.deepEqual(latest().sentOfType("history"), []);
    // An answer that arrives unasked still only adds older messages.
    latest().receive({ type: "history", before: 300, more: true, messages: messagesFrom(298, 299) });
    assert.deepEqual(shownSeqs(connection), [298, 299, 300]);
  });

  test("after a new epoch, older pages are the new epoch's and go below the gap notice", () => {
    const { connection, clock, latest } = connectedHarness({}, { epoch: "old", seq: 2, oldestSeq: 1 });
    for (const seq of [1, 2]) latest().receive(chatMessage(seq));
    latest().closeFromServer();
    clock.advance(999);
    latest().receive(welcome({ epoch: "new", seq: 400, oldestSeq: 1, resumed: false }));
    for (let seq = 301; seq <= 400; seq++) latest().receive(chatMessage(seq));
    connection.loadOlder();
    assert.deepEqual(latest().sentOfType("history"), [{ type: "history", before: 301 }]);
    latest().receive({ type: "history", before: 301, more: true, messages: messagesFrom(201, 300) });
    assert.deepEqual(shownSeqs(connection), [1, 2, "gap", ...range(201, 400)]);
  });

  test("Transcript: loaded pages stay however long the list gets; only the newest 300 lines are stored", () => {
    const storage = createMemoryStorage();
    const transcript = new Transcript(storage);
    transcript.welcome("e", false, 0);
    for (let seq = 701; seq <= 1000; seq++) transcript.addMessage(readChatMessageOf(seq));
    assert.equal(transcript.addOlder(messagesFrom(601, 700)), 100);
    assert.equal(transcript.addOlder(messagesFrom(650, 700)), 0, "already shown");
    assert.equal(transcript.entries.length, 400);
    assert.equal(transcript.oldestShownSeq, 601);
    // New messages push out the oldest line, not a whole page.
    transcript.addMessage(readChatMessageOf(1001));
    assert.equal(transcript.entries.length, 400);
    assert.equal(transcript.oldestShownSeq, 602);
    // What was dropped comes back only when asked for.
    assert.equal(transcript.addMessage(readChatMessageOf(601)), false);
    assert.equal(transcript.addOlder([readChatMessageOf(601)]), 1);

    const reloaded = new Transcript(storage);
    assert.equal(reloaded.entries.length, 300);
    assert.equal(reloaded.oldestShownSeq, 702);
    assert.equal(reloaded.addMessage(readChatMessageOf(650)), false, "left out of storage: counts as seen");
    assert.equal(reloaded.addOlder([readChatMessageOf(701)]), 1);
  });

  test("Transcript: presence lines add up until something else is said, and survive a reload", () => {
    const storage = createMemoryStorage();
    const transcript = new Transcript(storage);
    transcript.welcome("e", false, 0);
    transcript.addPresence(0, 0, 1);
    assert.equal(transcript.entries.length, 0);
    transcript.addPresence(2, 0, 1);
    transcript.addPresence(3, 1, 2);
    transcript.addMessage(readChatMessageOf(1));
    transcript.addPresence(0, 4, 3);
    const lines = new Transcript(storage).entries.map((entry) =>
      entry.kind === "notice" && entry.notice === "presence" ? [entry.joined, entry.left, entry.time] : entry.kind,
    );
    assert.deepEqual(lines, [[5, 1, 2], "message", [0, 4, 3]]);
  });

  test("the words for a presence line, in both languages", () => {
    assert.equal(TEXT.en.presence(12, 3), "12 joined, 3 left");
    assert.equal(TEXT.en.presence(0, 3), "3 left");
    assert.equal(TEXT.zh.presence(12, 3), "12 人加入，3 人离开");
    assert.equal(TEXT.zh.presence(12, 0), "12 人加入");
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, index) => from + index);
}

// ---------------------------------------------------------------------------
// Sessions: one per tab, and a duplicated tab takes its own
// ---------------------------------------------------------------------------

/** Tabs of one origin: what one posts, every other hears (a BroadcastChannel never hears itself). */
class FakeTabs {
  private readonly listeners: Array<{ tab: number; listener: (message: unknown) => void }> = [];
  private tabs = 0;

  open(): TabChannel {
    const tab = ++this.tabs;
    return {
      post: (message) => {
        // Structured clone, as BroadcastChannel does.
        const copy: unknown = JSON.parse(JSON.stringify(message));
        for (const each of this.listeners) if (each.tab !== tab) each.listener(copy);
      },
      listen: (listener) => void this.listeners.push({ tab, listener }),
    };
  }
}

/** sessionStorage as a duplicated tab gets it: a copy of the original's. */
function copyOf(storage: KeyValueStorage): KeyValueStorage {
  const copy = createMemoryStorage();
  for (const key of Object.values(STORAGE_KEYS)) {
    const value = storage.getItem(key);
    if (value !== null) copy.setItem(key, value);
  }
  return copy;
}

describe("sessions", () => {
  let counter = 0;
  const secrets = () => `fake-secret-${String(++counter).padStart(6, "0")}`;

  test("a tab keeps its session across reloads (same sessionStorage, no other tab)", () => {
    const tabs = new FakeTabs();
    const storage = createMemoryStorage();
    const first = new TabSession(storage, tabs.open(), secrets, () => assert.fail("not replaced"));
    // The reloaded page is a new document; the old one, and its channel, are gone.
    const reloaded = new TabSession(storage, new FakeTabs().open(), secrets, () => assert.fail("not replaced"));
    assert.equal(reloaded.secret, first.secret);
    assert.equal(storage.getItem(STORAGE_KEYS.session), first.secret);
  });

  test("a duplicated tab (a copy of sessionStorage) takes a new session; the original keeps its own", () => {
    const tabs = new FakeTabs();
    const storage = createMemoryStorage();
    let originalReplaced = 0;
    const original = new TabSession(storage, tabs.open(), secrets, () => originalReplaced++);
    storage.setItem(STORAGE_KEYS.you, "sid-of-original");
    const duplicateStorage = copyOf(storage);
    let duplicateReplaced = 0;
    const duplicate = new TabSession(duplicateStorage, tabs.open(), secrets, () => duplicateReplaced++);
    assert.notEqual(duplicate.secret, original.secret);
    assert.equal(duplicateReplaced, 1);
    assert.equal(originalReplaced, 0);
    assert.equal(storage.getItem(STORAGE_KEYS.session), original.secret);
    assert.equal(duplicateStorage.getItem(STORAGE_KEYS.session), duplicate.secret);
    assert.equal(duplicateStorage.getItem(STORAGE_KEYS.you), null, "the original's public id is not the duplicate's");
    assert.equal(storage.getItem(STORAGE_KEYS.you), "sid-of-original");
  });

  test("a duplicated ChatConnection reconnects at once under its new session and stops calling the old messages its own", () => {
    const tabs = new FakeTabs();
    const original = connectedHarness({ tabChannel: tabs.open() });
    original.latest().receive(chatMessage(1, { sid: MY_SID }));
    const duplicate = createHarness({ storage: copyOf(original.storage), tabChannel: tabs.open() });
    const entry = duplicate.connection.entries[0];
    assert.ok(entry?.kind === "message");
    assert.equal(duplicate.connection.isMine(entry.message), false, "the duplicate is someone new");
    duplicate.connection.start();
    assert.notEqual(duplicate.latest().query("session"), original.latest().query("session"));
    assert.equal(original.sockets.length, 1, "the original tab is undisturbed");
  });

  test("a stored session that is not valid is replaced", () => {
    const storage = createMemoryStorage();
    storage.setItem(STORAGE_KEYS.session, "bad session");
    assert.ok(sessionIsValid(new TabSession(storage, null, secrets, () => {}).secret));
  });
});

// ---------------------------------------------------------------------------
// Small pure pieces
// ---------------------------------------------------------------------------

describe("helpers", () => {
  test("parseServerFrame checks what it returns", () => {
    assert.equal(parseServerFrame("{"), null);
    assert.equal(parseServerFrame(new ArrayBuffer(2)), null);
    assert.equal(parseServerFrame(JSON.stringify({ type: "trace" })), null);
    assert.equal(parseServerFrame(JSON.stringify({ type: "welcome", name: "x" })), null);
    assert.deepEqual(parseServerFrame(JSON.stringify({ ...chatMessage(3), extra: true })), {
      type: "message",
      message: { seq: 3, id: "other-3", sid: OTHER_SID, from: "小红", text: "message 3", time: 1_700_000_000_003 },
    });
    const { sid: _, ...withoutSid } = chatMessage(4);
    const legacy = parseServerFrame(JSON.stringify(withoutSid));
    assert.equal(legacy?.type === "message" && legacy.message.sid, "", "a message stored before ids: nobody's own");
    assert.equal(parseServerFrame(JSON.stringify({ type: "joined", name: "x" })), null, "presence needs a sid");
    assert.deepEqual(
      parseServerFrame(JSON.stringify(welcome({ others: [{ name: "小红", sid: "h", away: true }] }))),
      {
        type: "welcome",
        name: "小明",
        you: MY_SID,
        members: [
          { name: "小明", sid: MY_SID, away: false },
          { name: "小红", sid: "h", away: true },
        ],
        memberCount: 2,
        online: 1,
        presenceBatched: false,
        seq: 0,
        oldestSeq: null,
        epoch: "epoch-1",
        resumed: false,
      },
      "a server older than the counts: they are the list's, and there are no older pages",
    );
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "error", code: "bad_json", message: "No." })), {
      type: "error",
      code: "bad_json",
      message: "No.",
      id: null,
    });
  });

  test("resolveServer: ?server= wins, then the page's own host, then localhost:5500 for file://", () => {
    const http = resolveServer({ protocol: "http:", host: "example.org:8080", search: "" });
    assert.deepEqual(http, { kind: "page", url: "ws://example.org:8080/" });
    assert.deepEqual(resolveServer({ protocol: "https:", host: "example.org", search: "" }), {
      kind: "page",
      url: "wss://example.org/",
    });
    assert.deepEqual(resolveServer({ protocol: "file:", host: "", search: "" }), {
      kind: "disk",
      url: "ws://localhost:5500/",
    });
    assert.deepEqual(resolveServer({ protocol: "http:", host: "h", search: "?server=wss://chat.example/" }), {
      kind: "chosen",
      url: "wss://chat.example/",
    });
  });

  test("resolveServer: a ?server= that is not ws:// or wss:// is an error to show, not replaced by a guess", () => {
    for (const given of ["http://127.0.0.1:5500/", "nonsense", "", "localhost:5500"]) {
      const search = `?server=${encodeURIComponent(given)}`;
      assert.deepEqual(resolveServer({ protocol: "file:", host: "", search }), { kind: "invalid", given }, given);
      assert.deepEqual(serverHelp(resolveServer({ protocol: "http:", host: "h", search }), "offline"), {
        kind: "invalid",
        given,
      });
    }
  });

  test("serverHelp: a page from disk or with ?server= says where it tries once an attempt failed; its own server's page does not", () => {
    const disk = resolveServer({ protocol: "file:", host: "", search: "" });
    assert.deepEqual(serverHelp(disk, "connecting"), { kind: "none" }, "nothing failed yet");
    assert.deepEqual(serverHelp(disk, "reconnecting"), { kind: "no-answer", url: "ws://localhost:5500/", local: true });
    assert.deepEqual(serverHelp(disk, "connected"), { kind: "none" });
    assert.deepEqual(serverHelp(disk, "offline"), { kind: "none" }, "the browser has no network: not the server");
    const chosen = (url: string) => resolveServer({ protocol: "file:", host: "", search: `?server=${url}` });
    assert.deepEqual(serverHelp(chosen("ws://127.0.0.1:9000/"), "reconnecting"), {
      kind: "no-answer",
      url: "ws://127.0.0.1:9000/",
      local: true,
    });
    assert.deepEqual(serverHelp(chosen("wss://chat.example/"), "reconnecting"), {
      kind: "no-answer",
      url: "wss://chat.example/",
      local: false,
    });
    const served = resolveServer({ protocol: "http:", host: "127.0.0.1:5500", search: "" });
    assert.deepEqual(serverHelp(served, "reconnecting"), { kind: "none" });
  });

  test("the help's words name the address and, on this machine, the commands that start a server", () => {
    const flat = (parts: ReturnType<typeof TEXT.en.noServer>) =>
      parts.map((part) => (typeof part === "string" ? part : `\`${part.code}\``)).join("");
    assert.equal(
      flat(TEXT.en.noServer("ws://localhost:5500/", true)),
      "No chat server answers at ws://localhost:5500/. Start one in the chat room's folder: `npm start` " +
        "(or `node server.ts` on Node 24).",
    );
    assert.match(
      flat(TEXT.zh.noServer("ws://localhost:5500/", true)),
      /ws:\/\/localhost:5500\/.*`npm start`.*`node server.ts`/,
    );
    assert.doesNotMatch(flat(TEXT.en.noServer("wss://chat.example/", false)), /npm start/);
    assert.match(flat(TEXT.en.badServer("http://x/")), /^`\?server=http:\/\/x\/` .*not a WebSocket address/);
    assert.match(flat(TEXT.zh.badServer("http://x/")), /^地址栏里的 `\?server=http:\/\/x\/` 不是 WebSocket 地址/);
  });

  test("without an address (serverUrl null) start() opens nothing, and nothing later does either", () => {
    const { connection, sockets, clock } = createHarness({ serverUrl: null });
    connection.start();
    connection.wake();
    clock.advance(60_000);
    assert.equal(sockets.length, 0);
    assert.equal(connection.state, "offline");
  });

  test("buildSocketUrl keeps the server's own query and adds ours; hideSession hides the secret", () => {
    assert.equal(buildSocketUrl("ws://h:1", null, null, null), "ws://h:1/");
    const url = buildSocketUrl("ws://h:1/?room=a", "s3cret_s3cret-123", "A B", { since: 4, epoch: "x" });
    assert.equal(url, "ws://h:1/?room=a&session=s3cret_s3cret-123&name=A%20B&since=4&epoch=x");
    assert.equal(hideSession(url), "ws://h:1/?room=a&session=…&name=A%20B&since=4&epoch=x");
  });

  test("createSessionSecret: 128 random bits as 22 base64url characters, from getRandomValues", () => {
    const secret = createSessionSecret({ getRandomValues: (bytes) => bytes.fill(0xfb) });
    assert.equal(secret, "-_v7-_v7-_v7-_v7-_v7-w");
    assert.ok(sessionIsValid(secret));
    const fallback = createSessionSecret(undefined, () => 0.5);
    assert.equal(fallback.length, 22);
    assert.ok(sessionIsValid(fallback));
    assert.equal(sessionIsValid("short"), false);
    assert.equal(sessionIsValid("has spaces in it, sixteen+"), false);
  });

  test("readTimingFromQuery reads only positive whole numbers", () => {
    assert.deepEqual(readTimingFromQuery("?heartbeat=1000&heartbeatTimeout=500"), {
      heartbeatIntervalMs: 1000,
      heartbeatTimeoutMs: 500,
    });
    assert.deepEqual(readTimingFromQuery("?heartbeat=0&heartbeatTimeout=-5"), {});
    assert.deepEqual(readTimingFromQuery("?heartbeat=fast"), {});
  });

  test("pickLanguage: Chinese for zh-*, English otherwise", () => {
    assert.equal(pickLanguage(["zh-CN"]), "zh");
    assert.equal(pickLanguage(["zh-Hant-TW", "en"]), "zh");
    assert.equal(pickLanguage(["fr-FR", "zh"]), "zh");
    assert.equal(pickLanguage(["en-US", "zh-CN"]), "en");
    assert.equal(pickLanguage(["de"]), "en");
    assert.equal(pickLanguage([]), "en");
  });

  test("importing client.ts under Node starts nothing", () => {
    assert.equal("chatClient" in globalThis, false);
  });
});

// ---------------------------------------------------------------------------
// The frame inspector
// ---------------------------------------------------------------------------

const en = INSPECTOR_WORDS.en;
const opcodeNames: Record<number, string> = {
  0: "continuation",
  1: "text",
  2: "binary",
  8: "close",
  9: "ping",
  10: "pong",
};

function spacedHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(" ");
}

/**
 * A frame as the server's trace describes it: the first 128 payload bytes,
 * masked with `key` on the wire if one is given (as a page's frames are).
 */
function traceFrame(
  content: string | Uint8Array,
  options: { opcode?: number; key?: number[]; rsv1?: boolean; fin?: boolean } = {},
): TraceFrameFields {
  const payload = typeof content === "string" ? new TextEncoder().encode(content) : content;
  const preview = payload.subarray(0, 128);
  const { key, opcode = 1 } = options;
  const onWire = key === undefined ? preview : preview.map((byte, index) => byte ^ key[index % 4]!);
  const length = payload.length;
  return {
    fin: options.fin ?? true,
    rsv1: options.rsv1 ?? false,
    rsv2: false,
    rsv3: false,
    opcode,
    opcodeName: opcodeNames[opcode] ?? "reserved",
    masked: key !== undefined,
    maskKey: key === undefined ? null : spacedHex(Uint8Array.from(key)).replace(/ /g, ""),
    lengthBits: length < 126 ? 7 : length < 65536 ? 16 : 64,
    length,
    onWire: spacedHex(onWire),
    payload: spacedHex(preview),
  };
}

/** The fields of a described frame by label, for asserting on one at a time. */
function fieldsOf(fields: readonly { label: string; value: string }[]): Record<string, string> {
  return Object.fromEntries(fields.map((field) => [field.label, field.value]));
}

const PAGE_KEY = [0x37, 0xfa, 0x21, 0x3d];

/** An InspectorLog on a fake clock, and the traces a server would send for it. */
function inspectorHarness(limit?: number) {
  const clock = new FakeClock();
  let changes = 0;
  const log = new InspectorLog({ words: en, now: () => clock.now(), limit, onChange: () => changes++ });
  return {
    log,
    clock,
    changes: () => changes,
    /** The server read a frame from the page; Chromium compresses every message, so by default it is compressed. */
    received(
      content: string | Uint8Array,
      options: { opcode?: number; rsv1?: boolean; fin?: boolean } = {},
    ): InspectorEntry {
      const frame = traceFrame(content, { rsv1: true, ...options, key: PAGE_KEY });
      log.trace({ direction: "received", line: "← …", frame });
      return log.entries[log.entries.length - 1]!;
    },
    sent(content: string | Uint8Array, options: { opcode?: number; rsv1?: boolean } = {}): InspectorEntry {
      log.trace({ direction: "sent", line: "→ …", frame: traceFrame(content, options) });
      return log.entries[log.entries.length - 1]!;
    },
  };
}

describe("frame inspector", () => {
  test("parseServerFrame reads trace messages and checks every field; a pong keeps its time", () => {
    const frame = traceFrame("Hello", { key: PAGE_KEY });
    const line = "← text FIN=1 RSV=000 opcode=0x1 MASK=1 length=5 (7-bit)";
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "trace", direction: "received", line, frame })), {
      type: "trace",
      trace: { direction: "received", line, frame },
    });
    const lines = ["← GET /?inspect=1 HTTP/1.1", "→ HTTP/1.1 101 Switching Protocols"];
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "trace", direction: "handshake", lines })), {
      type: "trace",
      trace: { direction: "handshake", lines },
    });
    for (const broken of [
      { ...frame, lengthBits: 8 },
      { ...frame, maskKey: "37fa" },
      { ...frame, onWire: "7g" },
      { ...frame, payload: "7f9f" },
      { ...frame, fin: 1 },
      { ...frame, opcode: 16 },
    ]) {
      const text = JSON.stringify({ type: "trace", direction: "sent", line, frame: broken });
      assert.equal(parseServerFrame(text), null, JSON.stringify(broken));
    }
    assert.equal(parseServerFrame(JSON.stringify({ type: "trace", direction: "in", line, frame })), null);
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "pong", t: 42 })), { type: "pong", t: 42 });
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "pong" })), { type: "pong", t: null });
  });

  test("a masked frame: every header field, the key, the bytes masked and unmasked, the text (RFC 6455 §5.7's example)", () => {
    const { summary, fields } = describeTraceFrame(traceFrame("Hello", { key: PAGE_KEY }), "received", null, en);
    const field = fieldsOf(fields);
    assert.equal(field.FIN, "1 · the last frame of its message");
    assert.equal(field["RSV1-3"], "0 0 0 · no extension uses them");
    assert.equal(field.opcode, "0x1 · text");
    assert.match(field.MASK!, /^1 · a browser must mask/);
    assert.equal(field.length, "5 bytes · in the 7-bit length field itself (0–125)");
    assert.equal(field["masking key"], "37 fa 21 3d");
    assert.equal(field.masked, "7f 9f 4d 51 58");
    assert.equal(field.unmasked, "48 65 6c 6c 6f");
    assert.equal(field["⊕"], "each byte XOR the key byte in turn: 7f ⊕ 37 = 48");
    assert.equal(field.text, "Hello");
    assert.equal(summary, "text · 5 B · Hello");
  });

  test("an unmasked frame from the server shows its payload once, and what a chat message means", () => {
    const message = JSON.stringify({ type: "message", seq: 1, id: "a", from: "小红", text: "hi", time: 1 });
    const { summary, fields } = describeTraceFrame(traceFrame(message), "sent", null, en);
    const field = fieldsOf(fields);
    assert.match(field.MASK!, /^0 · a server never masks/);
    assert.equal(field["masking key"], undefined);
    assert.equal(field.masked, undefined);
    assert.match(field.payload!, /^7b 22 74 79 70 65 22 3a 22 6d 65 73 73 61 67 65 … \+\d+ bytes$/);
    assert.equal(field.text, message);
    assert.equal(summary, `text · ${new TextEncoder().encode(message).length} B · chat message from 小红: "hi"`);
  });

  test("a compressed frame shows the message it carries when the page knows it, and says so; otherwise it says deflate", () => {
    const deflated = Uint8Array.from([0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2]);
    const frame = traceFrame(deflated, { key: PAGE_KEY, rsv1: true });
    const say = JSON.stringify({ type: "say", id: "x", text: "hi" });

    const known = describeTraceFrame(frame, "received", say, en);
    const field = fieldsOf(known.fields);
    assert.equal(field["RSV1-3"], "1 0 0 · RSV1=1: compressed with permessage-deflate (RFC 7692 §6)");
    assert.equal(field.unmasked, "aa 56 2a a9 2c 48 55 b2", "the wire's bytes are deflate data");
    assert.equal(field.text, say);
    assert.match(field["RSV1=1"]!, /what this page gave to send\(\)/);
    assert.equal(known.summary, 'text · 8 B · chat message "hi"');

    const unknown = fieldsOf(describeTraceFrame(frame, "received", null, en).fields);
    assert.equal(unknown.text, en.compressedUnknown);
  });

  test("lengths: the 16-bit and 64-bit encodings are named; long payloads show 16 bytes of hex and the rest as a count", () => {
    const medium = fieldsOf(describeTraceFrame(traceFrame("x".repeat(300)), "sent", null, en).fields);
    assert.equal(medium.length, "300 bytes · the 7-bit field says 126, the length follows in 16 bits");
    assert.equal(medium.payload, `${"78 ".repeat(16)}… +284 bytes`);
    assert.equal(medium.text, `${"x".repeat(128)} … +172 bytes`, "the server sends 128 bytes of a payload");

    const large = fieldsOf(describeTraceFrame(traceFrame("y".repeat(70_000)), "sent", null, en).fields);
    assert.equal(large.length, "70000 bytes · the 7-bit field says 127, the length follows in 64 bits");

    const long = JSON.stringify({ type: "say", id: "x", text: "z".repeat(500) });
    const { summary } = describeTraceFrame(traceFrame(long, { key: PAGE_KEY }), "received", long, en);
    assert.ok(Array.from(summary).length < 100, "the summary stays one line");
    assert.match(summary, /…$/);
  });

  test("close frames: the code with its name and the reason; protocol pings and pongs say what they are", () => {
    const bye = Uint8Array.from([0x03, 0xe8, 0x62, 0x79, 0x65]);
    const close = describeTraceFrame(traceFrame(bye, { opcode: 8 }), "sent", null, en);
    assert.equal(fieldsOf(close.fields).close, '1000 (normal closure) · reason "bye"');
    assert.match(
      close.summary,
      /^close · 5 B · close frame: the server ends the connection · 1000 \(normal closure\)$/,
    );
    const goingAway = traceFrame(Uint8Array.from([0x03, 0xe9]), { opcode: 8, key: PAGE_KEY });
    const away = describeTraceFrame(goingAway, "received", null, en);
    assert.equal(fieldsOf(away.fields).close, "1001 (going away)");

    const ping = describeTraceFrame(traceFrame("", { opcode: 9 }), "sent", null, en);
    assert.match(ping.summary, /^ping · 0 B · protocol-level ping \(opcode 0x9\)/);
    assert.equal(fieldsOf(ping.fields).payload, "no payload");
    const pong = describeTraceFrame(traceFrame("", { opcode: 10, key: PAGE_KEY }), "received", null, en);
    assert.equal(pong.summary, "pong · 0 B · protocol-level pong (opcode 0xA)");
    assert.match(fieldsOf(pong.fields).note!, /the browser answers the server's ping by itself/);
    assert.match(fieldsOf(ping.fields).note!, /JavaScript sees neither frame/);
    assert.equal(fieldsOf(pong.fields)["masking key"], "37 fa 21 3d", "even an empty frame from the page has a key");

    const appPing = describeTraceFrame(traceFrame('{"type":"ping","t":5}', { key: PAGE_KEY }), "received", null, en);
    assert.match(appPing.summary, /heartbeat ping \(app level: JSON in a text frame\)/);

    assert.equal(describeCloseCode(1006), "1006 (abnormal closure)");
    assert.equal(describeCloseCode(4001), "4001 (application's own code)");
  });

  test("large rooms' frames say what they are: a summary, member and history requests and their pages", () => {
    const meaning = (message: object, direction: "received" | "sent") => {
      const text = JSON.stringify(message);
      const frame = direction === "received" ? traceFrame(text, { key: PAGE_KEY }) : traceFrame(text);
      // What the page received is known in full (InspectorLog passes it): the trace shows only 128 bytes.
      const known = direction === "sent" ? text : null;
      return describeTraceFrame(frame, direction, known, en).summary.replace(/^text · \d+ B · /, "");
    };
    const summary = {
      type: "presence",
      memberCount: 300,
      online: 280,
      joinedCount: 12,
      joined: [],
      leftCount: 3,
      left: [],
    };
    assert.equal(meaning(summary, "sent"), "this second: 12 joined, 3 left, 280 online");
    assert.equal(meaning({ type: "members", offset: 100 }, "received"), "asks for the member list from member 101");
    const page = { type: "members", offset: 100, memberCount: 150, online: 150, presenceBatched: true };
    assert.equal(meaning({ ...page, members: [{ name: "a", sid: "1" }] }, "sent"), "members 101–101 of 150");
    assert.equal(meaning({ type: "history", before: 151 }, "received"), "asks for the messages before seq 151");
    assert.equal(
      meaning({ type: "history", before: 3, messages: [chatMessage(1), chatMessage(2)], more: false }, "sent"),
      "2 messages before seq 3 (no older ones)",
    );
    assert.equal(INSPECTOR_WORDS.zh.historyPage(100, 151, true), "seq 151 之前的 100 条消息（服务器还有更早的）");
  });

  test("previewText: a prefix cut inside a character loses that character; bytes that are not text give null", () => {
    const both = new TextEncoder().encode("你好");
    assert.equal(previewText(both, 6), "你好");
    assert.equal(previewText(both.subarray(0, 4), 6), "你", "the last 1 byte of 好's 3 is cut off");
    assert.equal(previewText(both.subarray(0, 4), 4), null, "a whole payload must be valid UTF-8");
    assert.equal(previewText(Uint8Array.from([0x68, 0x00, 0x69]), 3), null);
    assert.equal(previewText(Uint8Array.from([0xaa, 0x56]), 2), null);
    assert.equal(previewText(new TextEncoder().encode("a\nb\tc"), 5), "a\nb\tc");
    assert.deepEqual(hexToBytes("7f 9f 4d"), Uint8Array.from([0x7f, 0x9f, 0x4d]));
    assert.deepEqual(hexToBytes("37fa213d"), Uint8Array.from(PAGE_KEY));
    assert.equal(bytesToHex(Uint8Array.from([1, 2, 3]), 2), "01 02 …");
  });

  test("the log keeps the newest entries up to its limit, numbers them for good, and clears", () => {
    const { log, clock, changes } = inspectorHarness(5);
    for (let index = 0; index < 8; index++) {
      log.clientEvent({ kind: "rtt", roundTripMs: index });
      clock.advance(1);
    }
    assert.deepEqual(
      log.entries.map((entry) => entry.id),
      [4, 5, 6, 7, 8],
    );
    assert.equal(log.entries[4]!.summary, "heartbeat round trip 7 ms (ping sent to pong received)");
    assert.equal(log.entries[4]!.time - log.entries[0]!.time, 4);
    assert.equal(changes(), 8);
    log.clear();
    assert.equal(log.entries.length, 0);
    log.clientEvent({ kind: "socket-error" });
    const ids = log.entries.map((entry) => entry.id);
    assert.deepEqual(ids, [9], "ids never repeat, so the page never confuses two entries");
    assert.equal(INSPECTOR_LIMIT, 500);
    const big = inspectorHarness();
    for (let index = 0; index < 600; index++) big.log.clientEvent({ kind: "socket-error" });
    assert.equal(big.log.entries.length, 500);
  });

  test("entries: direction, opcode and kind for the page's data attributes; the handshake's lines; the server's own line", () => {
    const { log, received, sent } = inspectorHarness();
    const lines = ["← GET /?inspect=1 HTTP/1.1", "→ HTTP/1.1 101 Switching Protocols"];
    log.trace({ direction: "handshake", lines });
    log.socketOpened(true);
    log.pageSent('{"type":"say","id":"1","text":"hi"}');
    const out = received(Uint8Array.from([0xaa, 0x56]));
    const back = sent("", { opcode: 9 });
    log.clientEvent({ kind: "retry", attempt: 2, delayMs: 1500 });
    const [handshake, , , retry] = log.entries;
    assert.deepEqual([handshake!.direction, handshake!.opcode, handshake!.lines.length], ["handshake", null, 2]);
    assert.deepEqual([out.direction, out.opcode, out.kind, out.serverLine], ["received", "text", null, "← …"]);
    assert.deepEqual([back.direction, back.opcode], ["sent", "ping"]);
    assert.deepEqual([retry!.direction, retry!.opcode, retry!.kind], ["client", null, "retry"]);
    assert.equal(retry!.summary, "reconnect attempt 2 in 1.5 s (exponential backoff, random jitter)");
  });

  test("page → server: traced from the start (inspect=1), the n-th compressed message is the n-th the page sent", () => {
    const { log, received } = inspectorHarness();
    log.socketOpened(true);
    const inspect = JSON.stringify({ type: "inspect", on: true });
    const say = JSON.stringify({ type: "say", id: "1", text: "hi" });
    log.pageSent(inspect);
    log.pageSent(say);
    assert.equal(fieldsOf(received(Uint8Array.from([1, 2])).fields).text, inspect);
    // A control frame (the browser's pong) is nobody's message and takes no text.
    received(new Uint8Array(0), { opcode: 10, rsv1: false });
    assert.equal(fieldsOf(received(Uint8Array.from([3, 4])).fields).text, say);
    const last = fieldsOf(received(Uint8Array.from([5, 6])).fields);
    assert.equal(last.text, en.compressedUnknown, "nothing left to match");

    // A new socket starts over.
    log.pageSent(say);
    log.socketOpened(true);
    assert.equal(fieldsOf(received(Uint8Array.from([7, 8])).fields).text, en.compressedUnknown);
  });

  test("page → server: switched on over an open socket, the server watches from the message after the switch", () => {
    const { log, received } = inspectorHarness();
    log.socketOpened(false);
    log.pageSent(JSON.stringify({ type: "ping", t: 1 }));
    log.pageSent(JSON.stringify({ type: "inspect", on: true }));
    const say = JSON.stringify({ type: "say", id: "1", text: "hi" });
    log.pageSent(say);
    assert.equal(fieldsOf(received(Uint8Array.from([1])).fields).text, say);

    // Switched off: that message is still reported, nothing after it is.
    const off = JSON.stringify({ type: "inspect", on: false });
    log.pageSent(off);
    log.pageSent(JSON.stringify({ type: "ping", t: 2 }));
    assert.equal(fieldsOf(received(Uint8Array.from([2])).fields).text, off);
    assert.equal(fieldsOf(received(Uint8Array.from([3])).fields).text, en.compressedUnknown);
  });

  test("matching is checked where it can be, and gives up rather than guess", () => {
    const { log, received } = inspectorHarness();
    log.socketOpened(true);
    log.pageSent("what the page thinks it sent");
    // An uncompressed frame says what it is itself; a text that disagrees is not shown.
    assert.equal(fieldsOf(received("something else", { rsv1: false }).fields).text, "something else");

    // No traces come back for a long time: past 100 unmatched texts, matching stops.
    for (let index = 0; index < 101; index++) log.pageSent(`message ${index}`);
    assert.equal(fieldsOf(received(Uint8Array.from([1])).fields).text, en.compressedUnknown);
  });

  test("server → page: the trace of a message follows the message, so the text is the one just received", () => {
    const { log, sent } = inspectorHarness();
    log.socketOpened(true);
    const message = JSON.stringify({ type: "message", seq: 1, id: "a", from: "小红", text: "x".repeat(200), time: 1 });
    log.pageReceived(message);
    const entry = sent(message);
    assert.equal(fieldsOf(entry.fields).text, message, "the whole message, not only the 128 bytes the trace carries");
    // Compressed by the server: only the text just received can say what it was.
    log.pageReceived('{"type":"joined","name":"小军"}');
    const compressed = sent(Uint8Array.from([0xaa, 0x56]), { rsv1: true });
    assert.equal(fieldsOf(compressed.fields).text, '{"type":"joined","name":"小军"}');
    assert.match(compressed.summary, /小军 joined/);
    // A text is used once: a ping from the server (no message) does not take it, nor does the next frame.
    sent(Uint8Array.from([0xab]), { rsv1: true });
    assert.equal(fieldsOf(log.entries[log.entries.length - 1]!.fields).text, en.compressedUnknown);
  });

  test("the page's own events, worded", () => {
    const line = (event: ClientEvent) => describeClientEvent(event, en);
    assert.equal(line({ kind: "state", from: "connected", to: "reconnecting" }), "state: connected → reconnecting");
    assert.equal(
      line({ kind: "closed", code: 1006, reason: "", wasClean: false, current: true }),
      "socket closed: 1006 (abnormal closure) · closing handshake not completed",
    );
    assert.equal(
      line({ kind: "closed", code: 1001, reason: "server shutting down", wasClean: true, current: true }),
      'socket closed: 1001 (going away) · reason "server shutting down"',
    );
    assert.match(line({ kind: "closed", code: 1005, reason: "", wasClean: true, current: false }), /an earlier socket/);
    assert.equal(
      line({ kind: "silent", timeoutMs: 5000 }),
      "no answer to the heartbeat within 5 s: this socket is given up",
    );
    assert.match(describeClientEvent({ kind: "rtt", roundTripMs: 12 }, INSPECTOR_WORDS.zh), /12 毫秒/);
  });
});

describe("the inspector and the connection", () => {
  /** A connected harness whose connection reports to an InspectorLog (and to a list of events). */
  function inspectedHarness(
    storage: KeyValueStorage = createMemoryStorage(),
    timing: Partial<ChatConnectionOptions["timing"]> = {},
  ) {
    const events: ClientEvent[] = [];
    const traces: unknown[] = [];
    const received: string[] = [];
    let changes = 0;
    const clock = new FakeClock();
    const log = new InspectorLog({ words: en, now: () => clock.now() });
    const observer = (event: ConnectionEvent) => {
      log.observe(event);
      if (event.kind === "trace") traces.push(event.trace);
      else if (event.kind === "received") received.push(event.text);
      else if (event.kind !== "socket" && event.kind !== "sent") events.push(event);
    };
    const harness = createHarness({ storage, observer, timing, onChange: () => changes++ });
    return { ...harness, log, events, traces, received, changes: () => changes };
  }

  test("opening the inspector: the server is told at once, and every later socket asks in its URL and after the welcome", () => {
    const { connection, clock, latest, storage, events } = inspectedHarness();
    connection.start();
    latest().receive(welcome());
    assert.equal(latest().query("inspect"), null);
    assert.equal(connection.inspecting, false);

    connection.setInspecting(true);
    assert.deepEqual(latest().sentOfType("inspect"), [{ type: "inspect", on: true }]);
    assert.equal(storage.getItem(STORAGE_KEYS.inspector), "true");
    assert.deepEqual(events[events.length - 1], { kind: "inspect", on: true, connected: true });

    latest().closeFromServer();
    clock.advance(999);
    assert.equal(latest().query("inspect"), "1");
    assert.deepEqual(latest().sentOfType("inspect"), [], "not before the welcome");
    latest().receive(welcome({ resumed: true }));
    assert.deepEqual(latest().sentOfType("inspect"), [{ type: "inspect", on: true }]);

    connection.setInspecting(false);
    assert.deepEqual(latest().sentOfType("inspect"), [
      { type: "inspect", on: true },
      { type: "inspect", on: false },
    ]);
    assert.equal(storage.getItem(STORAGE_KEYS.inspector), "false");
    latest().closeFromServer();
    clock.advance(1999);
    assert.equal(latest().query("inspect"), null);
  });

  test("a reload remembers the open inspector: the first socket already asks for the handshake", () => {
    const storage = createMemoryStorage();
    inspectedHarness(storage).connection.setInspecting(true);
    const { connection, latest } = inspectedHarness(storage);
    assert.equal(connection.inspecting, true);
    connection.start();
    assert.equal(latest().query("inspect"), "1");
    latest().receive(welcome());
    assert.deepEqual(latest().sentOfType("inspect"), [{ type: "inspect", on: true }]);
  });

  test("trace frames go to the inspector only: not the transcript, not the page, not the matching of texts", () => {
    const { connection, latest, log, traces, received, changes } = inspectedHarness();
    connection.start();
    latest().receive(welcome());
    const before = changes();
    const frame = traceFrame('{"type":"say","id":"1","text":"hi"}', { key: PAGE_KEY });
    latest().receive({ type: "trace", direction: "received", line: "← text", frame });
    latest().receive({ type: "trace", direction: "handshake", lines: ["← GET / HTTP/1.1"] });
    assert.equal(traces.length, 2);
    assert.equal(changes(), before, "the chat view is not redrawn for a trace");
    assert.equal(connection.entries.length, 0);
    assert.deepEqual(received, [JSON.stringify(welcome())], "only the welcome counts as received");
    const frames = log.entries.filter((entry) => entry.direction !== "client");
    assert.deepEqual(
      frames.map((entry) => entry.direction),
      ["received", "handshake"],
    );
  });

  test("the texts the page sends are matched with the server's traces of them", () => {
    const { connection, latest, log } = inspectedHarness();
    connection.setInspecting(true);
    connection.start();
    latest().receive(welcome());
    connection.send("hi");
    // Chromium compresses both: the inspect message sent after the welcome, then "hi".
    for (const bytes of [
      [1, 2],
      [3, 4],
    ]) {
      const frame = traceFrame(Uint8Array.from(bytes), { key: PAGE_KEY, rsv1: true });
      latest().receive({ type: "trace", direction: "received", line: "←", frame });
    }
    const texts = log.entries
      .filter((entry) => entry.direction === "received")
      .map((entry) => fieldsOf(entry.fields).text);
    const say = latest().sentOfType("say")[0]!;
    assert.deepEqual(texts, ['{"type":"inspect","on":true}', JSON.stringify(say)]);
  });

  test("client events: states, the URL, retries with their delays, close codes and reasons, round trips, silence", () => {
    const { connection, clock, latest, events } = inspectedHarness();
    connection.start();
    latest().receive(welcome());
    clock.advance(10_000);
    const ping = latest().sentOfType("ping")[0]!;
    clock.advance(23);
    latest().receive({ type: "pong", t: ping.t });
    latest().closeFromServer(1001, "server shutting down", true);
    clock.advance(999);
    latest().fail();
    clock.advance(1999);
    clock.advance(10_000); // never welcomed
    latest().closeFromServer(1006, "", false); // the socket given up on closes late

    assert.deepEqual(events, [
      { kind: "opening", url: "ws://chat.test/?session=…" },
      { kind: "state", from: "offline", to: "connecting" },
      { kind: "state", from: "connecting", to: "connected" },
      { kind: "rtt", roundTripMs: 23 },
      { kind: "closed", code: 1001, reason: "server shutting down", wasClean: true, current: true },
      { kind: "state", from: "connected", to: "reconnecting" },
      { kind: "retry", attempt: 1, delayMs: 999 },
      { kind: "opening", url: "ws://chat.test/?session=…&name=%E5%B0%8F%E6%98%8E&since=0&epoch=epoch-1" },
      { kind: "socket-error" },
      { kind: "retry", attempt: 2, delayMs: 1999 },
      { kind: "opening", url: "ws://chat.test/?session=…&name=%E5%B0%8F%E6%98%8E&since=0&epoch=epoch-1" },
      { kind: "not-welcomed", timeoutMs: 10_000 },
      { kind: "retry", attempt: 3, delayMs: 3999 },
      { kind: "closed", code: 1006, reason: "", wasClean: false, current: false },
    ]);

    const silent = inspectedHarness(createMemoryStorage(), { heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 300 });
    silent.connection.start();
    silent.latest().receive(welcome());
    silent.clock.advance(1300);
    assert.ok(silent.events.some((event) => event.kind === "silent" && event.timeoutMs === 300));
  });
});

/** The server's note under the frame that ended a message: its first 128 bytes before compression. */
function traceNote(
  content: string | Uint8Array,
  options: {
    compressed?: boolean;
    wireLength?: number;
    threshold?: number;
    windowBits?: number;
    binary?: boolean;
  } = {},
): TraceNoteFields {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  const note: TraceNoteFields = {
    compressed: options.compressed ?? true,
    binary: options.binary ?? false,
    length: bytes.length,
    wireLength: options.wireLength ?? bytes.length,
    payload: spacedHex(bytes.subarray(0, 128)),
  };
  if (options.threshold !== undefined) note.threshold = options.threshold;
  if (options.windowBits !== undefined) note.windowBits = options.windowBits;
  return note;
}

describe("the inspector's notes (RFC 7692)", () => {
  const say = JSON.stringify({ type: "say", id: "m1", text: "hi" });
  const deflated = Uint8Array.from([0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2]);

  test("parseServerFrame reads a note and checks every field", () => {
    const note = traceNote(say, { wireLength: 28 });
    const line = "↳ RSV1=1: compressed with permessage-deflate (RFC 7692 §6): 28 bytes of deflate data inflate to 36";
    const report = { type: "trace", direction: "note", of: "received", line, note };
    assert.deepEqual(parseServerFrame(JSON.stringify(report)), {
      type: "trace",
      trace: { direction: "note", of: "received", line, note },
    });
    const plain = { ...report, of: "sent", note: traceNote("{}", { compressed: false, threshold: 1024 }) };
    assert.deepEqual(parseServerFrame(JSON.stringify(plain)), {
      type: "trace",
      trace: { direction: "note", of: "sent", line, note: plain.note },
    });
    for (const broken of [
      { ...report, of: "both" },
      { ...report, line: 1 },
      { ...report, note: { ...note, compressed: "yes" } },
      { ...report, note: { ...note, length: -1 } },
      { ...report, note: { ...note, wireLength: 1.5 } },
      { ...report, note: { ...note, payload: "7g" } },
      { ...report, note: { ...note, threshold: "1 KiB" } },
      { ...report, note: null },
    ]) {
      assert.equal(parseServerFrame(JSON.stringify(broken)), null, JSON.stringify(broken));
    }
  });

  test("under a compressed frame: the text it inflates to, both sizes and the ratio, and what RSV1 means", () => {
    const frame = traceFrame(deflated, { key: PAGE_KEY, rsv1: true });
    const note = traceNote(say, { wireLength: deflated.length });
    // The server's inflated bytes are the text, even when the page knows nothing it sent.
    const { summary, fields } = describeTraceFrame(frame, "received", null, en, note);
    const field = fieldsOf(fields);
    assert.equal(field["RSV1-3"], "1 0 0 · RSV1=1: compressed with permessage-deflate (RFC 7692 §6)");
    assert.equal(field.unmasked, "aa 56 2a a9 2c 48 55 b2", "the wire still shows deflate data");
    assert.equal(field.text, say);
    assert.equal(
      field.deflate,
      "8 bytes of deflate data inflate to 36 (22%); the text above is what the server inflated",
    );
    assert.equal(field["RSV1=1"], undefined, "no guessing from what the page sent");
    assert.equal(summary, 'text · 8 B (36 B inflated) · chat message "hi"');

    // A long message: 128 bytes of it come in the note; the rest is counted, or known from the page.
    const long = JSON.stringify({ type: "say", id: "m2", text: "z".repeat(300) });
    const longNote = traceNote(long, { wireLength: 20 });
    assert.match(fieldsOf(describeTraceFrame(frame, "received", null, en, longNote).fields).text!, /… \+\d+ bytes$/);
    assert.equal(fieldsOf(describeTraceFrame(frame, "received", long, en, longNote).fields).text, long);
    // A known text that disagrees with the server's bytes is dropped.
    const other = describeTraceFrame(frame, "received", "something else", en, note);
    assert.equal(fieldsOf(other.fields).text, say);

    // From the server: deflated, in the other words; in Chinese too.
    const sent = describeTraceFrame(traceFrame(deflated, { rsv1: true }), "sent", null, en, note);
    assert.equal(
      fieldsOf(sent.fields).deflate,
      "36 bytes deflated to 8 (22%); the text above is the message before compression",
    );
    const zh = fieldsOf(describeTraceFrame(frame, "received", null, INSPECTOR_WORDS.zh, note).fields);
    assert.equal(zh["RSV1-3"], "1 0 0 · RSV1=1：用 permessage-deflate 压缩（RFC 7692 §6）");
    assert.match(zh.deflate!, /^8 字节 deflate 数据解压为 36 字节（22%）/);

    // Binary: the inflated bytes in hex, no text.
    const binaryNote = traceNote(Uint8Array.from([1, 2, 3]), { binary: true, wireLength: 5 });
    const binary = fieldsOf(
      describeTraceFrame(traceFrame(deflated, { opcode: 2, rsv1: true }), "sent", null, en, binaryNote).fields,
    );
    assert.equal(binary.inflated, "01 02 03");
    assert.equal(binary.text, en.notText);
  });

  test("a fragmented compressed message: RSV1 is on its first frame, the note under its last", () => {
    const last = traceFrame(Uint8Array.from([0x01, 0x02]), { opcode: 0, key: PAGE_KEY, rsv1: false });
    const field = fieldsOf(describeTraceFrame(last, "received", null, en, traceNote(say, { wireLength: 10 })).fields);
    assert.equal(field.text, say);
    assert.match(field.deflate!, /^10 bytes of deflate data inflate to 36/);
  });

  test('a short frame the server sent plainly says "sent uncompressed: shorter than 1 KiB", not "no extension"', () => {
    const pong = JSON.stringify({ type: "pong", t: 1 });
    const note = traceNote(pong, { compressed: false, threshold: 1024 });
    const field = fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, en, note).fields);
    assert.equal(
      field["RSV1-3"],
      "0 0 0 · sent uncompressed: shorter than 1 KiB (--deflate-threshold), not worth compressing",
    );
    assert.equal(field.text, pong);
    assert.equal(field.deflate, undefined);
    const other = traceNote(pong, { compressed: false, threshold: 1000 });
    assert.match(
      fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, en, other).fields)["RSV1-3"]!,
      /1000 bytes/,
    );
    const zh = fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, INSPECTOR_WORDS.zh, note).fields);
    assert.equal(zh["RSV1-3"], "0 0 0 · 未压缩发送：短于 1 KiB（--deflate-threshold），不值得压缩");
    // Long enough, but the client asked for a window zlib cannot deflate with: that is the reason given.
    const narrow = traceNote(pong, { compressed: false, windowBits: 8 });
    assert.equal(
      fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, en, narrow).fields)["RSV1-3"],
      "0 0 0 · sent uncompressed: the client asked for server_max_window_bits=8, " +
        "and zlib deflates only with windows of 2^9 bytes or more",
    );
    assert.match(
      fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, INSPECTOR_WORDS.zh, narrow).fields)["RSV1-3"]!,
      /server_max_window_bits=8/,
    );
    // Without a note the frame is described as before.
    assert.equal(
      fieldsOf(describeTraceFrame(traceFrame(pong), "sent", null, en).fields)["RSV1-3"],
      "0 0 0 · no extension uses them",
    );
  });

  test("InspectorLog: a note redraws the frame it is about (same id, new object), in its own direction only", () => {
    const { log, received, sent, changes } = inspectorHarness();
    log.socketOpened(false);
    const out = received(deflated);
    const pong = JSON.stringify({ type: "pong", t: 1 });
    sent(pong);
    // A control frame between a message and its note does not take the note.
    const ping = sent("", { opcode: 9 });
    const before = changes();
    const line = "↳ RSV1=1: compressed with permessage-deflate (RFC 7692 §6): 8 bytes of deflate data inflate to 36";
    log.trace({ direction: "note", of: "received", line, note: traceNote(say, { wireLength: 8 }) });
    log.trace({
      direction: "note",
      of: "sent",
      line: "↳ sent uncompressed",
      note: traceNote(pong, { compressed: false, threshold: 1024 }),
    });
    assert.equal(changes(), before + 2);
    assert.equal(log.entries.length, 3, "notes add no entries");
    const [newOut, newBack, samePing] = log.entries;
    assert.equal(newOut!.id, out.id);
    assert.notEqual(newOut, out, "a new object, so the page knows to redraw it");
    assert.equal(fieldsOf(newOut!.fields).text, say);
    assert.equal(newOut!.serverLine, `← …\n${line}`, "both lines, as --trace prints them");
    assert.match(fieldsOf(newBack!.fields)["RSV1-3"]!, /sent uncompressed: shorter than 1 KiB/);
    assert.equal(samePing, ping);

    // Each frame takes one note; a second, or one after a new socket or a clear, is dropped.
    log.trace({ direction: "note", of: "received", line, note: traceNote("other") });
    assert.equal(fieldsOf(log.entries[0]!.fields).text, say);
    received(deflated);
    log.socketOpened(true);
    log.trace({ direction: "note", of: "received", line, note: traceNote(say) });
    assert.equal(fieldsOf(log.entries[3]!.fields).text, en.compressedUnknown);
    received(deflated);
    log.clear();
    log.trace({ direction: "note", of: "received", line, note: traceNote(say) });
    assert.equal(log.entries.length, 0);
  });
});

describe("the frame lab", () => {
  test("the presets: §5.7's examples and one broken rule each, decoded by server.ts as the table says", () => {
    const ids = FRAME_LAB_PRESETS.map((preset) => preset.id);
    assert.equal(new Set(ids).size, ids.length, "ids are unique");
    const hello = FRAME_LAB_PRESETS.find((preset) => preset.id === "hello");
    assert.equal(hello?.hex, "81 85 37 fa 21 3d 7f 9f 4d 51 58");
    for (const id of [
      "fragmented",
      "ping",
      "binary-256",
      "binary-64k",
      "unmasked-client",
      "rsv1",
      "control-fragmented",
      "control-too-long",
      "utf8-split",
      "close-1005",
      "reserved-opcode",
    ])
      assert.ok(ids.includes(id), `a preset ${id}`);
    for (const preset of FRAME_LAB_PRESETS) {
      assert.ok(preset.label.en !== "" && preset.label.zh !== "" && preset.label.en !== preset.label.zh, preset.id);
      const bytes = parseHex(preset.hex);
      assert.ok(typeof bytes !== "string", `${preset.id}: ${String(bytes)}`);
      const { lines, outcome } = walkFrames(bytes, preset.from === "server");
      assert.equal(outcome, preset.outcome, `${preset.id}:\n${lines.join("\n")}`);
      if (preset.closeCode === null) assert.ok(!lines.some((line) => line.includes("close code")), preset.id);
      else
        assert.ok(
          lines.some((line) => line.includes(`close code ${preset.closeCode}`)),
          `${preset.id}:\n${lines.join("\n")}`,
        );
    }
    assert.ok(FRAME_LAB_PRESETS.find((preset) => preset.id === "binary-256")!.hex.split(" ").length === 4 + 256);
  });

  test("FrameLab: one request at a time; answered, refused, or interrupted by a lost connection", () => {
    const lab = new FrameLab();
    assert.deepEqual(lab.state, { name: "idle" });
    lab.answered({ type: "decoded", lines: ["x"], outcome: "valid" });
    assert.deepEqual(lab.state, { name: "idle" }, "an answer nothing asked for is not shown");
    const request = lab.ask("  81 85 37 fa 21 3d 7f 9f 4d 51 58 \n", "client");
    assert.deepEqual(request, { hex: "81 85 37 fa 21 3d 7f 9f 4d 51 58", from: "client" });
    assert.equal(lab.ask("00", "server"), null, "the answer names no request: only one waits");
    lab.answered({ type: "decoded", lines: ['  → message: text "Hello" (5 bytes)'], outcome: "valid" });
    assert.equal(lab.state.name, "answered");
    assert.deepEqual(lab.state.name === "answered" && lab.state.lines, ['  → message: text "Hello" (5 bytes)']);

    lab.ask("zz", "client");
    lab.refused("Frame lab: not hex");
    assert.deepEqual(lab.state, {
      name: "refused",
      request: { hex: "zz", from: "client" },
      message: "Frame lab: not hex",
    });
    lab.refused("again");
    assert.deepEqual(
      lab.state,
      { name: "refused", request: { hex: "zz", from: "client" }, message: "Frame lab: not hex" },
      "only a waiting request is refused",
    );

    lab.ask("81", "server");
    lab.close();
    assert.deepEqual(lab.state, { name: "interrupted", request: { hex: "81", from: "server" } });
    lab.answered({ type: "decoded", lines: [], outcome: "incomplete" });
    assert.equal(lab.state.name, "interrupted", "a late answer from a lost socket is not shown");

    assert.equal(isFrameLabError({ code: "bad_message", message: "Frame lab: not hex" }), true);
    assert.equal(isFrameLabError({ code: "bad_message", message: 'A "members" request has an "offset"' }), false);
  });

  test("describeFrameLab: the button says it needs the connection, or that it is decoding; the outcome is named", () => {
    const en = FRAME_LAB_WORDS.en;
    const zh = FRAME_LAB_WORDS.zh;
    const request = { hex: "81", from: "client" as const };
    assert.deepEqual(describeFrameLab({ name: "idle" }, false, en), {
      status: en.idle,
      outcome: null,
      lines: [],
      decodeLabel: "Decode: needs the connection",
      canDecode: false,
    });
    assert.equal(describeFrameLab({ name: "idle" }, false, zh).decodeLabel, "解码需要连接");
    const waiting = describeFrameLab({ name: "waiting", request }, true, en);
    assert.deepEqual([waiting.decodeLabel, waiting.canDecode], ["Decoding…", false]);
    const answered = describeFrameLab({ name: "answered", request, lines: ["a"], outcome: "violation" }, true, en);
    assert.deepEqual([answered.outcome, answered.lines, answered.canDecode], ["violation", ["a"], true]);
    assert.match(answered.status, /^✗ violation/);
    assert.match(
      describeFrameLab({ name: "answered", request, lines: [], outcome: "incomplete" }, true, en).status,
      /waiting for more bytes/,
    );
    assert.match(
      describeFrameLab({ name: "answered", request, lines: [], outcome: "valid" }, true, zh).status,
      /^✓ 有效/,
    );
    const refused = describeFrameLab({ name: "refused", request, message: "Frame lab: not hex" }, true, en);
    assert.deepEqual(
      [refused.outcome, refused.status],
      ["refused", "The server refused the request: Frame lab: not hex"],
    );
  });

  test("the connection: decode only when open, one at a time; the answer, the lab's own refusal, a lost socket", () => {
    const harness = createHarness();
    const { connection, latest, errors } = harness;
    connection.start();
    assert.equal(connection.decode("81 05", "client"), false, "not before the welcome");
    latest().receive(welcome({ oldestSeq: 1, seq: 150 }));
    latest().receive(chatMessage(150));
    assert.equal(connection.decode("81 85 37 fa 21 3d 7f 9f 4d 51 58", "client"), true);
    assert.equal(connection.decode("00", "server"), false);
    assert.deepEqual(latest().sentOfType("decode"), [
      { type: "decode", hex: "81 85 37 fa 21 3d 7f 9f 4d 51 58", from: "client" },
    ]);
    assert.equal(connection.frameLab.name, "waiting");
    latest().receive({ type: "decoded", lines: ["11 bytes"], outcome: "valid" });
    assert.deepEqual(connection.frameLab, {
      name: "answered",
      request: { hex: "81 85 37 fa 21 3d 7f 9f 4d 51 58", from: "client" },
      lines: ["11 bytes"],
      outcome: "valid",
    });
    latest().receive({ type: "decoded", lines: "not a list", outcome: "valid" });
    assert.equal(connection.frameLab.name, "answered", "an answer that does not fit is ignored");

    // Bad hex: the lab's to show; not the page's alert, and no other request counts as refused.
    connection.loadOlder();
    assert.equal(connection.olderMessages, "loading");
    connection.decode("zz", "server");
    latest().receive({ type: "error", code: "bad_message", message: 'Frame lab: not hex: "z" is not a hex digit' });
    assert.equal(connection.frameLab.name, "refused");
    assert.deepEqual(errors, []);
    assert.equal(connection.olderMessages, "loading");

    // The connection lost while waiting: no answer is coming.
    connection.decode("81", "client");
    latest().closeFromServer();
    assert.equal(connection.frameLab.name, "interrupted");
    assert.equal(connection.decode("81", "client"), false, "offline");
  });
});

describe("a newcomer's rough edges (#13)", () => {
  test("while disconnected the online count is unknown, not 0; the last one known is kept until the next welcome", () => {
    const { connection, latest, clock } = connectedHarness({}, { others: [{ name: "小红", sid: OTHER_SID }] });
    assert.equal(connection.onlineKnown, true);
    assert.equal(connection.online, 2);
    assert.equal(connection.lastKnownOnline, 2);
    latest().receive({ type: "joined", name: "小军", sid: "sid-jun" });
    latest().closeFromServer();
    assert.equal(connection.state, "reconnecting");
    assert.equal(connection.onlineKnown, false);
    assert.equal(connection.lastKnownOnline, 3, "the count when the connection was lost");
    assert.deepEqual(connection.members, [], "nobody is known to be here");
    assert.equal(TEXT.en.online(connection.onlineKnown ? connection.online : null), "Online (—)");
    assert.equal(TEXT.zh.online(null), "在线（—）");
    assert.equal(TEXT.en.lastOnline(3), "3 online when last connected");
    assert.equal(TEXT.zh.lastOnline(3), "断线前 3 人在线");
    clock.advance(60_000);
    latest().fail();
    assert.equal(connection.lastKnownOnline, 3, "a failed attempt does not forget it");
    clock.advance(60_000);
    latest().receive(welcome({ resumed: true }));
    assert.equal(connection.onlineKnown, true);
    assert.equal(connection.lastKnownOnline, 1);
    const fresh = new MemberList();
    assert.equal(fresh.known, false);
    assert.equal(fresh.lastKnownOnline, null, "before any welcome there is nothing to say");
  });

  test("countNewBelow: messages after the last line read at the bottom; older pages and notices do not count", () => {
    const { connection, latest } = connectedHarness({}, { seq: 200, oldestSeq: 1 });
    for (let seq = 101; seq <= 110; seq++) latest().receive(chatMessage(seq));
    const read = connection.entries[connection.entries.length - 1]!.key;
    assert.equal(countNewBelow(connection.entries, read), 0);
    latest().receive(chatMessage(111));
    latest().receive({ type: "joined", name: "小军", sid: "sid-jun" });
    latest().receive(chatMessage(112));
    assert.equal(countNewBelow(connection.entries, read), 2, "two messages, not the notice");
    connection.loadOlder();
    latest().receive({ type: "history", before: 101, more: true, messages: messagesFrom(51, 100) });
    assert.equal(countNewBelow(connection.entries, read), 2, "a page of older ones goes on top");
    assert.equal(countNewBelow(connection.entries, null), 0, "never at the bottom yet: nothing arrived since");
    assert.equal(countNewBelow(connection.entries, "line-gone"), 62, "the read line was dropped: all are new");
    assert.equal(TEXT.en.newBelow(1), "1 new message ↓");
    assert.equal(TEXT.en.newBelow(2), "2 new messages ↓");
    assert.equal(TEXT.zh.newBelow(2), "2 条新消息 ↓");
  });

  test("the composer's counter appears at 1,800 characters as the server counts them; a line break is one", () => {
    assert.equal(COUNTER_FROM, 1800);
    assert.equal(composerCount("hi"), null);
    assert.equal(composerCount("a".repeat(1799)), null);
    assert.deepEqual(composerCount("a".repeat(1800)), { count: 1800, over: false });
    assert.deepEqual(composerCount("😀".repeat(1950)), { count: 1950, over: false }, "an emoji is one character");
    assert.deepEqual(composerCount(`${"a".repeat(1000)}\n${"b".repeat(999)}`), { count: 2000, over: false });
    assert.deepEqual(composerCount(`${"a".repeat(1000)}\n\n${"b".repeat(999)}`), { count: 2001, over: true });
    assert.deepEqual(composerCount(`\n  ${"a".repeat(1800)}  \n`), { count: 1800, over: false }, "trimmed, as sent");
    assert.equal(TEXT.en.counter(1950, MAX_TEXT_LENGTH), "1,950 / 2,000");
    assert.equal(TEXT.zh.counter(2001, MAX_TEXT_LENGTH), "2,001 / 2,000");
  });

  test("a text with line breaks is sent as it is, line breaks and all", () => {
    const { connection, latest } = connectedHarness();
    assert.equal(connection.send("first line\nsecond line\n"), "sent");
    assert.equal(latest().sentOfType("say")[0]!.text, "first line\nsecond line");
    assert.equal(connection.send(`${"a".repeat(1000)}\n${"b".repeat(1000)}`), "too_long", "the line break counts");
  });

  test("MessageTimeFormat: the time of day today, the date too before today, the year too before this year", () => {
    const now = Date.UTC(2026, 11, 1, 18, 30);
    const zh = new MessageTimeFormat("zh-CN", "UTC");
    const en = new MessageTimeFormat("en-US", "UTC");
    const today = Date.UTC(2026, 11, 1, 0, 5);
    const yesterday = Date.UTC(2026, 10, 30, 14, 5);
    const lastYear = Date.UTC(2025, 10, 30, 14, 5);
    assert.equal(zh.format(today, now), "00:05");
    assert.equal(zh.format(yesterday, now), "11月30日 14:05");
    assert.equal(zh.format(lastYear, now), "2025年11月30日 14:05");
    assert.match(en.format(today, now), /^12:05\sAM$/);
    assert.match(en.format(yesterday, now), /^Nov 30, 02:05\sPM$/);
    assert.match(en.format(lastYear, now), /^Nov 30, 2025, 02:05\sPM$/);
    // Today is the reader's today: in Shanghai (UTC+8) 18:30 UTC is already 2 December.
    const shanghai = new MessageTimeFormat("zh-CN", "Asia/Shanghai");
    assert.equal(shanghai.format(Date.UTC(2026, 11, 1, 17, 0), now), "01:00");
    assert.equal(shanghai.format(Date.UTC(2026, 11, 1, 15, 0), now), "12月1日 23:00");
  });
});

describe("the page's words", () => {
  test('own messages are labelled 我 in Chinese and "me" in English', () => {
    assert.equal(TEXT.zh.me, "我");
    assert.equal(TEXT.en.me, "me");
  });
});

// ---------------------------------------------------------------------------
// What the page copies from server.ts
// ---------------------------------------------------------------------------

describe("server.ts", () => {
  test("the values the page copies agree with it: close-code names, MAX_TEXT_LENGTH, characterCount, sessions", () => {
    // The page cannot load server.ts (it imports node: modules), so client.ts holds copies of these.
    assert.deepEqual(CLOSE_CODE_NAMES, serverCloseCodeNames);
    assert.equal(MAX_TEXT_LENGTH, SERVER_MAX_TEXT_LENGTH);
    // Both count code points: a length in UTF-16 units would refuse texts the server takes.
    for (const text of ["", "hi", "😀", "😀".repeat(MAX_TEXT_LENGTH), "字", "e\u0301", "👍🏽", "\ud800", "a\u{1F600}b"]) {
      assert.equal(characterCount(text), serverCharacterCount(text), JSON.stringify(text));
    }
    const sessions = ["", "a".repeat(15), "a".repeat(16), "A-z_0".repeat(12), "a".repeat(64), "a".repeat(65)];
    for (const session of [...sessions, "sixteen chars ok", "é".repeat(16), "+/".repeat(8)]) {
      assert.equal(sessionIsValid(session), serverSessionIsValid(session), session);
    }
  });
});

// ---------------------------------------------------------------------------
// The state machine's drawing
// ---------------------------------------------------------------------------

describe("ChatConnection's state machine", () => {
  test("is drawn the same in its doc comment and in docs/tour.md", () => {
    const drawing = (text: string) =>
      text
        .split("\n")
        .filter((line) => /[┌│└▲▼]/.test(line))
        .map((line) => line.replace(/^ \* /, "").trimEnd())
        .join("\n");
    const source = readFileSync(join(repositoryRoot, "client.ts"), "utf8");
    const comment = source.slice(source.indexOf(" * One chat connection over a sequence of sockets"));
    const tour = readFileSync(join(repositoryRoot, "docs", "tour.md"), "utf8");
    const section = tour.slice(tour.indexOf("## Reconnecting"));
    const inComment = drawing(comment.slice(0, comment.indexOf("*/")));
    const inTour = drawing(section.slice(section.indexOf("```"), section.indexOf("```", section.indexOf("```") + 3)));
    assert.match(inComment, /stopped[\s\S]*opening[\s\S]*open[\s\S]*offline[\s\S]*waiting/);
    assert.equal(inTour, inComment);
  });
});

// ---------------------------------------------------------------------------
// The committed bundle
// ---------------------------------------------------------------------------

describe("client.js", () => {
  test("is what `npm run build` makes from client.ts, byte for byte", () => {
    const packageJson: unknown = JSON.parse(readFileSync(join(repositoryRoot, "package.json"), "utf8"));
    assert.ok(typeof packageJson === "object" && packageJson !== null && "scripts" in packageJson);
    const { scripts } = packageJson;
    assert.ok(typeof scripts === "object" && scripts !== null && "build" in scripts);
    assert.ok(typeof scripts.build === "string");
    const [command, ...flags] = scripts.build.split(/\s+/);
    assert.equal(command, "esbuild");

    const directory = mkdtempSync(join(tmpdir(), "client-build-"));
    try {
      const output = join(directory, "client.js");
      const args = flags.map((flag) => (flag.startsWith("--outfile=") ? `--outfile=${output}` : flag));
      execFileSync(join(repositoryRoot, "node_modules", ".bin", "esbuild"), args, { cwd: repositoryRoot });
      const fresh = readFileSync(output);
      const committed = readFileSync(join(repositoryRoot, "client.js"));
      assert.ok(fresh.equals(committed), "client.js is out of date: run `npm run build` and commit it");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
