// One room over several server.ts processes on a real Redis (Debian's
// redis-server, started here on a free port), with clients on each: one
// order for everyone, exactly once, resume on another process, a process
// killed under load; names and presence across processes, and a process that
// dies. The scripts alone: redis-scripts; failures of Redis: redis-failures.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { HOST_TTL_MS } from "../server.ts";
import { ChatClient, ReconnectingChatClient, assertEachAcknowledgedOnce } from "./support/chat-client.ts";
import { Prng } from "./support/prng.ts";
import { TestRedis, nodeArgs, startNodes, waitForHealth } from "./support/redis.ts";
import { spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { waitUntil } from "./support/wait.ts";

// A missing redis-server fails the tests, saying what to install (TestRedis.start): never a skip.

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
    assertEachAcknowledgedOnce(talkers, 6 * 60);
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
    await waitUntil(() => presence(watcher).some((message) => message.name === "Mover"), 15_000, "Mover joined");
    mover.destroy();
    // The other servers hear of the close before Mover comes back (a reload, or a load balancer's next choice):
    // were the return first, the close would change nothing anyone sees, and there would be no away to wait for.
    const saidOfMover = () => presence(watcher).filter((message) => message.name === "Mover");
    await waitUntil(() => saidOfMover().some((message) => message.type === "away"), 15_000, "away");
    const moved = await join(b!, "session=mover-session-000001");
    assert.equal(moved.welcome.name, "Mover");
    await waitUntil(() => saidOfMover().length >= 3, 15_000, "away and back");
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
    await waitUntil(() => presence(watcher).some((message) => message.name === "Doomed"), 15_000, "Doomed joined");
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
