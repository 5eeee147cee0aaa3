// History, resume and epochs, over real connections: replay with `since`,
// the epoch rules, --history-size, and the --history file across restarts,
// including a torn last line. server.ts runs in this process, except where a
// server is killed with SIGKILL: that one is a process (the point is what the
// file holds when the process dies), and it is restarted in this process.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { appendFileSync, copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { ChatRoom, History, HistoryFile, type RoomPeer } from "../server.ts";
import { asStored, useChatRooms, type StoredMessage } from "./support/chat-client.ts";
import { noRateLimit } from "./support/in-process.ts";
import { waitUntil } from "./support/wait.ts";

const seqs = (messages: StoredMessage[]) => messages.map((message) => message.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => from + index);

// ---------------------------------------------------------------------------
// Servers, clients and files that are cleaned up whatever happens
// ---------------------------------------------------------------------------

const { directory, start, spawn, stop, join } = useChatRooms({
  folderPrefix: "chat-history-test-",
  config: noRateLimit,
  args: ["--message-rate", "100000", "--message-burst", "100000"],
  ignorePresence: true,
});
let fileCounter = 0;

function resume(since: number, epoch: string): string {
  return `since=${since}&epoch=${encodeURIComponent(epoch)}`;
}

function newHistoryPath(): string {
  return joinPath(directory, `history-${++fileCounter}.jsonl`);
}

/** Reads the history file back: every line must be a whole JSON record. */
function readHistoryFile(path: string): { epochs: string[]; messages: StoredMessage[]; endsWithNewline: boolean } {
  const content = readFileSync(path, "utf8");
  const epochs: string[] = [];
  const messages: StoredMessage[] = [];
  for (const line of content.split("\n")) {
    if (line === "") continue;
    let record: unknown;
    assert.doesNotThrow(
      () => (record = JSON.parse(line)),
      `a whole JSON record on each line, not ${JSON.stringify(line.slice(0, 80))}`,
    );
    const fields = record as { type?: unknown; epoch?: unknown };
    if (fields.type === "epoch") epochs.push(String(fields.epoch));
    else messages.push(asStored({ type: "message", ...(record as object) }));
  }
  return { epochs, messages, endsWithNewline: content === "" || content.endsWith("\n") };
}

// ---------------------------------------------------------------------------
// History alone: what is kept, found and replayed
// ---------------------------------------------------------------------------

describe("History, without a server", () => {
  const message = (seq: number): StoredMessage => ({
    seq,
    id: `id-${seq}`,
    sid: "sid",
    from: "小明",
    text: `text ${seq}`,
    time: seq,
  });

  test("empty: nothing to replay, latestSeq 0, and the oldest kept seq is 1", () => {
    const history = new History(5);
    assert.deepEqual(history.since(0), []);
    assert.equal(history.latestSeq, 0);
    assert.equal(history.oldestSeq, 1);
    assert.equal(history.find("id-1"), undefined);
  });

  test("since(n) is every kept message with seq > n, oldest first", () => {
    const history = new History(10);
    for (let seq = 1; seq <= 4; seq++) history.add(message(seq));
    assert.equal(history.latestSeq, 4);
    assert.deepEqual(seqs(history.since(0)), [1, 2, 3, 4]);
    assert.deepEqual(seqs(history.since(2)), [3, 4]);
    assert.deepEqual(history.since(4), []);
    assert.deepEqual(history.since(99), []);
  });

  test("it keeps the newest `size`: older ones are neither replayed nor found by id", () => {
    const history = new History(5);
    for (let seq = 1; seq <= 23; seq++) history.add(message(seq));
    assert.equal(history.oldestSeq, 19);
    assert.deepEqual(seqs(history.since(0)), range(19, 23));
    assert.deepEqual(seqs(history.since(20)), [21, 22, 23]);
    assert.equal(history.find("id-18"), undefined, "a dropped id is not found (a retry of it is new)");
    assert.deepEqual(history.find("id-19"), message(19));
  });

  test("seqs with gaps (a history file) are replayed by seq, not by position", () => {
    const history = new History(10);
    for (const seq of [3, 7, 8, 20]) history.add(message(seq));
    assert.deepEqual(seqs(history.since(5)), [7, 8, 20]);
    assert.deepEqual(seqs(history.since(8)), [20]);
    assert.deepEqual(seqs(history.since(2)), [3, 7, 8, 20]);
    assert.equal(history.oldestSeq, 3);
  });
});

