// Unit tests of the browser client's logic. No browser, no server, no real
// time: the socket, the clock and the storage are fakes, and time moves only
// when a test calls clock.advance().
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repositoryRoot } from "./helpers.ts";
import {
  Backoff,
  ChatConnection,
  Heartbeat,
  MAX_TEXT_LENGTH,
  Outbox,
  STORAGE_KEYS,
  Transcript,
  buildSocketUrl,
  createMemoryStorage,
  createMessageId,
  parseServerFrame,
  pickLanguage,
  readTimingFromQuery,
  reconnectDelay,
  resolveServerUrl,
  watchBrowserSignals,
  type ChatConnectionOptions,
  type KeyValueStorage,
  type ServerError,
  type SocketLike,
  type Timers,
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

type Listener = (event: { data: unknown }) => void;

/** Just enough WebSocket for ChatConnection, plus buttons for the test to press. */
class FakeSocket implements SocketLike {
  readonly url: string;
  readonly sent: string[] = [];
  closedByClient = false;
  private readonly listeners = new Map<string, Listener[]>();

  constructor(url: string) {
    this.url = url;
  }

  addEventListener(type: "close" | "error", listener: () => void): void;
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
    this.emit("message", JSON.stringify(frame));
  }

  receiveText(text: string): void {
    this.emit("message", text);
  }

  /** The server (or the network) closed the connection. */
  closeFromServer(): void {
    this.emit("close", undefined);
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

  private emit(type: string, data: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) listener({ data });
  }
}

interface WelcomeOptions {
  name?: string;
  users?: string[];
  seq?: number;
  epoch?: string;
  resumed?: boolean;
}

function welcome({ name = "小明", users, seq = 0, epoch = "epoch-1", resumed = false }: WelcomeOptions = {}) {
  return { type: "welcome", name, users: users ?? [name], seq, epoch, resumed };
}

