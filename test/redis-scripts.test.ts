// The room's Lua scripts (server.ts section 11) on a real Redis (Debian's
// redis-server, started here on a free port): seq, dedupe, trimming, and
// when the epoch must change. The processes that use them: redis-room and
// redis-failures tests.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  RedisClient,
  appendMessageScript,
  checkRoomScript,
  parseRedisUrl,
  roomKeys,
  type RedisAddress,
  type RespReply,
} from "../server.ts";
import { TestRedis } from "./support/redis.ts";

// A missing redis-server fails the tests, saying what to install (TestRedis.start): never a skip.
const keys = roomKeys("test");
const keyList = [keys.meta, keys.stream, keys.ids];

function addressOf(url: string): RedisAddress {
  const address = parseRedisUrl(url);
  assert.ok(typeof address !== "string");
  return address;
}

/** ARGV of both scripts: run id, known epoch, known seq, a new epoch, messages kept. */
function state(client: RedisClient, knownEpoch = "", knownSeq = 0, keep = 100): Array<string | number> {
  return [client.runId, knownEpoch, knownSeq, `epoch-${Math.random().toString(16).slice(2, 10)}`, keep];
}

async function append(client: RedisClient, id: string, known: [string, number] = ["", 0], keep = 100) {
  const reply = await client.run(appendMessageScript, keyList, () => [
    ...state(client, ...known, keep),
    id,
    "sid",
    "from",
    `text ${id}`,
    1,
  ]);
  const [epoch, seq, seen] = reply as [string, number, number];
  return { epoch, seq, seen: seen === 1 };
}

describe("the room's scripts on a real Redis", () => {
  let redis: TestRedis;
  let client: RedisClient;
  before(async () => {
    redis = await TestRedis.start({ persistence: "aof-always" });
    client = new RedisClient(addressOf(redis.url), {
      timeoutMs: 2000,
      scripts: [checkRoomScript, appendMessageScript],
    });
  });
  after(async () => {
    client.close();
    await redis.destroy();
  });

  test("seq 1, 2, 3 in one epoch; an id seen again is the same seq, flagged; the stream's entry ids are <seq>-0", async () => {
    await client.command(["FLUSHALL"]);
    const first = await append(client, "a");
    assert.deepEqual([first.seq, first.seen], [1, false]);
    assert.deepEqual([(await append(client, "b")).seq, (await append(client, "c")).seq], [2, 3]);
    const again = await append(client, "b");
    assert.deepEqual(again, { epoch: first.epoch, seq: 2, seen: true });
    const entries = (await client.command(["XRANGE", keys.stream, "-", "+"])) as Array<[string, string[]]>;
    assert.deepEqual(
      entries.map(([id]) => id),
      ["1-0", "2-0", "3-0"],
    );
  });

  test("the room's state gone (FLUSHALL, a Redis without persistence restarted): a new epoch, seq from 1", async () => {
    await client.command(["FLUSHALL"]);
    const before = await append(client, "x");
    await client.command(["FLUSHALL"]);
    const after = await append(client, "y", [before.epoch, before.seq]);
    assert.notEqual(after.epoch, before.epoch);
    assert.equal(after.seq, 1);
  });

  test("Redis restarted with everything on disk (AOF, appendfsync always): the same epoch, seq goes on", async () => {
    await client.command(["FLUSHALL"]);
    const before = await append(client, "p");
    const runId = client.runId;
    await redis.stop();
    await redis.restart();
    const after = await append(client, "q", [before.epoch, before.seq]);
    assert.notEqual(client.runId, runId);
    assert.deepEqual([after.epoch, after.seq], [before.epoch, 2]);
  });

  test("Redis restarted with less than a server had seen (an older snapshot): a new epoch, never the same seq twice", async () => {
    await client.command(["FLUSHALL"]);
    const written = await append(client, "r1");
    await redis.stop();
    await redis.restart(); // the AOF has r1 only
    // A server that saw seq 5 in this epoch before the restart: Redis came back with less.
    const reply = (await client.run(checkRoomScript, keyList, () => state(client, written.epoch, 5))) as RespReply[];
    assert.notEqual(reply[0], written.epoch);
    assert.equal(reply[1], 0);
  });
});

// Without persistence: 100,000 appends with an fsync each would measure the disk, not the script.
describe("the room's scripts over a long life", () => {
  let redis: TestRedis;
  let client: RedisClient;
  before(async () => {
    redis = await TestRedis.start();
    // Thousands of scripts are pipelined: the last waits behind all the others, so its deadline is generous.
    client = new RedisClient(addressOf(redis.url), {
      timeoutMs: 60_000,
      scripts: [checkRoomScript, appendMessageScript],
    });
  });
  after(async () => {
    client.close();
    await redis.destroy();
  });

  test("after 20,000 messages the stream and the id set hold exactly the kept 1,000; an id older than that is new again", async () => {
    const pending: Array<Promise<unknown>> = [];
    for (let index = 1; index <= 20_000; index++) {
      pending.push(
        client.run(appendMessageScript, keyList, [...state(client, "", 0, 1000), `id-${index}`, "s", "f", "t", 1]),
      );
      if (pending.length === 5000) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    assert.equal(await client.command(["XLEN", keys.stream]), 1000);
    assert.equal(await client.command(["ZCARD", keys.ids]), 1000);
    assert.equal(await client.command(["HGET", keys.meta, "seq"]), "20000");
    assert.equal((await append(client, "id-20000", ["", 0], 1000)).seen, true, "the newest is in the window");
    assert.equal((await append(client, "id-19000", ["", 0], 1000)).seen, false, "outside the window: a new message");
  });
});