// ---------------------------------------------------------------------------
// Replay and epochs
// ---------------------------------------------------------------------------

describe("replay with since, and epochs", () => {
  test("no since: resumed:false, then the newest page (here every stored message), oldest first", async () => {
    const server = await start();
    const a = await join(server, "name=A");
    assert.equal(a.welcome.seq, 0);
    assert.equal(a.welcome.resumed, false);
    const sent = [await a.sayAndAck("m1", "one"), await a.sayAndAck("m2", "two"), await a.sayAndAck("m3", "three")];
    assert.deepEqual(seqs(sent), [1, 2, 3]);

    const late = await join(server);
    assert.equal(late.welcome.seq, 3, "welcome.seq is the latest seq");
    assert.equal(late.welcome.resumed, false);
    assert.equal(late.welcome.epoch, a.welcome.epoch, "one epoch for the life of the server");
    assert.deepEqual(await late.replay(), sent);
    await stop(server);
  });

  test("since with the same epoch: resumed:true and only the newer messages, oldest first", async () => {
    const server = await start();
    const a = await join(server, "name=A");
    const sent: StoredMessage[] = [];
    for (let index = 1; index <= 4; index++) sent.push(await a.sayAndAck(`m${index}`, `text ${index}`));
    const epoch = a.welcome.epoch;

    for (const since of [0, 1, 3, 4]) {
      const client = await join(server, resume(since, epoch));
      assert.equal(client.welcome.resumed, true, `resumed with since=${since}`);
      assert.equal(client.welcome.seq, 4);
      assert.deepEqual(await client.replay(), sent.slice(since), `the messages after ${since}`);
      client.destroy();
    }
    await stop(server);
  });

  test("since with a different epoch: resumed:false and the newest page (here the whole stored history)", async () => {
    const server = await start();
    const a = await join(server, "name=A");
    const sent = [await a.sayAndAck("m1", "one"), await a.sayAndAck("m2", "two"), await a.sayAndAck("m3", "three")];
    for (const since of [0, 2, 3]) {
      const client = await join(server, resume(since, "not-this-epoch"));
      assert.equal(client.welcome.resumed, false);
      assert.notEqual(client.welcome.epoch, "not-this-epoch");
      assert.deepEqual(await client.replay(), sent, `everything, whatever since=${since} says`);
      client.destroy();
    }
    await stop(server);
  });

  test(
    "since older than the oldest kept message (--history-size 5, 20 messages): " + "resumed:false with the 5 kept",
    async () => {
      const server = await start({ historySize: 5 });
      const a = await join(server, "name=A");
      const sent: StoredMessage[] = [];
      for (let index = 1; index <= 20; index++) sent.push(await a.sayAndAck(`m${index}`, `text ${index}`));
      const epoch = a.welcome.epoch;
      const kept = sent.slice(15);

      const cases: Array<{ query: string; resumed: boolean; replay: StoredMessage[] }> = [
        { query: resume(1, epoch), resumed: false, replay: kept },
        { query: resume(14, epoch), resumed: false, replay: kept }, // 15 is gone: a gap
        { query: resume(15, epoch), resumed: true, replay: kept }, // nothing missed
        { query: resume(18, epoch), resumed: true, replay: sent.slice(18) },
        { query: "", resumed: false, replay: kept },
      ];
      for (const { query, resumed, replay } of cases) {
        const client = await join(server, query);
        assert.equal(client.welcome.seq, 20);
        assert.equal(client.welcome.resumed, resumed, `resumed for ${JSON.stringify(query)}`);
        assert.deepEqual(seqs(await client.replay()), seqs(replay), `replay for ${JSON.stringify(query)}`);
        client.destroy();
      }

      // A retried id that is still kept is recognised.
      assert.deepEqual(await a.sayAndAck("m20", "again"), sent[19], "a kept id gets its stored copy");
      assert.deepEqual(await a.sync(), []);
      await stop(server);
    },
  );

  test("without a history file every start has a new random epoch, and old seqs are not resumed", async () => {
    const first = await start();
    const a = await join(first, "name=A");
    await a.sayAndAck("m1", "one");
    const oldEpoch = a.welcome.epoch;
    await stop(first);

    const second = await start();
    const b = await join(second, resume(1, oldEpoch));
    assert.notEqual(b.welcome.epoch, oldEpoch, "a new epoch");
    assert.equal(b.welcome.seq, 0, "an empty history");
    assert.equal(b.welcome.resumed, false);
    assert.deepEqual(await b.replay(), []);

    const third = await start();
    const c = await join(third);
    assert.ok(![oldEpoch, b.welcome.epoch].includes(c.welcome.epoch), "each start its own epoch");
    await Promise.all([stop(second), stop(third)]);
  });
});

