// The chat room (server.ts, section 10) in-process, against fake peers and a
// fake clock: no socket, no process, no waiting. Presence through the grace,
// the rate limit, identities bounded, exactly-once and resume. The same rules
// are tested over real connections in chat, identity and history tests.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ChatRoom, FrameObservers, PreparedMessage, type RoomClock, type RoomPeer, type Violation } from "../server.ts";

class FakeClock implements RoomClock {
  time = 1_700_000_000_000;
  private timers = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;
  now = () => this.time;
  setTimeout = (callback: () => void, delayMs: number): unknown => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + delayMs, callback });
    return id;
  };
  clearTimeout = (timer: unknown): void => void this.timers.delete(timer as number);
  /** Moves time on, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, timer]) => timer.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = end;
  }
}

let nextPeerId = 1;

/** A peer that keeps what the room sends it, as parsed JSON. */
class FakePeer implements RoomPeer {
  readonly id = nextPeerId++;
  handler = {};
  handshakeTrace: string[] | undefined = undefined;
  readonly received: Array<Record<string, unknown>> = [];
  failed: Violation | undefined;
  readonly observers = new FrameObservers();
  send(data: string | Buffer): boolean {
    this.received.push(JSON.parse(String(data)) as Record<string, unknown>);
    return true;
  }
  sendPrepared(message: PreparedMessage): boolean {
    return this.send(message.payload.toString("utf8"));
  }
  sendUnobserved(text: string): boolean {
    return this.send(text);
  }
  fail(violation: Violation): void {
    this.failed = violation;
  }
  /** The types received since the last call. */
  private seen = 0;
  take(): Array<Record<string, unknown>> {
    const fresh = this.received.slice(this.seen);
    this.seen = this.received.length;
    return fresh;
  }
}

function newRoom(
  options: {
    nameGraceMs?: number;
    maxIdentities?: number;
    messageRate?: number;
    messageBurst?: number;
    historySize?: number;
  } = {},
) {
  const clock = new FakeClock();
  const log: string[] = [];
  const room = new ChatRoom({
    historySize: options.historySize ?? 1000,
    messageRate: options.messageRate ?? 20,
    messageBurst: options.messageBurst ?? 40,
    replayBudgetBytes: 4 * 1024 * 1024,
    nameGraceMs: options.nameGraceMs ?? 60_000,
    maxIdentities: options.maxIdentities ?? 10_000,
    clock,
    log: (line) => log.push(line),
  });
  const join = (query: Record<string, string> = {}): FakePeer => {
    const peer = new FakePeer();
    room.join(peer, new URLSearchParams(query));
    return peer;
  };
  return { room, clock, join, log };
}

const say = (room: ChatRoom, peer: FakePeer, id: string, text = id) =>
  room.onText(peer, JSON.stringify({ type: "say", id, text }));
const types = (messages: Array<Record<string, unknown>>) => messages.map((message) => message.type);

describe("room: presence through the grace", () => {
  test("a session's last connection closing is away, not left; back within the grace; left when it runs out", () => {
    const { room, clock, join } = newRoom({ nameGraceMs: 60_000 });
    const watcher = join({ session: "watcher-session-0001" });
    const teacher = join({ session: "teacher-session-0001", name: "Teacher" });
    const sid = teacher.received[0]!.you;
    assert.deepEqual(watcher.take().slice(1), [{ type: "joined", name: "Teacher", sid }]);

    room.onClose(teacher);
    assert.deepEqual(watcher.take(), [{ type: "away", name: "Teacher", sid }]);
    clock.advance(59_999);
    const again = join({ session: "teacher-session-0001" });
    assert.equal(again.received[0]!.name, "Teacher");
    assert.deepEqual(watcher.take(), [{ type: "back", name: "Teacher", sid }]);

    room.onClose(again);
    watcher.take();
    clock.advance(59_999);
    assert.deepEqual(watcher.take(), []);
    clock.advance(1);
    assert.deepEqual(watcher.take(), [{ type: "left", name: "Teacher", sid }]);
    assert.equal(join({ name: "Teacher" }).received[0]!.name, "Teacher", "free again");
  });

  test("many graces, one timer: they end in the order they began", () => {
    const { room, clock, join } = newRoom({ nameGraceMs: 1000 });
    const watcher = join();
    const peers = ["a", "b", "c"].map((letter) => join({ session: `session-of-${letter}-000000` }));
    for (const peer of peers) {
      room.onClose(peer);
      clock.advance(100);
    }
    watcher.take();
    clock.advance(1000);
    assert.deepEqual(
      watcher.take().map((message) => [message.type, message.name]),
      [
        ["left", "小红"],
        ["left", "小军"],
        ["left", "小王"],
      ],
    );
  });

  test("identities are bounded: a newcomer past the limit ends the oldest grace at once", () => {
    const { room, join } = newRoom({ maxIdentities: 3 });
    const watcher = join({ session: "watcher-session-0001" });
    const first = join({ session: "first-session-00001" });
    const second = join({ session: "second-session-0001" });
    room.onClose(first);
    room.onClose(second);
    watcher.take();
    const newcomer = join({ session: "newcomer-session-01" });
    assert.deepEqual(types(watcher.take()), ["left", "joined"], "the oldest away identity left to make room");
    assert.equal((newcomer.received[0]!.members as unknown[]).length, 3);
  });
});

