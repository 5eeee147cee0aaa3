// The Redis client of server.ts (section 11) against Debian's redis-server:
// the sans-I/O RESP2 parser on bytes a real Redis sent, cut at every point;
// pipelining; authentication and database selection; scripts after a
// restart; and a Redis that stops answering without closing anything.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect } from "node:net";
import {
  RedisClient,
  RedisReplyError,
  RedisScript,
  RespParser,
  RespProtocolError,
  encodeCommand,
  parseRedisUrl,
  type RedisAddress,
  type RespReply,
} from "../server.ts";
import { BlackHoleProxy, TestRedis } from "./support/redis.ts";
import { waitUntil } from "./support/wait.ts";

// A missing redis-server fails the tests, saying what to install (TestRedis.start): never a skip.

function addressOf(redis: TestRedis, port = redis.port): RedisAddress {
  const address = parseRedisUrl(redis.url);
  assert.ok(typeof address !== "string", address as string);
  return { ...address, port };
}

describe("RESP2 replies, parsed sans-I/O (the Redis protocol specification)", () => {
  let redis: TestRedis;
  before(async () => (redis = await TestRedis.start()));
  after(() => redis.destroy());

  test("every reply type a real Redis sends, cut at every byte, gives the same replies as in one piece", async () => {
    const commands: Array<Array<string | number>> = [
      ["SET", "text", "line one\r\nline two, 你好"],
      ["GET", "text"],
      ["GET", "missing"],
      ["INCR", "counter"],
      ["RPUSH", "list", "a", "", "c"],
      ["LRANGE", "list", 0, -1],
      ["LRANGE", "missing", 0, -1],
      ["XADD", "stream", "1-0", "field", "value"],
      ["XRANGE", "stream", "-", "+"],
      ["XREAD", "COUNT", 1, "STREAMS", "stream", "1-0"],
      ["HGET", "text", "field"],
      ["EVAL", "return {1, {2, 'three'}, redis.error_reply('ERR inside')}", 0],
    ];
    // The bytes as they arrived from the real Redis, parsed as they came.
    const socket = connect(redis.port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.write(Buffer.concat(commands.map(encodeCommand)));
    const whole = new RespParser();
    const expected: RespReply[] = [];
    let seen = 0;
    await waitUntil(() => {
      for (; seen < chunks.length; seen++) expected.push(...whole.receive(chunks[seen]!));
      return expected.length >= commands.length;
    });
    socket.destroy();
    const bytes = Buffer.concat(chunks);
    assert.equal(expected.length, commands.length);
    assert.equal(expected[1], "line one\r\nline two, 你好");
    assert.equal(expected[2], null, "a missing key is a null bulk string");
    assert.equal(expected[3], 1);
    assert.deepEqual(expected[5], ["a", "", "c"]);
    assert.deepEqual(expected[6], [], "an empty array");
    assert.ok(expected[10] instanceof RedisReplyError && expected[10].code === "WRONGTYPE");
    assert.deepEqual(expected[8], [["1-0", ["field", "value"]]], "nested arrays");
    assert.ok(Array.isArray(expected[11]) && expected[11][2] instanceof RedisReplyError, "an error inside an array");

    for (let cut = 0; cut <= bytes.length; cut++) {
      const parser = new RespParser();
      const replies = [...parser.receive(bytes.subarray(0, cut)), ...parser.receive(bytes.subarray(cut))];
      assert.deepEqual(replies, expected, `cut at byte ${cut}`);
    }
    const byteByByte = new RespParser();
    const replies: RespReply[] = [];
    for (let index = 0; index < bytes.length; index++)
      replies.push(...byteByByte.receive(bytes.subarray(index, index + 1)));
    assert.deepEqual(replies, expected, "one byte at a time");
  });

  test("XREAD BLOCK that times out is a null array (*-1)", async () => {
    const client = new RedisClient(addressOf(redis), { timeoutMs: 2000, scripts: [] });
    assert.equal(await client.command(["XREAD", "BLOCK", 10, "STREAMS", "nothing-here", "0-0"]), null);
    client.close();
  });

  test("a byte that starts no reply is a protocol error, not a guess", () => {
    assert.throws(() => new RespParser().receive(Buffer.from("?what\r\n")), RespProtocolError);
    assert.throws(() => new RespParser().receive(Buffer.from(":12x\r\n")), RespProtocolError);
  });
});

describe("--redis URLs", () => {
  test("host, port, user, password and database; anything else is refused with a reason", () => {
    assert.deepEqual(parseRedisUrl("redis://127.0.0.1:6380/2"), {
      host: "127.0.0.1",
      port: 6380,
      username: undefined,
      password: undefined,
      db: 2,
    });
    assert.deepEqual(parseRedisUrl("redis://chat:s%40cret@redis.internal"), {
      host: "redis.internal",
      port: 6379,
      username: "chat",
      password: "s@cret",
      db: 0,
    });
    assert.match(String(parseRedisUrl("http://x")), /only redis:\/\//);
    assert.match(String(parseRedisUrl("redis://x/abc")), /database/);
    assert.match(String(parseRedisUrl("not a url")), /not a URL/);
  });
});

describe("RedisClient against a real Redis", () => {
  let redis: TestRedis;
  before(async () => (redis = await TestRedis.start({ password: "pa ss" })));
  after(() => redis.destroy());

  test("AUTH and SELECT on connecting; 2,000 pipelined commands, each reply matched to its command", async () => {
    const client = new RedisClient({ ...addressOf(redis), db: 3 }, { timeoutMs: 2000, scripts: [] });
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, index) => client.command(["INCRBY", "n", index])),
    );
    let total = 0;
    replies.forEach((reply, index) => assert.equal(reply, (total += index)));
    const database = await client.command(["CLIENT", "INFO"]);
    assert.match(String(database), /\bdb=3\b/);
    client.close();
  });

  test("an error reply fails its own command only", async () => {
    const client = new RedisClient(addressOf(redis), { timeoutMs: 2000, scripts: [] });
    const results = await Promise.allSettled([
      client.command(["SET", "k", "v"]),
      client.command(["LPUSH", "k", "x"]),
      client.command(["GET", "k"]),
    ]);
    assert.deepEqual(results[0], { status: "fulfilled", value: "OK" });
    assert.ok(results[1].status === "rejected" && results[1].reason instanceof RedisReplyError);
    assert.deepEqual(results[2], { status: "fulfilled", value: "v" });
    client.close();
  });

  test("scripts: loaded on connecting, loaded again after SCRIPT FLUSH (NOSCRIPT) and after a Redis restart", async () => {
    const script = new RedisScript("return redis.call('INCR', KEYS[1])");
    const client = new RedisClient(addressOf(redis), { timeoutMs: 2000, scripts: [script] });
    assert.equal(await client.run(script, ["s"], []), 1);
    const runId = client.runId;
    assert.match(runId, /^[0-9a-f]{40}$/);
    await client.command(["SCRIPT", "FLUSH"]);
    assert.equal(await client.run(script, ["s"], []), 2, "NOSCRIPT, loaded, run");
    await redis.stop();
    await assert.rejects(client.command(["PING"]));
    await redis.restart();
    assert.equal(await client.run(script, ["s"], []), 1, "a new connection; the restarted Redis had no persistence");
    assert.notEqual(client.runId, runId, "a restarted Redis has a new run id");
    client.close();
  });

  test(
    "a Redis that stops answering without closing anything: every waiting command fails at the timeout",
    { timeout: 10_000 },
    async () => {
      const proxy = await BlackHoleProxy.start(redis.port);
      const client = new RedisClient(addressOf(redis, proxy.port), { timeoutMs: 300, scripts: [] });
      assert.equal(await client.command(["PING"]), "PONG");
      proxy.swallow();
      const results = await Promise.allSettled([client.command(["PING"]), client.command(["GET", "x"])]);
      assert.ok(results.every((result) => result.status === "rejected"));
      assert.match(String((results[0] as PromiseRejectedResult).reason), /did not answer in time/);
      await proxy.close();
      client.close();
    },
  );
});