// ---------------------------------------------------------------------------
// --history FILE
// ---------------------------------------------------------------------------

describe("history file", () => {
  test("a new file gets an epoch line before any message, and keeps that epoch across a restart", async () => {
    const path = newHistoryPath();
    const first = await start({ historyFile: path });
    const a = await join(first);
    assert.ok(existsSync(path));
    assert.deepEqual(readHistoryFile(path), { epochs: [a.welcome.epoch], messages: [], endsWithNewline: true });
    await stop(first);

    const second = await start({ historyFile: path });
    const b = await join(second);
    assert.equal(b.welcome.epoch, a.welcome.epoch);
    assert.equal(b.welcome.seq, 0);
    await stop(second);
  });

  test(
    "killed with SIGKILL and restarted: " + "nothing acknowledged is lost, seq continues, epoch kept, resume works",
    async () => {
      const path = newHistoryPath();
      const first = await spawn(["--history", path]);
      const a = await join(first, "name=A");
      const epoch = a.welcome.epoch;
      const acknowledged: StoredMessage[] = [];
      for (let index = 1; index <= 5; index++)
        acknowledged.push(await a.sayAndAck(`before-${index}`, `消息 ${index} 😀`));
      // A burst, and the kill the moment the last acknowledgement arrives.
      for (let index = 6; index <= 30; index++) a.send({ type: "say", id: `before-${index}`, text: `burst ${index}` });
      for (let index = 6; index <= 30; index++) acknowledged.push(asStored(await a.expect("message")));
      await stop(first);
      assert.deepEqual(seqs(acknowledged), range(1, 30));

      const stored = readHistoryFile(path);
      assert.deepEqual(stored.epochs, [epoch]);
      assert.deepEqual(stored.messages, acknowledged, "every acknowledged message is in the file, in order");

      const second = await start({ historyFile: path });
      const fresh = await join(second);
      assert.equal(fresh.welcome.epoch, epoch, "the epoch is kept");
      assert.equal(fresh.welcome.seq, 30);
      assert.equal(fresh.welcome.resumed, false);
      assert.deepEqual(
        await fresh.replay(),
        acknowledged,
        "everything is replayed, with its seq, id, from, text and time",
      );

      const back = await join(second, resume(27, epoch));
      assert.equal(back.welcome.resumed, true);
      assert.deepEqual(await back.replay(), acknowledged.slice(27));

      // Exactly once survives the restart: the retried id gets its stored copy.
      assert.deepEqual(await back.sayAndAck("before-3", "消息 3 😀"), acknowledged[2]);
      assert.deepEqual(await back.sync(), []);
      assert.deepEqual(await fresh.sync(), [], "and nobody else hears it again");

      const next = await back.sayAndAck("after-1", "after the restart");
      assert.equal(next.seq, 31, "seq continues");
      assert.deepEqual(asStored(await fresh.expect("message")), next);
      await stop(second);
    },
  );

  test(
    "messages accepted after a restart are appended after the old ones: " + "a second restart loses nothing",
    async () => {
      const path = newHistoryPath();
      const first = await start({ historyFile: path });
      const a = await join(first, "name=A");
      const epoch = a.welcome.epoch;
      const acknowledged = [await a.sayAndAck("r1", "first run, one"), await a.sayAndAck("r2", "first run, two")];
      await stop(first);

      // The second run is killed with SIGKILL: what it appended must be in the file all the same.
      const second = await spawn(["--history", path]);
      const b = await join(second, "name=B");
      assert.deepEqual(await b.replay(), acknowledged);
      acknowledged.push(await b.sayAndAck("r3", "second run"));
      await stop(second);

      const stored = readHistoryFile(path);
      assert.deepEqual(stored.epochs, [epoch], "the epoch line is still there");
      assert.deepEqual(stored.messages, acknowledged, "the file holds all three messages");
      assert.ok(stored.endsWithNewline);

      const third = await start({ historyFile: path });
      assert.doesNotMatch(third.output(), /skipped|incomplete/, "no warning about the file");
      const c = await join(third);
      assert.equal(c.welcome.epoch, epoch);
      assert.equal(c.welcome.seq, 3);
      assert.deepEqual(await c.replay(), acknowledged);
      await stop(third);
    },
  );

  test("--history-size with a file: only the newest N are replayed and seq continues from the newest", async () => {
    const path = newHistoryPath();
    const epoch = "0123456789abcdef";
    const messages: StoredMessage[] = range(1, 20).map((seq) => ({
      seq,
      id: `old-${seq}`,
      sid: "sidOfXiaoMing",
      from: "小明",
      text: `old ${seq}`,
      time: 1_700_000_000_000 + seq,
    }));
    writeFileSync(
      path,
      [{ type: "epoch", epoch }, ...messages].map((record) => JSON.stringify(record) + "\n").join(""),
    );

    const server = await start({ historyFile: path, historySize: 5 });
    const a = await join(server);
    assert.equal(a.welcome.epoch, epoch);
    assert.equal(a.welcome.seq, 20);
    assert.deepEqual(await a.replay(), messages.slice(15));
    assert.equal((await a.sayAndAck("new", "new")).seq, 21);
    await stop(server);
  });

  describe("a truncated last line (a crash in the middle of a write)", () => {
    const epoch = "feedfacecafebeef";
    const complete: StoredMessage[] = [
      { seq: 1, id: "t1", sid: "sidOfXiaoMing", from: "小明", text: "第一条", time: 1_700_000_000_001 },
      { seq: 2, id: "t2", sid: "sidOfXiaoHong", from: "小红", text: "second", time: 1_700_000_000_002 },
    ];
    const torn = Buffer.from(
      JSON.stringify({
        seq: 3,
        id: "t3",
        sid: "sidOfXiaoJun",
        from: "小军",
        text: "被截断的消息",
        time: 1_700_000_000_003,
      }) + "\n",
    );
    /** The whole lines, then a line cut in the middle of a UTF-8 character. */
    function writeTornFile(path: string): void {
      const whole = [{ type: "epoch", epoch }, ...complete].map((record) => JSON.stringify(record) + "\n").join("");
      const cut = torn.indexOf(Buffer.from("截")) + 1; // one byte into a three-byte character
      writeFileSync(path, Buffer.concat([Buffer.from(whole), torn.subarray(0, cut)]));
    }

    test("the server starts, warns, keeps the whole lines, and goes on from the last whole message", async () => {
      const path = newHistoryPath();
      writeTornFile(path);
      const server = await start({ historyFile: path });
      assert.match(server.output(), /incomplete|truncated|partial|torn/i, "a warning about the last line");
      const a = await join(server, "name=A");
      assert.equal(a.welcome.epoch, epoch);
      assert.equal(a.welcome.seq, 2);
      assert.deepEqual(await a.replay(), complete);
      const next = await a.sayAndAck("t3-again", "after the crash");
      assert.equal(next.seq, 3);
      const b = await join(server, resume(2, epoch));
      assert.equal(b.welcome.resumed, true);
      assert.deepEqual(await b.replay(), [next]);
      await stop(server);
    });

    test(
      "new messages are stored on lines of their own after the complete ones, " + "and a restart loads them all",
      async () => {
        const path = newHistoryPath();
        writeTornFile(path);
        const first = await start({ historyFile: path });
        const a = await join(first, "name=A");
        assert.deepEqual(await a.replay(), complete);
        const next = [await a.sayAndAck("n1", "after the crash"), await a.sayAndAck("n2", "and another")];
        await stop(first);

        const stored = readHistoryFile(path);
        assert.deepEqual(stored.epochs, [epoch]);
        assert.deepEqual(stored.messages, [...complete, ...next]);
        assert.ok(stored.endsWithNewline);

        const second = await start({ historyFile: path });
        assert.doesNotMatch(second.output(), /incomplete|skipped/, "no warning the second time");
        const b = await join(second);
        assert.equal(b.welcome.epoch, epoch);
        assert.equal(b.welcome.seq, 4);
        assert.deepEqual(await b.replay(), [...complete, ...next]);
        await stop(second);
      },
    );
  });
});