describe("room: the rate limit, on the room's clock", () => {
  test("a burst of 40, then rate_limited; refilled at 20 a second; flooding on fails with message_flood (1008)", () => {
    const { room, clock, join } = newRoom();
    const peer = join();
    peer.take();
    for (let index = 0; index < 45; index++) say(room, peer, `m${index}`);
    const answers = peer.take();
    assert.equal(answers.filter((message) => message.type === "message").length, 40);
    assert.equal(answers.filter((message) => message.code === "rate_limited").length, 5);
    clock.advance(1000);
    for (let index = 0; index < 20; index++) say(room, peer, `later${index}`);
    assert.equal(peer.take().filter((message) => message.type === "message").length, 20);
    for (let index = 0; index < 200 && peer.failed === undefined; index++) say(room, peer, `flood${index}`);
    assert.equal(peer.failed, "message_flood");
  });
});

describe("room: messages", () => {
  test("exactly once: a retried id is not sequenced again; its sender alone gets the stored copy", () => {
    const { room, join } = newRoom();
    const a = join();
    const b = join();
    say(room, a, "one", "hello");
    const stored = a.take().at(-1)!;
    b.take();
    say(room, a, "one", "hello again");
    assert.deepEqual(a.take(), [stored]);
    assert.deepEqual(b.take(), []);
    assert.equal(room.history.latestSeq, 1);
  });

  test("resume: since within the kept history replays the rest and says resumed; another epoch replays all and says not", () => {
    const { room, join } = newRoom({ historySize: 3 });
    const a = join();
    for (let index = 1; index <= 5; index++) say(room, a, `m${index}`);
    const resumed = join({ since: "3", epoch: room.epoch });
    assert.equal(resumed.received[0]!.resumed, true);
    assert.deepEqual(
      resumed.received.slice(1).map((message) => message.seq),
      [4, 5],
    );
    const elsewhere = join({ since: "3", epoch: "another-epoch" });
    assert.equal(elsewhere.received[0]!.resumed, false);
    assert.deepEqual(
      elsewhere.received.slice(1).map((message) => message.seq),
      [3, 4, 5],
    );
    const tooOld = join({ since: "1", epoch: room.epoch });
    assert.equal(tooOld.received[0]!.resumed, false, "seq 2 is no longer kept");
  });

  test("errors: each bad message gets its code and the peer stays", () => {
    const { room, join } = newRoom();
    const peer = join();
    peer.take();
    const cases: Array<[string, string]> = [
      ["not json", "bad_json"],
      ["[1]", "bad_message"],
      ['{"type":"shout"}', "unknown_type"],
      ['{"type":"say","text":"x"}', "bad_id"],
      ['{"type":"say","id":"a","text":"  "}', "empty_text"],
      [JSON.stringify({ type: "say", id: "b", text: "x".repeat(2001) }), "text_too_long"],
      ['{"type":"rename","name":"\\u0007"}', "bad_name"],
    ];
    for (const [text, code] of cases) {
      room.onText(peer, text);
      assert.equal(peer.take()[0]?.code, code, text);
    }
    assert.equal(peer.failed, undefined);
    room.onBinary(peer);
    assert.equal(peer.failed, "unsupported_data");
  });
});
