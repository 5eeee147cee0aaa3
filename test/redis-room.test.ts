// One room over several server.ts processes on a real Redis (Debian's
// redis-server, started here on a free port): the scripts' rules on Redis
// itself, then processes with clients on each — one order for everyone,
// exactly once, resume on another process, a process killed under load, and
// what each Redis failure looks like to a client.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import {
  HOST_TTL_MS,
  RedisClient,
  appendMessageScript,
  checkRoomScript,
  parseRedisUrl,
  roomKeys,
  type RedisAddress,
  type RespReply,
} from "../server.ts";
import { ChatClient, ReconnectingChatClient } from "./support/chat-client.ts";
import { RawClient } from "./support/raw-client.ts";
import { Prng } from "./support/prng.ts";
import { BlackHoleProxy, TestRedis } from "./support/redis.ts";
import { spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { waitUntil } from "./support/wait.ts";

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

  test("after 100,000 messages the stream and the id set hold exactly the kept 1,000; an id older than that is new again", async () => {
    await client.command(["FLUSHALL"]);
    const pending: Array<Promise<unknown>> = [];
    for (let index = 1; index <= 100_000; index++) {
      pending.push(
        client.run(appendMessageScript, keyList, [...state(client, "", 0, 1000), `id-${index}`, "s", "f", "t", 1]),
      );
      if (pending.length === 5000) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    assert.equal(await client.command(["XLEN", keys.stream]), 1000);
    assert.equal(await client.command(["ZCARD", keys.ids]), 1000);
    assert.equal(await client.command(["HGET", keys.meta, "seq"]), "100000");
    assert.equal((await append(client, "id-100000", ["", 0], 1000)).seen, true, "the newest is in the window");
    assert.equal((await append(client, "id-99000", ["", 0], 1000)).seen, false, "outside the window: a new message");
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

// ---------------------------------------------------------------------------
// Several processes, one room
// ---------------------------------------------------------------------------

const nodeArgs = (redis: TestRedis) => [
  "--redis",
  redis.url,
  "--redis-timeout",
  "500",
  "--message-rate",
  "1000",
  "--message-burst",
  "1000",
];

async function health(server: SpawnedServer): Promise<number> {
  try {
    return (await fetch(`${server.httpUrl}/healthz`)).status;
  } catch {
    return 0;
  }
}

/** Waits until the server's /healthz answers `status`. */
async function waitForHealth(server: SpawnedServer, status: number, timeoutMs = 10_000): Promise<void> {
  let last = -1;
  await waitUntil(
    () => last === status,
    timeoutMs,
    `/healthz ${status} (last: ${last})`,
    async () => {
      last = await health(server);
    },
  );
}

async function startNodes(redis: TestRedis, count: number): Promise<SpawnedServer[]> {
  const nodes = await Promise.all(Array.from({ length: count }, () => spawnServer(nodeArgs(redis))));
  for (const node of nodes) await waitForHealth(node, 200, 10_000);
  return nodes;
}

describe("several server processes, one room on Redis", { timeout: 120_000 }, () => {
  let redis: TestRedis;
  const running: SpawnedServer[] = [];
  const clients: ChatClient[] = [];
  before(async () => (redis = await TestRedis.start()));
  after(async () => {
    for (const client of clients) client.destroy();
    await Promise.all(running.map((node) => node.stop("SIGKILL")));
    await redis.destroy();
  });
  const join = async (node: SpawnedServer, query = "") => {
    const client = await ChatClient.join(node.port, query, { ignorePresence: true, respond: true });
    clients.push(client);
    return client;
  };

  test("three processes, two senders on each at once: every client receives the same messages, in seq order, once", async () => {
    const nodes = await startNodes(redis, 3);
    running.push(...nodes);
    const members = await Promise.all(nodes.flatMap((node) => [join(node), join(node)]));
    const perSender = 40;
    members.forEach((member, index) => {
      for (let count = 0; count < perSender; count++) member.say(`n${index}-${count}`, `from ${index}: ${count}`);
    });
    const total = members.length * perSender;
    await waitUntil(
      () => members.every((member) => new Set(member.messages().map((m) => m.seq)).size >= total),
      20_000,
      "every message everywhere",
    );
    const expected = members[0]!.messages().map((message) => message.id);
    for (const member of members) {
      const seqs = member.messages().map((message) => message.seq);
      assert.deepEqual(
        seqs,
        Array.from({ length: total }, (_, index) => index + 1),
        "seq 1..N in order, once each",
      );
      assert.deepEqual(
        member.messages().map((message) => message.id),
        expected,
        "the same order everywhere",
      );
    }
  });

  test("a message retried on another process is not delivered twice; a resume on another process is exact", async () => {
    const [a, b] = running;
    const onA = await join(a!);
    await onA.sync(); // the newest page of history, first
    const acknowledged = await onA.sayAndAck("retry-me", "once");
    const onB = await join(b!, `since=${acknowledged.seq - 1}&epoch=${onA.welcome.epoch}`);
    assert.equal(onB.welcome.resumed, true);
    const replayed = await onB.replay();
    assert.deepEqual(
      replayed.map((message) => message.id),
      ["retry-me"],
    );
    onB.say("retry-me", "once, again");
    const copy = await onB.expect("message");
    assert.equal(copy.seq, acknowledged.seq, "the stored copy, to the retrier");
    const after = await onA.sayAndAck("after", "next");
    assert.equal(after.seq, acknowledged.seq + 1, "no seq was spent on the retry");
  });

  test("kill -9 of a process under load: its clients resume on another; nothing acknowledged is lost or doubled", async () => {
    const [a, b, c] = running;
    const ports = [a!.port, b!.port, c!.port];
    const prng = new Prng(14);
    let turn = 0;
    const talkers = Array.from({ length: 6 }, (_, index) => {
      const talker = new ReconnectingChatClient({
        // Each starts on its own process; after a failure, the next one in turn (a load balancer's choice).
        port: () => ports[(index + turn++) % ports.length]!,
        name: `t${index}`,
        texts: Array.from({ length: 60 }, (_, count) => `t${index} says ${count}`),
        idPrefix: `kill-${index}`,
        window: 4,
        intervalMs: 10,
        rng: prng,
      });
      talker.start();
      return talker;
    });
    await waitUntil(() => talkers.every((talker) => talker.acknowledged.size >= 10), 20_000, "talking");
    await a!.stop("SIGKILL");
    ports.splice(0, 1);
    await waitUntil(() => talkers.every((talker) => talker.done), 60_000, "every message acknowledged");
    for (const talker of talkers) talker.stop();
    const seen = new Map<string, number>();
    for (const talker of talkers) {
      assert.equal(talker.stats.conflictingDeliveries, 0);
      assert.equal(talker.stats.epochChanges, 0);
      for (const [id, seq] of talker.acknowledged) {
        const other = seen.get(id);
        assert.ok(other === undefined || other === seq, `${id} has one seq`);
        seen.set(id, seq);
      }
    }
    assert.equal(seen.size, 6 * 60, "every message acknowledged once");
    const seqs = [...new Set(seen.values())];
    assert.equal(seqs.length, 6 * 60, "no two messages share a seq");
  });
});

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

describe("people across servers: names, presence and a server that dies", { timeout: 120_000 }, () => {
  let redis: TestRedis;
  let nodes: SpawnedServer[] = [];
  const clients: ChatClient[] = [];
  before(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all([0, 1, 2].map(() => spawnServer([...nodeArgs(redis), "--name-grace", "1500"])));
    for (const node of nodes) await waitForHealth(node, 200);
  });
  after(async () => {
    for (const client of clients) client.destroy();
    await Promise.all(nodes.map((node) => node.stop("SIGKILL")));
    await redis.destroy();
  });
  const join = async (node: SpawnedServer, query = "") => {
    const client = await ChatClient.join(node.port, query, { respond: true });
    clients.push(client);
    return client;
  };
  const presence = (client: ChatClient) =>
    client.received().filter((message) => ["joined", "away", "back", "left", "renamed"].includes(message.type));

  test("a name held on one server cannot be taken on another; the welcome on a third lists everyone", async () => {
    const [a, b, c] = nodes;
    const teacher = await join(a!, "name=Teacher&session=teacher-session-000001");
    const other = await join(b!, "name=Teacher");
    assert.equal(other.welcome.name, "Teacher2");
    assert.equal((await other.expect("error")).code, "name_taken");
    await waitUntil(
      () => presence(teacher).some((message) => message.type === "joined" && message.name === "Teacher2"),
      5000,
      "A hears of B's newcomer",
    );
    const third = await join(c!, "name=Watcher");
    const names = third.welcome.members.map((member) => member.name).sort();
    assert.deepEqual(names, ["Teacher", "Teacher2", "Watcher"]);
    assert.equal(third.welcome.memberCount, 3);
  });

  test("a rename on one server is seen on the others, and the old name is free everywhere", async () => {
    const [a, b, c] = nodes;
    const renamer = await join(a!, "name=Old&session=renamer-session-00001");
    const watcher = await join(b!, "name=Watcher2");
    renamer.send({ type: "rename", name: "New" });
    await waitUntil(
      () => presence(watcher).some((message) => message.type === "renamed" && message.to === "New"),
      5000,
      "renamed on B",
    );
    const taker = await join(c!, "name=Old");
    assert.equal(taker.welcome.name, "Old");
  });

  test("a session that moves to another server keeps its name: away, then back, never left and joined", async () => {
    const [a, b, c] = nodes;
    const watcher = await join(c!, "name=Watcher3");
    const mover = await join(a!, "name=Mover&session=mover-session-000001");
    await waitUntil(() => presence(watcher).some((message) => message.name === "Mover"), 5000, "Mover joined");
    mover.destroy();
    const moved = await join(b!, "session=mover-session-000001");
    assert.equal(moved.welcome.name, "Mover");
    // After the first server's grace for Mover is over, Mover is still here: nothing more is said.
    await waitUntil(
      () => presence(watcher).filter((message) => message.name === "Mover").length >= 3,
      5000,
      "away and back",
    );
    const said = presence(watcher)
      .filter((message) => message.name === "Mover")
      .map((message) => message.type);
    assert.deepEqual(said.slice(0, 3), ["joined", "away", "back"]);
    assert.ok(!said.includes("left"));
  });

  test(`a server killed with SIGKILL: its people leave everywhere within ${HOST_TTL_MS / 1000} s and a second, their names free`, async () => {
    const [a, b] = nodes;
    const watcher = await join(b!, "name=Watcher4");
    await join(a!, "name=Doomed&session=doomed-session-000001");
    await waitUntil(() => presence(watcher).some((message) => message.name === "Doomed"), 5000, "Doomed joined");
    await a!.stop("SIGKILL");
    await waitUntil(
      () => presence(watcher).some((message) => message.type === "left" && message.name === "Doomed"),
      HOST_TTL_MS + 5000,
      "Doomed left",
    );
    const taker = await join(b!, "name=Doomed");
    assert.equal(taker.welcome.name, "Doomed");
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

describe("a slow reader on a server of a Redis room", { timeout: 60_000 }, () => {
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
      await waitUntil(() => texts() >= 3000, 30_000, "the reader gets all 3,000");
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