// ---------------------------------------------------------------------------
// A long-lived file: read from its end, compacted while running
// ---------------------------------------------------------------------------

const stored = (seq: number): StoredMessage => ({
  seq,
  id: `long-${seq}`,
  sid: "sidOfXiaoMing",
  from: "小明",
  text: `message ${seq} ${"·".repeat(seq % 7)}`,
  time: 1_700_000_000_000 + seq,
});

function writeLongFile(path: string, epoch: string, count: number, { epochFirst = true } = {}): void {
  const lines = range(1, count).map((seq) => JSON.stringify(stored(seq)) + "\n");
  const epochLine = JSON.stringify({ type: "epoch", epoch }) + "\n";
  writeFileSync(path, epochFirst ? epochLine + lines.join("") : lines.join("") + epochLine);
}

/** A room on `path` in this process, with one member that says things. */
function roomOn(path: string, historySize: number): { room: ChatRoom; say: (id: string) => void; received: string[] } {
  const received: string[] = [];
  const peer = {
    id: 1,
    handler: {},
    handshakeTrace: undefined,
    send: (text: string | Buffer) => received.push(String(text)) > 0,
    sendPrepared: (message: { payload: Buffer }) => received.push(message.payload.toString()) > 0,
  } as unknown as RoomPeer;
  const room = new ChatRoom({
    historySize,
    historyFile: path,
    messageRate: 1e9,
    messageBurst: 1e9,
    replayBudgetBytes: 1 << 30,
    nameGraceMs: 0,
    maxIdentities: 10,
    log: () => {},
  });
  room.join(peer, new URLSearchParams());
  const say = (id: string) => room.onText(peer, JSON.stringify({ type: "say", id, text: id }));
  return { room, say, received };
}