function chatMessage(seq: number, fields: { id?: string; from?: string; text?: string } = {}) {
  return {
    type: "message",
    seq,
    id: fields.id ?? `other-${seq}`,
    from: fields.from ?? "小红",
    text: fields.text ?? `message ${seq}`,
    time: 1_700_000_000_000 + seq,
  };
}

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
      assert.equal(reconnectDelay(attempt, () => 0), 0);
      assert.equal(reconnectDelay(attempt, () => 0.5), ceiling / 2);
      assert.equal(reconnectDelay(attempt, () => 0.999_999), ceiling - 1);
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

  test("acknowledge removes a message and remembers it as own; discard only removes", () => {
    const storage = createMemoryStorage();
    const outbox = new Outbox(storage);
    outbox.add("one", "id-1", 1);
    outbox.add("two", "id-2", 2);
    assert.equal(outbox.acknowledge("id-1"), true);
    assert.equal(outbox.acknowledge("id-1"), false);
    assert.equal(outbox.acknowledge("someone-else"), false);
    assert.equal(outbox.discard("id-2"), true);
    assert.deepEqual(outbox.pending, []);

    const afterReload = new Outbox(storage);
    assert.equal(afterReload.isOwn("id-1"), true);
    assert.equal(afterReload.isOwn("id-2"), false);
    assert.equal(afterReload.isOwn(""), false);
  });

  test("unreadable storage gives an empty outbox instead of an exception", () => {
    const storage = createMemoryStorage();
    storage.setItem(STORAGE_KEYS.outbox, "{not json");
    assert.deepEqual(new Outbox(storage).pending, []);
    storage.setItem(STORAGE_KEYS.outbox, JSON.stringify({ pending: [{ id: 5 }, { id: "ok", text: "t", createdAt: 1 }] }));
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

    latest().receive(chatMessage(1, { id, from: "小明", text: "are you there" }));
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
    assert.deepEqual(after.connection.pending.map((message) => message.id), [id]);
    after.connection.start();
    after.latest().receive(welcome());
    assert.deepEqual(after.latest().sentOfType("say"), [{ type: "say", id, text: "typed offline" }]);
  });

  test("empty and overlong text is refused rather than queued", () => {
    const { connection } = connectedHarness();
    assert.equal(connection.send("   "), "empty");
    assert.equal(connection.send("x".repeat(MAX_TEXT_LENGTH + 1)), "too_long");
    assert.equal(connection.send("x".repeat(MAX_TEXT_LENGTH)), "sent");
    assert.equal(connection.send("😀".repeat(MAX_TEXT_LENGTH)), "sent", "an emoji is one character, as the server counts");
    assert.equal(connection.pending.length, 2);
  });

  test("own messages: from the current name, or with an id sent from this tab", () => {
    const { connection, latest } = connectedHarness({}, { name: "小明" });
    connection.send("mine by id");
    const id = connection.pending[0]!.id;
    latest().receive(chatMessage(1, { id, from: "someone renamed" }));
    latest().receive(chatMessage(2, { from: "小明" }));
    latest().receive(chatMessage(3, { from: "小红" }));
    const mine = connection.entries.map((entry) => entry.kind === "message" && connection.isMine(entry.message));
    assert.deepEqual(mine, [true, true, false]);
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
    assert.deepEqual(resent.map((frame) => frame.text), ["two"]);
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
  test("the first URL carries nothing; later ones carry since, epoch and the name from the last welcome", () => {
    const { connection, clock, sockets, latest } = createHarness();
    connection.start();
    assert.equal(sockets[0]!.url, "ws://chat.test/");

    latest().receive(welcome({ name: "小明 二号", epoch: "e/7" }));
    latest().receive(chatMessage(1));
    latest().receive(chatMessage(2));
    latest().closeFromServer();
    clock.advance(999);

    const url = latest().url;
    assert.equal(latest().query("since"), "2");
    assert.equal(latest().query("epoch"), "e/7");
    assert.equal(latest().query("name"), "小明 二号");
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
    latest().receive({ type: "joined", name: "小军" });
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
    assert.deepEqual(latest().sentOfType("say").map((frame) => frame.id), [id], "the outbox is re-sent as usual");

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
    watchBrowserSignals({ wake: () => calls.push("wake"), noteOffline: () => calls.push("offline") }, windowTarget, page);

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

  test("rename reconnects at once under the new name", () => {
    const { connection, sockets, latest } = connectedHarness({}, { name: "小明" });
    connection.rename("  阿明 ");
    assert.equal(sockets[0]!.closedByClient, true);
    assert.equal(sockets.length, 2);
    assert.equal(latest().query("name"), "阿明");
    assert.equal(connection.state, "connecting");
    latest().receive(welcome({ name: "阿明", resumed: true }));
    assert.equal(connection.name, "阿明");
    connection.rename("阿明");
    connection.rename("");
    assert.equal(sockets.length, 2, "same or empty name: nothing to do");
  });

  test("a name still held by our own dead connection is taken back when that connection leaves", () => {
    const { connection, clock, sockets, latest, errors } = connectedHarness({}, { name: "小明", users: ["小明"] });
    latest().closeFromServer();
    clock.advance(999);
    assert.equal(latest().query("name"), "小明");
    // The server has not yet noticed our old connection is gone, and lends us a stand-in.
    latest().receive(welcome({ name: "小明2", users: ["小明", "小明2"], resumed: true }));
    latest().receive({ type: "error", code: "name_taken", message: "小明 is taken; you are 小明2." });
    assert.equal(connection.name, "小明2");
    assert.equal(errors[0]?.code, "name_taken");

    latest().receive({ type: "left", name: "小明" });
    assert.equal(sockets.length, 3, "reconnected at once");
    assert.equal(sockets[1]!.closedByClient, true);
    assert.equal(latest().query("name"), "小明");
    latest().receive(welcome({ name: "小明", users: ["小明", "小明2", "小红"], resumed: true }));
    assert.equal(connection.name, "小明");
    latest().receive({ type: "left", name: "小明2" });
    latest().receive({ type: "left", name: "小红" });
    assert.deepEqual(connection.users, ["小明"]);
    assert.deepEqual(
      connection.entries.map((entry) => (entry.kind === "notice" ? `${entry.notice} ${entry.name}` : "message")),
      ["left 小红"],
      "our own old connections leaving are not news",
    );
  });

  test("after a rename, the old name leaving is not news, but a newcomer with it leaving is", () => {
    const { connection, latest } = connectedHarness({}, { name: "小明", users: ["小明"] });
    connection.rename("阿明");
    latest().receive(welcome({ name: "阿明", users: ["小明", "阿明"], resumed: true }));
    latest().receive({ type: "left", name: "小明" });
    latest().receive({ type: "joined", name: "小明" });
    latest().receive({ type: "left", name: "小明" });
    assert.deepEqual(
      connection.entries.map((entry) => (entry.kind === "notice" ? `${entry.notice} ${entry.name}` : "message")),
      ["joined 小明", "left 小明"],
    );
  });

  test("a name the server refuses for good (bad_name) is replaced by the one it gave", () => {
    const { connection, clock, latest } = connectedHarness({}, { name: "小明" });
    connection.rename("\u0007bell");
    latest().receive(welcome({ name: "小红", resumed: true }));
    latest().receive({ type: "error", code: "bad_name", message: "No control characters; you are 小红." });
    latest().closeFromServer();
    clock.advance(999);
    assert.equal(latest().query("name"), "小红");
  });

  test("joined and left keep the user list and add notices; our own name is not news", () => {
    const { connection, latest } = connectedHarness({}, { name: "小明", users: ["小明", "小红"] });
    latest().receive({ type: "joined", name: "小军" });
    latest().receive({ type: "left", name: "小红" });
    latest().receive({ type: "left", name: "小明" });
    assert.deepEqual(connection.users, ["小明", "小军"]);
    assert.deepEqual(
      connection.entries.map((entry) => (entry.kind === "notice" ? `${entry.notice} ${entry.name}` : "message")),
      ["joined 小军", "left 小红"],
    );
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
      message: { seq: 3, id: "other-3", from: "小红", text: "message 3", time: 1_700_000_000_003 },
    });
    assert.deepEqual(parseServerFrame(JSON.stringify({ type: "error", code: "bad_json", message: "No." })), {
      type: "error",
      code: "bad_json",
      message: "No.",
      id: null,
    });
  });

  test("resolveServerUrl: ?server= wins, then the page's own host, then localhost:5500 for file://", () => {
    assert.equal(resolveServerUrl({ protocol: "http:", host: "example.org:8080", search: "" }), "ws://example.org:8080/");
    assert.equal(resolveServerUrl({ protocol: "https:", host: "example.org", search: "" }), "wss://example.org/");
    assert.equal(resolveServerUrl({ protocol: "file:", host: "", search: "" }), "ws://localhost:5500/");
    assert.equal(
      resolveServerUrl({ protocol: "file:", host: "", search: "?server=ws://127.0.0.1:9000/" }),
      "ws://127.0.0.1:9000/",
    );
    assert.equal(resolveServerUrl({ protocol: "file:", host: "", search: "?server=nonsense" }), "ws://localhost:5500/");
  });

  test("buildSocketUrl keeps the server's own query and adds ours", () => {
    assert.equal(buildSocketUrl("ws://h:1", null, null), "ws://h:1/");
    assert.equal(buildSocketUrl("ws://h:1/?room=a", "A B", { since: 4, epoch: "x" }), "ws://h:1/?room=a&name=A%20B&since=4&epoch=x");
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
// The committed bundle
// ---------------------------------------------------------------------------

describe("client.js", () => {
  test("is what `npm run build` makes from client.ts, byte for byte", () => {
    const packageJson: unknown = JSON.parse(readFileSync(join(repositoryRoot, "package.json"), "utf8"));
    assert.ok(typeof packageJson === "object" && packageJson !== null && "scripts" in packageJson);
    const { scripts } = packageJson;
    assert.ok(typeof scripts === "object" && scripts !== null && "build" in scripts && typeof scripts.build === "string");
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
