// The chat room (server.ts, section 10) in-process, against fake peers and a
// fake clock: no socket, no process, no waiting. Presence through the grace,
// the rate limit, identities bounded, exactly-once and resume. The same rules
// are tested over real connections in chat, identity and history tests.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ChatRoom,
  FrameObservers,
  HISTORY_PAGE,
  MEMBER_PAGE,
  PRESENCE_BATCH_ABOVE,
  PRESENCE_INTERVAL_MS,
  PRESENCE_SAMPLE,
  PreparedMessage,
  type RoomClock,
  type RoomPeer,
  type Violation,
} from "../server.ts";

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
  /** Every frame sent to this peer, as the JSON the room wrote. */
  readonly texts: string[] = [];
  private readonly parsed: Array<Record<string, unknown>> = [];
  failed: Violation | undefined;
  readonly observers = new FrameObservers();
  /** Every frame sent to this peer, parsed when first read: a room of thousands sends more than a test reads. */
  get received(): Array<Record<string, unknown>> {
    for (let index = this.parsed.length; index < this.texts.length; index++)
      this.parsed.push(JSON.parse(this.texts[index]!) as Record<string, unknown>);
    return this.parsed;
  }
  send(data: string | Buffer): boolean {
    this.texts.push(String(data));
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
  closedWith: number | undefined;
  close(code: number): void {
    this.closedWith = code;
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

  test("a flood of 10,000 random sessions keeps at most the limit of identities, the oldest grace ending first", () => {
    const limit = 30;
    const { room, join } = newRoom({ maxIdentities: limit });
    const watcher = join({ session: "watcher-session-0001" });
    watcher.take();
    const sids: string[] = [];
    for (let index = 0; index < 10_000; index++) {
      const peer = join({ session: `flood-${String(index).padStart(12, "0")}` });
      sids.push(String(peer.received[0]!.you));
      room.onClose(peer);
    }
    assert.ok(room.identities.size <= limit, `${room.identities.size} identities after 10,000 sessions`);
    const left = watcher
      .take()
      .filter((message) => message.type === "left")
      .map((message) => String(message.sid));
    assert.ok(left.length >= 10_000 - limit, `${left.length} graces ended early`);
    assert.deepEqual(left.slice(0, 100), sids.slice(0, 100), "the oldest first");
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
    // With fewer messages than a page, "the newest page" is all of them.
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
      ['{"type":"inspect","on":"maybe"}', "bad_message"],
      ['{"type":"inspect"}', "bad_message"],
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

const presenceTypes = new Set(["joined", "away", "back", "left", "presence", "members"]);
const presenceFrames = (messages: Array<Record<string, unknown>>) =>
  messages.filter((message) => presenceTypes.has(String(message.type)));
/** The type of a frame the room wrote, read from its text: the room writes "type" first. */
function typeOfText(text: string): string {
  const type = /^\{"type":"(\w+)"/.exec(text)?.[1];
  assert.ok(type !== undefined, `a frame whose type is not its first field: ${text.slice(0, 80)}`);
  return type;
}

describe("room: presence stays linear in a large room", () => {
  test(`up to ${PRESENCE_BATCH_ABOVE} members, one frame per join; above, one summary a second with counts and a sample`, () => {
    const { room, clock, join } = newRoom();
    const first = join();
    const early = Array.from({ length: PRESENCE_BATCH_ABOVE - 1 }, () => join());
    assert.equal(presenceFrames(first.take()).length, PRESENCE_BATCH_ABOVE - 1, "a joined frame for each");
    assert.equal(first.received[0]!.presenceBatched, false);

    const late = Array.from({ length: 50 }, () => join());
    assert.deepEqual(presenceFrames(first.take()), [], "nothing until the interval ends");
    const welcome = late.at(-1)!.received[0]!;
    assert.equal(welcome.presenceBatched, true);
    assert.equal(welcome.memberCount, PRESENCE_BATCH_ABOVE + 50);
    assert.equal(welcome.online, PRESENCE_BATCH_ABOVE + 50);
    assert.equal((welcome.members as unknown[]).length, MEMBER_PAGE, "the welcome carries one page of members");

    room.onClose(early[0]!); // a connection without a session: it leaves at once
    clock.advance(PRESENCE_INTERVAL_MS);
    const [summary, ...rest] = presenceFrames(first.take());
    assert.deepEqual(rest, []);
    assert.equal(summary!.type, "presence");
    assert.equal(summary!.joinedCount, 50);
    assert.equal((summary!.joined as unknown[]).length, PRESENCE_SAMPLE);
    assert.equal(summary!.leftCount, 1);
    assert.deepEqual(summary!.left, [{ name: early[0]!.received[0]!.name, sid: early[0]!.received[0]!.you }]);
    assert.equal(summary!.memberCount, PRESENCE_BATCH_ABOVE + 49);
    clock.advance(10 * PRESENCE_INTERVAL_MS);
    assert.deepEqual(presenceFrames(first.take()), [], "no summary when nothing changed");
  });

  test("10,000 members arriving at once: every one welcomed, and on average at most 30 presence frames each", () => {
    const { room, clock, join } = newRoom({ maxIdentities: 20_000 });
    const peers: FakePeer[] = [];
    for (let index = 0; index < 10_000; index++) {
      peers.push(join({ session: `storm-session-${String(index).padStart(8, "0")}` }));
      if (index % 1000 === 999) clock.advance(PRESENCE_INTERVAL_MS); // a thousand a second
    }
    clock.advance(PRESENCE_INTERVAL_MS);
    // Read as text: parsing 10,000 welcomes of a hundred members each would cost more than the room did.
    assert.ok(peers.every((peer) => typeOfText(peer.texts[0]!) === "welcome"));
    const frames = peers.reduce(
      (sum, peer) => sum + peer.texts.filter((text) => presenceTypes.has(typeOfText(text))).length,
      0,
    );
    assert.ok(frames / peers.length <= 30, `${frames / peers.length} presence frames per member`);
    assert.ok(
      peers.every((peer) => peer.texts[0]!.length < 200 * MEMBER_PAGE),
      "every welcome is bounded",
    );
    assert.equal(room.identities.size, 10_000);
  });

  test("a large room that becomes small again sends everyone the whole list, then single frames again", () => {
    const { room, clock, join } = newRoom();
    const watcher = join();
    const crowd = Array.from({ length: PRESENCE_BATCH_ABOVE + 5 }, () => join());
    clock.advance(PRESENCE_INTERVAL_MS);
    for (const peer of crowd.slice(0, 10)) room.onClose(peer);
    watcher.take();
    clock.advance(PRESENCE_INTERVAL_MS);
    const [summary, list] = presenceFrames(watcher.take());
    assert.equal(summary!.type, "presence");
    assert.equal(summary!.leftCount, 10);
    assert.equal(list!.type, "members");
    assert.equal(list!.offset, 0);
    assert.equal(list!.presenceBatched, false);
    assert.equal((list!.members as unknown[]).length, PRESENCE_BATCH_ABOVE - 4, "everyone: the list is whole");
    room.onClose(crowd[10]!);
    assert.deepEqual(types(presenceFrames(watcher.take())), ["left"]);
  });

  test("members pages: offsets 0, 100, 200 list everyone once; a bad offset is bad_message", () => {
    const { room, join } = newRoom();
    const peers = Array.from({ length: 250 }, () => join());
    const asker = peers[0]!;
    asker.take();
    const seen: string[] = [];
    for (const offset of [0, 100, 200, 300]) {
      room.onText(asker, JSON.stringify({ type: "members", offset }));
      const [page] = asker.take();
      assert.equal(page!.type, "members");
      assert.equal(page!.offset, offset);
      assert.equal(page!.memberCount, 250);
      for (const member of page!.members as Array<{ sid: string }>) seen.push(member.sid);
    }
    assert.equal(seen.length, 250);
    assert.equal(new Set(seen).size, 250);
    for (const offset of [-1, 1.5, "0"]) {
      room.onText(asker, JSON.stringify({ type: "members", offset }));
      assert.equal(asker.take()[0]!.code, "bad_message");
    }
  });

  test("default names come from a search that starts where it ended, and still give the smallest free one", () => {
    const { room, join } = newRoom();
    const peers = Array.from({ length: 10 }, () => join());
    assert.equal(peers.at(-1)!.received[0]!.name, "访客10");
    room.onClose(peers[6]!); // 访客7, without a session: its name is free at once
    assert.equal(join().received[0]!.name, "访客7");
    assert.equal(join().received[0]!.name, "访客11");
    const asked = Array.from({ length: 4 }, () => join({ name: "Bob" }).received[0]!.name);
    assert.deepEqual(asked, ["Bob", "Bob2", "Bob3", "Bob4"]);
  });
});

describe("room: history a page at a time", () => {
  test(`a first visit gets the newest ${HISTORY_PAGE}; {type:history,before} the pages before it, down to the oldest kept`, () => {
    const { room, join } = newRoom({ historySize: 250, messageRate: 1000, messageBurst: 1000 });
    const a = join();
    for (let index = 1; index <= 300; index++) say(room, a, `m${index}`);
    const visitor = join();
    const [welcome, ...replayed] = visitor.take();
    assert.equal(welcome!.resumed, false);
    assert.equal(welcome!.oldestSeq, 51);
    assert.deepEqual(
      replayed.map((message) => message.seq),
      Array.from({ length: HISTORY_PAGE }, (_, index) => 201 + index),
    );
    const pages: Array<Record<string, unknown>> = [];
    for (let before = 201, more = true; more;) {
      room.onText(visitor, JSON.stringify({ type: "history", before }));
      const [page] = visitor.take();
      pages.push(page!);
      more = page!.more as boolean;
      before = (page!.messages as Array<{ seq: number }>)[0]!.seq;
    }
    const seqs = pages.flatMap((page) => (page.messages as Array<{ seq: number }>).map((message) => message.seq));
    assert.deepEqual(
      seqs.sort((x, y) => x - y),
      Array.from({ length: 150 }, (_, index) => 51 + index),
    );
    assert.deepEqual(
      pages.map((page) => page.more),
      [true, false],
    );
    room.onText(visitor, JSON.stringify({ type: "history", before: "soon" }));
    assert.equal(visitor.take()[0]!.code, "bad_message");
  });

  test("a resume with since still gets everything it missed, more than a page", () => {
    const { room, join } = newRoom({ messageRate: 1000, messageBurst: 1000 });
    const a = join();
    for (let index = 1; index <= 300; index++) say(room, a, `m${index}`);
    const back = join({ since: "10", epoch: room.epoch });
    const [welcome, ...replayed] = back.take();
    assert.equal(welcome!.resumed, true);
    assert.equal(replayed.length, 290);
  });
});