describe("a long-lived history file", () => {
  test("start-up reads the epoch and the last --history-size messages from the end, and compacts the rest away", () => {
    const path = newHistoryPath();
    writeLongFile(path, "aaaaaaaaaaaaaaaa", 20_000);
    const { file, epoch, messages } = HistoryFile.open(path, 100, () => {});
    file.close();
    assert.equal(epoch, "aaaaaaaaaaaaaaaa");
    assert.deepEqual(messages, range(19_901, 20_000).map(stored));
    const after = readHistoryFile(path);
    assert.deepEqual(after.epochs, ["aaaaaaaaaaaaaaaa"]);
    assert.deepEqual(seqs(after.messages), range(19_901, 20_000));
    assert.match(readFileSync(path, "utf8"), /^{"type":"epoch"/, "the epoch is the first line");
  });

  test("a file whose epoch is not on its first line (an older server's) keeps that epoch, first from now on", () => {
    const path = newHistoryPath();
    writeLongFile(path, "bbbbbbbbbbbbbbbb", 50, { epochFirst: false });
    const logged: string[] = [];
    const { file, epoch, messages } = HistoryFile.open(path, 1000, (line) => logged.push(line));
    file.close();
    assert.equal(epoch, "bbbbbbbbbbbbbbbb");
    assert.deepEqual(seqs(messages), range(1, 50));
    assert.match(readFileSync(path, "utf8"), /^{"type":"epoch","epoch":"bbbbbbbbbbbbbbbb"}\n/);
    assert.deepEqual(seqs(readHistoryFile(path).messages), range(1, 50));
    assert.ok(logged.some((line) => /no epoch on the first line/.test(line)));
  });

  test("20,000 messages with --history-size 100: the file never holds more than 1,000; resume, dedupe and the epoch survive a restart", () => {
    const path = newHistoryPath();
    const first = roomOn(path, 100);
    const epoch = first.room.epoch;
    let most = 0;
    for (let seq = 1; seq <= 20_000; seq++) {
      first.say(`m${seq}`);
      if (seq % 500 === 0) most = Math.max(most, readHistoryFile(path).messages.length);
    }
    first.room.close();
    assert.ok(most <= 1000, `at most 1,000 messages in the file (saw ${most})`);
    const onDisk = readHistoryFile(path);
    assert.deepEqual(onDisk.epochs, [epoch]);
    assert.equal(onDisk.messages.at(-1)!.seq, 20_000);

    const second = roomOn(path, 100);
    assert.equal(second.room.epoch, epoch, "the same epoch after the restart");
    assert.equal(second.room.history.latestSeq, 20_000);
    second.received.length = 0;
    second.say("m19990"); // a retry of an acknowledged message: the stored copy, not a new seq
    assert.equal(JSON.parse(second.received[0]!).seq, 19_990);
    second.say("new");
    assert.equal(second.room.history.latestSeq, 20_001);
    const resumed = second.room.history.since(19_995).map((message) => message.seq);
    assert.deepEqual(resumed, range(19_996, 20_001));
    second.room.close();
  });

  test("a crash after any step of a compaction (kill -9) loses no acknowledged message and never the epoch", () => {
    const source = newHistoryPath();
    writeLongFile(source, "cccccccccccccccc", 120);
    const { file } = HistoryFile.open(source, 1000, () => {});
    const kept = range(21, 120).map(stored);
    const steps = file.compactionSteps(kept);
    file.close();
    for (let done = 0; done <= steps.length; done++) {
      const path = newHistoryPath();
      copyFileSync(source, path);
      const copy = HistoryFile.open(path, 1000, () => {});
      copy.file
        .compactionSteps(kept)
        .slice(0, done)
        .forEach((step) => step());
      // The process dies here: its descriptors close, nothing else happens. A new one starts.
      const reopened = HistoryFile.open(path, 100, () => {});
      assert.equal(reopened.epoch, "cccccccccccccccc", `epoch after ${done} steps`);
      assert.deepEqual(reopened.messages, kept, `the kept messages after ${done} steps`);
      reopened.file.append(stored(121));
      reopened.file.close();
      assert.equal(readHistoryFile(path).messages.at(-1)!.seq, 121, "appends go to the live file");
    }
  });

  test("SIGKILL while messages stream in and the file is compacted every 50: the restart has the epoch and every acknowledged message it keeps", async () => {
    const path = newHistoryPath();
    const server = await spawn(["--history", path, "--history-size", "5"]);
    const a = await join(server, "name=A");
    for (let index = 1; index <= 1000; index++) a.say(`k${index}`, `kill test ${index}`);
    await waitUntil(() => a.messages().length >= 437, 20_000, "437 acknowledgements");
    await stop(server); // SIGKILL, with more messages on the way
    const acknowledged = a.messages();

    const restarted = await start({ historyFile: path, historySize: 5 });
    const b = await join(restarted);
    assert.equal(b.welcome.epoch, a.welcome.epoch);
    assert.ok(b.welcome.seq >= acknowledged.at(-1)!.seq, "nothing acknowledged is missing");
    const replayed = await b.replay();
    assert.deepEqual(seqs(replayed), range(b.welcome.seq - 4, b.welcome.seq));
    const byId = new Map(acknowledged.map((message) => [message.id, message]));
    for (const message of replayed) if (byId.has(message.id)) assert.deepEqual(message, byId.get(message.id));
    assert.ok(readHistoryFile(path).messages.length <= 50);
    await stop(restarted);
  });

  test("a torn line at the end of a long file is cut off; the one before it is the last message", () => {
    const path = newHistoryPath();
    writeLongFile(path, "dddddddddddddddd", 5000);
    appendFileSync(path, '{"seq":5001,"id":"torn","te');
    const logged: string[] = [];
    const { file, messages } = HistoryFile.open(path, 10, (line) => logged.push(line));
    file.close();
    assert.deepEqual(seqs(messages), range(4991, 5000));
    assert.ok(logged.some((line) => /incomplete/.test(line)));
  });
});
