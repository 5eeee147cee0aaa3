// What each Redis failure looks like to a server.ts process and its clients,
// on a real Redis (Debian's redis-server, started here on a free port):
// stopped, restarted with and without persistence, restored from an older
// snapshot, black-holed; and a slow reader in a Redis room.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { RedisClient, parseRedisUrl, type RedisAddress } from "../server.ts";
import { ChatClient } from "./support/chat-client.ts";
import { RawClient } from "./support/raw-client.ts";
import { BlackHoleProxy, TestRedis, nodeArgs, startNodes, waitForHealth } from "./support/redis.ts";
import { spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { waitUntil } from "./support/wait.ts";

// A missing redis-server fails the tests, saying what to install (TestRedis.start): never a skip.

function addressOf(url: string): RedisAddress {
  const address = parseRedisUrl(url);
  assert.ok(typeof address !== "string");
  return address;
}

describe("when Redis fails", { timeout: 120_000 }, () => {
  let redis: TestRedis;
  let node: SpawnedServer;
  before(async () => {
    redis = await TestRedis.start();
    [node] = await startNodes(redis, 1);
  });
  after(async () => {
    await node.stop("SIGKILL");
    await redis.destroy();
  });

  test("Redis restarted without persistence: clients are sent away with 1012 and come back in a new epoch, resumed:false", async () => {
    const client = await ChatClient.join(node.port, "", { respond: true });
    const said = await client.sayAndAck("before", "before the restart");
    await redis.stop("SIGKILL");
    await redis.restart();
    assert.equal(await client.closeCode(15_000), 1012);
    await waitForHealth(node, 200, 10_000);
    const back = await ChatClient.join(node.port, `since=${said.seq}&epoch=${client.welcome.epoch}`, { respond: true });
    assert.notEqual(back.welcome.epoch, client.welcome.epoch);
    assert.equal(back.welcome.resumed, false);
    assert.equal((await back.sayAndAck("after", "after the restart")).seq, 1);
    back.destroy();
    client.destroy();
  });

  test("Redis stopped: /healthz 503 and new chat sockets refused with 503; clients closed with 1013; all well again when it returns", async () => {
    const client = await ChatClient.join(node.port, "", { respond: true });
    await redis.stop();
    await waitForHealth(node, 503, 10_000);
    const refused = await fetch(`${node.httpUrl}/healthz`);
    assert.match(await refused.text(), /Redis/);
    await assert.rejects(ChatClient.join(node.port), /503/);
    assert.equal(await client.closeCode(15_000), 1013);
    await redis.restart();
    await waitForHealth(node, 200, 15_000);
    const back = await ChatClient.join(node.port, "", { respond: true });
    assert.ok((await back.sayAndAck("back", "Redis is back")).seq >= 1);
    back.destroy();
    client.destroy();
  });

  test("Redis black-holed (no reset, no answer): noticed by the command timeout, /healthz 503, then well again", async () => {
    const proxy = await BlackHoleProxy.start(redis.port);
    const behind = await spawnServer(["--redis", `redis://127.0.0.1:${proxy.port}`, "--redis-timeout", "300"]);
    try {
      await waitForHealth(behind, 200, 10_000);
      proxy.swallow();
      await waitForHealth(behind, 503, 10_000);
      assert.match(behind.output(), /did not answer in time/);
    } finally {
      await behind.stop("SIGKILL");
      await proxy.close();
    }
  });
});

describe("Redis restarts, as operators do them", { timeout: 120_000 }, () => {
  test("with AOF (appendfsync always): the same epoch after the restart, and seq goes on; nobody is sent away", async () => {
    const redis = await TestRedis.start({ persistence: "aof-always" });
    const node = await spawnServer(nodeArgs(redis));
    try {
      await waitForHealth(node, 200);
      const client = await ChatClient.join(node.port, "", { respond: true, ignorePresence: true });
      await client.sync();
      const before = await client.sayAndAck("aof-1", "before");
      await redis.stop();
      await redis.restart();
      await waitForHealth(node, 200, 15_000);
      const back = await ChatClient.join(node.port, `since=${before.seq}&epoch=${client.welcome.epoch}`, {
        respond: true,
      });
      assert.equal(back.welcome.epoch, client.welcome.epoch, "the same epoch");
      assert.equal(back.welcome.resumed, true);
      const after = await back.sayAndAck("aof-2", "after");
      assert.equal(after.seq, before.seq + 1);
      assert.ok(!client.raw.events.some((event) => event.type === "close" && event.code === 1012), "no history reset");
      back.destroy();
      client.destroy();
    } finally {
      await node.stop("SIGKILL");
      await redis.destroy();
    }
  });

  test("restored from an older snapshot (RDB): the servers notice seq went back, and start a new epoch (1012, resumed:false)", async () => {
    const redis = await TestRedis.start();
    const node = await spawnServer(nodeArgs(redis));
    try {
      await waitForHealth(node, 200);
      const client = await ChatClient.join(node.port, "", { respond: true, ignorePresence: true });
      for (const id of ["r1", "r2", "r3"]) await client.sayAndAck(id, id);
      const admin = new RedisClient(addressOf(redis.url), { timeoutMs: 2000, scripts: [] });
      await admin.command(["SAVE"]); // the snapshot: seq 3
      admin.close();
      copyFileSync(joinPath(redis.directory, "dump.rdb"), joinPath(redis.directory, "older.rdb"));
      for (const id of ["r4", "r5"]) await client.sayAndAck(id, id);
      await redis.stop("SIGKILL");
      copyFileSync(joinPath(redis.directory, "older.rdb"), joinPath(redis.directory, "dump.rdb"));
      await redis.restart();
      assert.equal(await client.closeCode(15_000), 1012, "sent away: the history went back");
      await waitForHealth(node, 200, 15_000);
      const back = await ChatClient.join(node.port, `since=5&epoch=${client.welcome.epoch}`, { respond: true });
      assert.notEqual(back.welcome.epoch, client.welcome.epoch);
      assert.equal(back.welcome.resumed, false);
      back.destroy();
      client.destroy();
    } finally {
      await node.stop("SIGKILL");
      await redis.destroy();
    }
  });
});

describe("a slow reader on a server of a Redis room", { timeout: 120_000 }, () => {
  test("RFC 6455 §7.4.1: a client that stops reading is closed with 1008 once --max-buffered is passed; a reader gets everything", async () => {
    const redis = await TestRedis.start();
    // --history-size above the burst: a server whose reader falls behind the trimming closes everyone with 1012.
    const limits = [
      "--max-buffered",
      "1048576",
      "--message-rate",
      "100000",
      "--message-burst",
      "100000",
      "--history-size",
      "5000",
    ];
    const node = await spawnServer(["--redis", redis.url, "--redis-timeout", "500", ...limits]);
    try {
      await waitForHealth(node, 200);
      const stalled = await RawClient.open(node.port, { path: "/" });
      stalled.socket.pause(); // reads nothing from now on
      const reader = await ChatClient.join(node.port, "", { respond: true, ignorePresence: true });
      await reader.sync();
      const text = "x".repeat(1900); // 3,000 of them: more than the kernel's socket buffers hold for the stalled one
      for (let index = 0; index < 3000; index++) reader.say(`slow-${index}`, `${index} ${text}`);
      const texts = () => reader.raw.events.filter((event) => event.type === "text").length;
      await waitUntil(() => texts() >= 3000, 60_000, "the reader gets all 3,000");
      assert.deepEqual(
        reader.messages().map((message) => message.seq),
        Array.from({ length: 3000 }, (_, index) => index + 1),
      );
      let body = "";
      await waitUntil(
        () => /chat_slow_consumer_closes_total 1\b/.test(body),
        10_000,
        "one slow consumer closed",
        async () => {
          body = await (await fetch(`${node.httpUrl}/metrics`)).text();
        },
      );
      stalled.destroy();
      reader.destroy();
    } finally {
      await node.stop("SIGKILL");
      await redis.destroy();
    }
  });
});
