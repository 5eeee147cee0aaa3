// Deployment (issue #14): one room over several server.ts processes on a real
// Redis, behind a real load balancer (Debian's HAProxy with the project's own
// deploy/haproxy.cfg), with the client's real address and with TLS.
//
//   - behind HAProxy: chat clients land on both nodes (balance leastconn) and
//     share one room; kill -9 of a node sends its clients, through HAProxy, to
//     the other with nothing acknowledged lost or doubled; HAProxy's PROXY line
//     (send-proxy) makes --max-connections-per-ip count each client's address;
//   - the page in Chromium through HAProxy, across the kill -9 of its node;
//   - --trust-proxy on raw sockets: the PROXY protocol v1 line and
//     X-Forwarded-For, believed from trusted peers only;
//   - GET /metrics in Prometheus's text format 0.0.4;
//   - --tls-cert/--tls-key: https:// and wss:// with a certificate made here;
//   - the kernel's accept queue: a burst of connections to a stopped server
//     waits there instead of losing its SYNs.
//
// A describe whose system binary is missing (haproxy, redis-server, openssl,
// chromium) fails and says what to install; .ci/run installs them all.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import {
  assertSettled,
  chromiumPath,
  cleanUp,
  launchChromium,
  readMessages,
  testPage,
  typeMessage,
  waitForConfirmed,
  waitForState,
  type ChatPage,
} from "./fixtures/e2e-browser.ts";
import { binaries, requirePythonWebsockets, runJsonClient } from "./interop/tools.ts";
import { ChatClient, ReconnectingChatClient, assertEachAcknowledgedOnce, nameQuery } from "./support/chat-client.ts";
import { TestHaproxy, haproxyMissing } from "./support/haproxy.ts";
import { Prng } from "./support/prng.ts";
import { RawClient, textStartsWith } from "./support/raw-client.ts";
import { TestRedis, haveRedis, nodeArgs, startHealthyServers } from "./support/redis.ts";
import { freePort, runServerToExit, spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { waitUntil, within } from "./support/wait.ts";

const opensslPath = "/usr/bin/openssl";
const missing = {
  haproxy: haproxyMissing(),
  redis: haveRedis() ? false : "redis-server is not installed at /usr/bin/redis-server (apt-get install redis-server)",
  openssl:
    spawnSync(opensslPath, ["version"]).status === 0
      ? false
      : `openssl is not installed at ${opensslPath} (apt-get install openssl)`,
  chromium: existsSync(chromiumPath)
    ? false
    : `Chromium's headless shell is not installed at ${chromiumPath} (apt-get install chromium-headless-shell)`,
} as const;

/** As everywhere in this suite, a missing program is a failure that says what to install, never a skip. */
function skipUnless(...needs: Array<keyof typeof missing>): false {
  const reasons = needs.flatMap((need) => (missing[need] === false ? [] : [missing[need]]));
  if (reasons.length > 0) throw new Error(`${reasons.join("; ")}; .ci/run installs it`);
  return false;
}

// ── Prometheus's text format 0.0.4 ─────────────────────────────────────────

interface Sample {
  name: string;
  labels: string;
  value: number;
}

interface Exposition {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
}

const metricName = "[a-zA-Z_:][a-zA-Z0-9_:]*";

/** Parses a scrape as Prometheus's text format 0.0.4 does, and fails on what it would refuse. */
function parseExposition(body: string): Exposition {
  assert.ok(body.endsWith("\n"), "the last line ends with a line feed");
  const exposition: Exposition = { help: new Map(), type: new Map(), samples: [] };
  const runs: string[] = []; // sample names, one entry per run of equal names
  for (const line of body.slice(0, -1).split("\n")) {
    if (line.trim() === "") continue;
    const help = new RegExp(`^# HELP (${metricName}) (.*)$`).exec(line);
    if (help !== null) {
      assert.ok(!exposition.help.has(help[1]!), `one HELP line for ${help[1]}`);
      exposition.help.set(help[1]!, help[2]!);
      continue;
    }
    const type = new RegExp(`^# TYPE (${metricName}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (type !== null) {
      assert.ok(!exposition.type.has(type[1]!), `one TYPE line for ${type[1]}`);
      assert.ok(!runs.includes(type[1]!), `the TYPE line of ${type[1]} comes before its samples`);
      exposition.type.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith("#")) continue; // a comment
    const sample = new RegExp(`^(${metricName})(\\{[^}]*\\})? (\\S+)(?: -?\\d+)?$`).exec(line);
    assert.ok(sample !== null, `a sample line: ${JSON.stringify(line)}`);
    const [, name, labels, text] = sample as unknown as [string, string, string | undefined, string];
    const value = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : text === "NaN" ? NaN : Number(text);
    assert.ok(!Number.isNaN(value) || text === "NaN", `a number: ${JSON.stringify(line)}`);
    if (runs.at(-1) !== name) {
      assert.ok(!runs.includes(name), `the samples of ${name} are together`);
      runs.push(name);
    }
    exposition.samples.push({ name, labels: labels ?? "", value });
  }
  return exposition;
}

/** The one sample of `name` (undefined when there is none). */
function valueOf(exposition: Exposition, name: string): number | undefined {
  const samples = exposition.samples.filter((sample) => sample.name === name);
  assert.ok(samples.length <= 1, `one sample of ${name}: ${JSON.stringify(samples)}`);
  return samples[0]?.value;
}

const CONTENT_TYPE_0_0_4 = "text/plain; version=0.0.4; charset=utf-8";

/** GET /metrics from `baseUrl`: its body, parsed; the status and Content-Type checked. */
async function scrape(baseUrl: string): Promise<{ body: string; exposition: Exposition }> {
  const response = await fetch(`${baseUrl}/metrics`);
  const body = await response.text();
  assert.equal(response.status, 200, `GET /metrics: ${body}`);
  assert.equal(response.headers.get("content-type"), CONTENT_TYPE_0_0_4);
  return { body, exposition: parseExposition(body) };
}

async function metric(baseUrl: string, name: string): Promise<number | undefined> {
  return valueOf((await scrape(baseUrl)).exposition, name);
}

/** Waits until `name` on `baseUrl` satisfies `wanted` (asked again every 10 ms), and returns it. */
async function waitForMetric(
  baseUrl: string,
  name: string,
  wanted: (value: number | undefined) => boolean,
  timeoutMs = 10_000,
): Promise<number | undefined> {
  let last: number | undefined;
  await waitUntil(
    () => wanted(last),
    timeoutMs,
    `${name} on ${baseUrl} (last: ${last})`,
    async () => {
      last = await metric(baseUrl, name).catch(() => undefined);
    },
  );
  return last;
}

const counters = {
  chat_messages_received_total: "counter",
  chat_deliveries_total: "counter",
  chat_replayed_messages_total: "counter",
  chat_slow_consumer_closes_total: "counter",
  chat_epoch_changes_total: "counter",
} as const;
const everyServer = { chat_connections: "gauge", ...counters } as const;
const redisOnly = { chat_redis_up: "gauge", chat_redis_round_trip_seconds: "gauge" } as const;

// ── Nodes and HAProxy ──────────────────────────────────────────────────────

/** What a node runs with behind deploy/haproxy.cfg: HAProxy's PROXY lines come from 127.0.0.1. */
const nodeBehindHaproxy = (redis: TestRedis) => [...nodeArgs(redis), "--trust-proxy", "127.0.0.1", "--verbose"];

/** The open WebSocket connections of each node, from its /metrics (a killed node counts 0). */
async function connectionCounts(nodes: readonly SpawnedServer[]): Promise<number[]> {
  return Promise.all(
    nodes.map(async (node) => (node.alive() ? ((await metric(node.httpUrl, "chat_connections")) ?? -1) : 0)),
  );
}

async function waitForCounts(nodes: readonly SpawnedServer[], wanted: (counts: number[]) => boolean, what: string) {
  let counts: number[] = [];
  await waitUntil(
    () => wanted(counts),
    10_000,
    () => `${what} (chat_connections now ${JSON.stringify(counts)})`,
    async () => (counts = await connectionCounts(nodes)),
  );
  return counts;
}

/** "connection N opened from ADDRESS on /" lines a --verbose server logged after `mark`. */
function openedFrom(server: { output(): string }, address: string, mark = 0): number {
  const escaped = address.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return (
    server
      .output()
      .slice(mark)
      .match(new RegExp(`^connection \\d+ opened from ${escaped} on /$`, "gm")) ?? []
  ).length;
}

async function waitForOpenedFrom(server: SpawnedServer, address: string, count: number, mark: number) {
  await waitUntil(
    () => openedFrom(server, address, mark) >= count,
    5000,
    () => `${count} connection(s) logged as opened from ${address}; the log:\n${server.output().slice(mark)}`,
  );
}

describe(
  "two nodes on one Redis behind HAProxy (deploy/haproxy.cfg)",
  {
    skip: skipUnless("haproxy", "redis"),
    timeout: 180_000,
  },
  () => {
    let redis: TestRedis;
    let nodes: SpawnedServer[] = [];
    let haproxy: TestHaproxy | undefined;
    const clients: ChatClient[] = [];
    before(async () => {
      redis = await TestRedis.start();
      nodes = await startHealthyServers(2, nodeBehindHaproxy(redis));
      haproxy = await TestHaproxy.start({ nodePorts: [nodes[0]!.port, nodes[1]!.port] });
    });
    after(async () => {
      for (const client of clients) client.destroy();
      await haproxy?.stop();
      await Promise.all(nodes.map((node) => node.stop("SIGKILL")));
      await redis?.destroy();
    });

    test("four chat clients through the frontend land two on each node (balance leastconn) and see one room", async () => {
      for (let index = 0; index < 4; index++) {
        clients.push(
          await ChatClient.join(haproxy!.port, nameQuery(`lb-${index}`), { ignorePresence: true, respond: true }),
        );
      }
      assert.deepEqual(
        await waitForCounts(nodes, (counts) => counts[0]! + counts[1]! === 4, "four connections"),
        [2, 2],
        "leastconn puts two on each node",
      );
      const texts = clients.map((_, index) => `hello from client ${index}`);
      clients.forEach((client, index) => client.say(`lb-${index}`, texts[index]!));
      for (const client of clients) for (const text of texts) await client.waitForMessage(text);
      const views = clients.map((client) =>
        client
          .messages()
          .filter((message) => texts.includes(message.text))
          .map((message) => [message.seq, message.id]),
      );
      for (const view of views) assert.deepEqual(view, views[0], "every client has the same messages in one order");
      assert.equal(new Set(views[0]!.map(([seq]) => seq)).size, 4, "four messages, four seqs");
      for (const client of clients.splice(0)) await client.leave();
      await waitForCounts(nodes, (counts) => counts.every((count) => count === 0), "every connection closed");
    });

    test(
      "kill -9 of a node under load: its clients come back through HAProxy on the other node; every message " +
        "acknowledged once, none lost, none doubled",
      { timeout: 120_000 },
      async (t) => {
        const perTalker = 120; // at 10 ms apart: still talking when HAProxy marks the node down, 1-2 s after the kill
        const prng = new Prng(1414);
        const talkers = Array.from({ length: 6 }, (_, index) => {
          const talker = new ReconnectingChatClient({
            port: haproxy!.port, // always the frontend: HAProxy chooses the node
            name: `talker-${index}`,
            texts: Array.from({ length: perTalker }, (_, count) => `talker ${index} says ${count}`),
            idPrefix: `kill-${index}`,
            window: 4,
            intervalMs: 10,
            rng: prng,
          });
          talker.start();
          return talker;
        });
        try {
          await waitForCounts(nodes, (counts) => counts[0] === 3 && counts[1] === 3, "three talkers on each node");
          await waitUntil(
            () => talkers.every((talker) => talker.acknowledged.size >= 20),
            20_000,
            "every talker talking",
          );
          const killedAt = performance.now();
          const acknowledgedBefore = talkers.reduce((sum, talker) => sum + talker.acknowledged.size, 0);
          assert.equal(await nodes[0]!.stop("SIGKILL"), null, "killed, not exited");
          const down = await haproxy!.waitForServers(
            (servers) => servers.find((server) => server.name === "node1")?.status === "DOWN",
            10_000,
            "node1 DOWN (fall 2, inter 1s)",
          );
          const downAfterMs = performance.now() - killedAt;
          const acknowledgedWhileUp = talkers.reduce((sum, talker) => sum + talker.acknowledged.size, 0);
          assert.equal(down.find((server) => server.name === "node2")?.status, "UP");
          await waitUntil(() => talkers.every((talker) => talker.done), 60_000, "every message acknowledged");
          t.diagnostic(
            `${acknowledgedBefore} messages acknowledged before the kill, ${acknowledgedWhileUp - acknowledgedBefore} ` +
              `between the kill and HAProxy's DOWN (${Math.round(downAfterMs)} ms later), ` +
              `${6 * perTalker - acknowledgedWhileUp} after; connections per talker: ` +
              `${talkers.map((talker) => talker.stats.connections).join(", ")}`,
          );
          assert.deepEqual(await waitForCounts(nodes, (counts) => counts[1] === 6, "all six on node2"), [0, 6]);
          assert.ok(
            talkers.filter((talker) => talker.stats.connections >= 2).length >= 3,
            "node1's three talkers reconnected",
          );

          // Nothing doubled: one seq per id, and no seq shared; Redis kept the room (no new epoch).
          const acknowledged = assertEachAcknowledgedOnce(talkers, 6 * perTalker);
          // Nothing lost: every talker ends up holding every acknowledged message, at its seq, without a gap.
          const last = Math.max(...acknowledged.values());
          await waitUntil(
            () => talkers.every((talker) => talker.contiguousSeq >= last),
            20_000,
            "every talker to hold every message",
          );
          for (const talker of talkers) {
            for (const [id, seq] of acknowledged) assert.equal(talker.transcript.get(seq), id, `${talker.name}: ${id}`);
            const ids = [...talker.transcript.values()].filter((id) => id.startsWith("kill-"));
            assert.equal(ids.length, 6 * perTalker, `${talker.name}: each message once in the room`);
            for (let index = 1; index < talker.firstSightings.length; index++) {
              assert.ok(
                talker.firstSightings[index - 1]! < talker.firstSightings[index]!,
                `${talker.name} saw the seqs in order across the reconnection`,
              );
            }
          }
        } finally {
          for (const talker of talkers) talker.stop();
        }
      },
    );
  },
);

describe(
  "the client's own address through HAProxy (send-proxy, --trust-proxy 127.0.0.1)",
  {
    skip: skipUnless("haproxy"),
    timeout: 60_000,
  },
  () => {
    let node: SpawnedServer;
    let haproxy: TestHaproxy | undefined;
    const clients: RawClient[] = [];
    before(async () => {
      [node] = await startHealthyServers(1, [
        "--trust-proxy",
        "127.0.0.1",
        "--verbose",
        "--max-connections-per-ip",
        "2",
      ]);
      // node2's port has nothing behind it: every connection goes to the one node, whose limit is per node.
      haproxy = await TestHaproxy.start({ nodePorts: [node!.port, await freePort()], expectUp: ["node1"] });
      await haproxy.waitForServers(
        (servers) => servers.find((server) => server.name === "node2")?.status === "DOWN",
        10_000,
        "node2 DOWN",
      );
    });
    after(async () => {
      for (const client of clients) client.destroy();
      await haproxy?.stop();
      await node?.stop("SIGKILL");
    });

    test(
      "PROXY protocol v1 (proxy-protocol.txt §2.1): with --max-connections-per-ip 2, clients from 127.0.0.2 and " +
        "127.0.0.3 each get two connections and a third is refused 503; the node logs their own addresses",
      async () => {
        const mark = node.output().length;
        const open = async (localAddress: string, index: number) => {
          const client = await RawClient.open(haproxy!.port, {
            path: `/?${nameQuery(`from ${localAddress} #${index}`)}`,
            localAddress,
            respond: true,
          });
          clients.push(client);
          return client;
        };
        for (const address of ["127.0.0.2", "127.0.0.3"]) {
          for (const index of [1, 2]) {
            const client = await open(address, index);
            assert.equal(client.handshake?.status, 101, `${address} #${index}: ${client.handshake?.body}`);
            assert.match((await client.next("text")).text, /^\{"type":"welcome"/);
          }
          const third = await open(address, 3);
          assert.equal(third.handshake?.status, 503, `${address} #3 is over the limit`);
          assert.match(third.handshake?.body ?? "", /Too many connections from your address/);
        }
        await waitForOpenedFrom(node, "127.0.0.2", 2, mark);
        await waitForOpenedFrom(node, "127.0.0.3", 2, mark);
        assert.equal(openedFrom(node, "127.0.0.1", mark), 0, "no connection counted as HAProxy's own address");
        assert.equal(await metric(node.httpUrl, "chat_connections"), 4);
      },
    );
  },
);

// ── The page in Chromium through HAProxy ──────────────────────────────────

describe(
  "the page in Chromium through HAProxy, two nodes on one Redis",
  {
    skip: skipUnless("haproxy", "redis", "chromium"),
    timeout: 180_000,
  },
  () => {
    let browser: Browser | undefined;
    let redis: TestRedis;
    let nodes: SpawnedServer[] = [];
    let haproxy: TestHaproxy | undefined;
    before(async () => {
      browser = await launchChromium();
      redis = await TestRedis.start();
      nodes = await startHealthyServers(2, nodeBehindHaproxy(redis));
      haproxy = await TestHaproxy.start({ nodePorts: [nodes[0]!.port, nodes[1]!.port] });
    });
    after(async () => {
      await browser?.close();
      await haproxy?.stop();
      await Promise.all(nodes.map((node) => node.stop("SIGKILL")));
      await redis?.destroy();
    });

    test(
      "two pages on different nodes chat; kill -9 of one page's node: it reconnects through HAProxy to the other, " +
        "and the message typed during the outage shows exactly once on both pages",
      { timeout: 120_000 },
      async (t) => {
        t.after(cleanUp);
        const url = `${haproxy!.httpUrl}/`;
        // Open pages until two are on different nodes: leastconn sends the second page's socket to the other
        // node, but the page's own HTTP requests go through the same balancer, so allow a few tries.
        const opened: Array<{ page: ChatPage; node: number }> = [];
        for (let attempt = 0; attempt < 4 && new Set(opened.map(({ node }) => node)).size < 2; attempt++) {
          const before = await connectionCounts(nodes);
          const page = await testPage(browser!, url);
          const after = await waitForCounts(
            nodes,
            (counts) => counts[0]! + counts[1]! === before[0]! + before[1]! + 1,
            "the page's socket",
          );
          opened.push({ page, node: after[0]! > before[0]! ? 0 : 1 });
        }
        const a = opened[0]!;
        const b = opened.find(({ node }) => node !== a.node);
        assert.ok(b !== undefined, `two pages on different nodes: ${JSON.stringify(opened.map(({ node }) => node))}`);

        const fromA = "你好 from A, through HAProxy";
        const fromB = "hello from B, on the other node";
        await typeMessage(a.page.page, fromA);
        await typeMessage(b.page.page, fromB);
        for (const { page } of [a, b]) await waitForConfirmed(page.page, [fromA, fromB]);

        // B types the moment its page shows "reconnecting", in the same task as the change (a
        // MutationObserver's callback runs before any timer, so before any reconnection can happen):
        // the message is certainly typed during the outage, whatever the reconnection delay.
        const duringOutage = "typed while B's node was down";
        await b.page.page.evaluate((text) => {
          const status = document.getElementById("status")!;
          const input = document.getElementById("input") as HTMLInputElement;
          const composer = document.getElementById("composer") as HTMLFormElement;
          const observer = new MutationObserver(() => {
            if (status.dataset.state !== "reconnecting") return;
            observer.disconnect();
            input.value = text;
            composer.requestSubmit();
            (window as unknown as { typedDuringOutage: object }).typedDuringOutage = {
              state: window.chatClient?.state,
              outboxLength: window.chatClient?.outboxLength,
              inputCleared: input.value === "",
            };
          });
          observer.observe(status, { attributes: true, attributeFilter: ["data-state"] });
        }, duringOutage);

        const survivor = a.node;
        assert.equal(await nodes[b.node]!.stop("SIGKILL"), null, "killed, not exited");
        await b.page.page.waitForFunction(() => "typedDuringOutage" in window, undefined, { timeout: 15_000 });
        const typed = await b.page.page.evaluate(
          () => (window as unknown as { typedDuringOutage: Record<string, unknown> }).typedDuringOutage,
        );
        assert.deepEqual(typed, { state: "reconnecting", outboxLength: 1, inputCleared: true }, "queued while down");

        await waitForState(b.page.page, "connected", 30_000);
        for (const { page } of [a, b]) await waitForConfirmed(page.page, [duringOutage], 30_000);
        await b.page.page.waitForFunction(() => window.chatClient?.outboxLength === 0, undefined, { timeout: 10_000 });
        const counts = await waitForCounts(
          nodes,
          (counts) => counts[survivor]! === opened.length,
          "every page on the surviving node",
        );
        assert.equal(counts[b.node], 0);

        const onA = await readMessages(a.page.page);
        const onB = await readMessages(b.page.page);
        for (const [label, messages] of [
          ["A", onA],
          ["B", onB],
        ] as const) {
          const copies = messages.filter((message) => message.text === duringOutage);
          assert.equal(copies.length, 1, `${label} shows it exactly once: ${JSON.stringify(messages)}`);
        }
        assert.deepEqual(assertSettled(onA, "A"), assertSettled(onB, "B"), "the same messages in the same order");
        assert.deepEqual(
          onA.map((message) => message.text),
          [fromA, fromB, duringOutage],
        );
        assert.equal(onB.find((message) => message.text === duringOutage)?.mine, true, "B's own message is 我 on B");
        assert.equal(onA.find((message) => message.text === duringOutage)?.mine, false);
        for (const { page } of opened) assert.deepEqual(page.errors, [], "no uncaught exception in a page");
      },
    );
  },
);

// ── --trust-proxy without a load balancer ─────────────────────────────────

/** A WebSocket opening handshake (RFC 6455 §4.1) for a raw request, after which a client may send frames. */
function upgradeRequest(port: number, path: string, headers: Record<string, string> = {}): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return lines.join("\r\n") + "\r\n\r\n";
}

describe("--trust-proxy 127.0.0.1, on raw sockets (--max-connections-per-ip 2)", { timeout: 60_000 }, () => {
  let server: SpawnedServer;
  const clients: RawClient[] = [];
  before(async () => {
    server = await spawnServer(["--trust-proxy", "127.0.0.1", "--verbose", "--max-connections-per-ip", "2"]);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });
  after(async () => {
    await server?.stop("SIGKILL");
  });

  /** Opens a chat socket whose request starts with `proxyLine` (may be ""), from `localAddress`. */
  const open = async (
    proxyLine: string,
    options: { localAddress?: string; headers?: Record<string, string> } = {},
  ): Promise<RawClient> => {
    const client = await RawClient.open(server.port, {
      request: proxyLine + upgradeRequest(server.port, "/", options.headers),
      localAddress: options.localAddress,
      respond: true,
    });
    clients.push(client);
    return client;
  };
  const status = (client: RawClient) => client.handshake?.status;

  test(
    "PROXY protocol v1 (proxy-protocol.txt §2.1) from a trusted peer: TCP4's source address is the client's, in " +
      "the log and for the per-address limit",
    async () => {
      const mark = server.output().length;
      const line = (address: string) => `PROXY TCP4 ${address} 127.0.0.1 40000 ${server.port}\r\n`;
      assert.equal(status(await open(line("203.0.113.7"))), 101);
      assert.equal(status(await open(line("203.0.113.7"))), 101);
      await waitForOpenedFrom(server, "203.0.113.7", 2, mark);
      const third = await open(line("203.0.113.7"));
      assert.equal(status(third), 503, "a third from 203.0.113.7 is over --max-connections-per-ip 2");
      assert.match(third.handshake?.body ?? "", /Too many connections from your address/);
      // The peer, 127.0.0.1, has three connections open: it is not what is counted.
      assert.equal(status(await open(line("203.0.113.8"))), 101, "another client through the same proxy");
      await waitForOpenedFrom(server, "203.0.113.8", 1, mark);
      assert.equal(openedFrom(server, "127.0.0.1", mark), 0);
    },
  );

  test("PROXY protocol v1 (§2.1) TCP6: the IPv6 source address is the client's", async () => {
    const mark = server.output().length;
    const client = await open(`PROXY TCP6 2001:db8::7 ::1 40000 ${server.port}\r\n`);
    assert.equal(status(client), 101);
    await waitForOpenedFrom(server, "2001:db8::7", 1, mark);
  });

  test("PROXY protocol v1 (§2.1) UNKNOWN: accepted, and the connection's own address is used", async () => {
    const mark = server.output().length;
    assert.equal(status(await open("PROXY UNKNOWN\r\n")), 101);
    await waitForOpenedFrom(server, "127.0.0.1", 1, mark);
  });

  test("PROXY protocol v1 (§2.1) before a plain HTTP request, as HAProxy's health check sends it: GET /healthz 200", async () => {
    const client = await RawClient.open(server.port, {
      request: `PROXY TCP4 127.0.0.1 127.0.0.1 40001 ${server.port}\r\nGET /healthz HTTP/1.0\r\n\r\n`,
    });
    clients.push(client);
    assert.equal(status(client), 200);
    await client.waitForClose();
    assert.equal(client.handshake?.body.trim(), "ok");
  });

  test("PROXY protocol v1 (§2.1) from a peer not in --trust-proxy (127.0.0.2): refused with 400", async () => {
    const mark = server.output().length;
    const client = await open(`PROXY TCP4 203.0.113.66 127.0.0.1 40000 ${server.port}\r\n`, {
      localAddress: "127.0.0.2",
    });
    assert.equal(status(client), 400);
    await client.waitForClose();
    assert.equal(openedFrom(server, "203.0.113.66", mark), 0);
  });

  test(
    "X-Forwarded-For (the de facto form of RFC 7239 §5.2 for=) from a trusted peer: its last address is the " +
      "client's, in the log and for the per-address limit",
    async () => {
      const mark = server.output().length;
      const forwarded = (value: string) => ({ headers: { "X-Forwarded-For": value } });
      assert.equal(status(await open("", forwarded("198.51.100.1, 203.0.113.9"))), 101);
      assert.equal(status(await open("", forwarded("203.0.113.9"))), 101);
      await waitForOpenedFrom(server, "203.0.113.9", 2, mark);
      assert.equal(openedFrom(server, "198.51.100.1", mark), 0, "the last entry (the proxy's own) counts");
      assert.equal(status(await open("", forwarded("198.51.100.2, 203.0.113.9"))), 503);
    },
  );

  test("X-Forwarded-For from a peer not in --trust-proxy (127.0.0.3) is ignored: the peer is counted", async () => {
    const mark = server.output().length;
    const from = (value: string) => ({ localAddress: "127.0.0.3", headers: { "X-Forwarded-For": value } });
    assert.equal(status(await open("", from("203.0.113.20"))), 101);
    assert.equal(status(await open("", from("203.0.113.21"))), 101);
    await waitForOpenedFrom(server, "127.0.0.3", 2, mark);
    assert.equal(status(await open("", from("203.0.113.22"))), 503, "a new X-Forwarded-For does not get around it");
    for (const spoofed of ["203.0.113.20", "203.0.113.21", "203.0.113.22"])
      assert.equal(openedFrom(server, spoofed, mark), 0);
  });

  test("a PROXY line and X-Forwarded-For from a trusted peer: the PROXY line names the client", async () => {
    const mark = server.output().length;
    const client = await open(`PROXY TCP4 203.0.113.30 127.0.0.1 40000 ${server.port}\r\n`, {
      headers: { "X-Forwarded-For": "203.0.113.31" },
    });
    assert.equal(status(client), 101);
    await waitForOpenedFrom(server, "203.0.113.30", 1, mark);
    assert.equal(openedFrom(server, "203.0.113.31", mark), 0);
  });
});

// ── /metrics ───────────────────────────────────────────────────────────────

describe("GET /metrics (Prometheus text format 0.0.4)", { timeout: 120_000 }, () => {
  test("the format: Content-Type, one HELP and one TYPE before each series, the names and types; no Redis series without --redis", async () => {
    const server = await spawnServer([]);
    try {
      const { body, exposition } = await scrape(server.httpUrl);
      for (const [name, type] of Object.entries(everyServer)) {
        assert.equal(exposition.type.get(name), type, `# TYPE ${name} ${type}`);
        assert.ok((exposition.help.get(name) ?? "").length > 0, `# HELP ${name} says what it is`);
        assert.equal(valueOf(exposition, name), 0, `${name} starts at 0`);
      }
      for (const name of Object.keys(redisOnly)) assert.equal(valueOf(exposition, name), undefined, name);
      for (const name of Object.keys(counters)) assert.match(name, /_total$/, "a counter's name ends in _total");
      for (const sample of exposition.samples) {
        assert.ok(exposition.type.has(sample.name), `${sample.name} has a TYPE`);
        assert.ok(exposition.help.has(sample.name), `${sample.name} has a HELP`);
      }
      assert.doesNotMatch(body, /\r/, "lines end with \\n alone");
    } finally {
      await server.stop("SIGKILL");
    }
  });

  test(
    "the counters move: three messages said to two members are 3 received and 6 deliveries; a resume's replay of 3 " +
      "is 3 replayed; chat_connections follows; no text, name, session or sid appears",
    async () => {
      const server = await spawnServer(["--message-rate", "1000", "--message-burst", "1000"]);
      const secret = `metrics-secret-${randomBytes(12).toString("base64url")}`;
      const name = "metrics-name-小明";
      const clients: ChatClient[] = [];
      try {
        const alice = await ChatClient.join(server.port, `session=${secret}&${nameQuery(name)}`, { respond: true });
        const bob = await ChatClient.join(server.port, nameQuery("metrics-bob"), { respond: true });
        clients.push(alice, bob);
        await Promise.all([alice.sync(), bob.sync()]);
        assert.equal(await metric(server.httpUrl, "chat_connections"), 2);
        const before = (await scrape(server.httpUrl)).exposition;
        const texts = ["metrics text one", "metrics text two", "metrics text three: 秘密"];
        for (const [index, text] of texts.entries()) await alice.sayAndAck(`metrics-${index}`, text);
        for (const text of texts) await bob.waitForMessage(text);
        const said = await scrape(server.httpUrl);
        const delta = (name: string) => valueOf(said.exposition, name)! - valueOf(before, name)!;
        assert.equal(delta("chat_messages_received_total"), 3);
        assert.equal(delta("chat_deliveries_total"), 6, "each message written to both members");
        assert.equal(delta("chat_replayed_messages_total"), 0);

        const lastSeq = alice.messages().at(-1)!.seq;
        const carol = await ChatClient.join(
          server.port,
          `since=${lastSeq - 3}&epoch=${alice.welcome.epoch}&${nameQuery("metrics-carol")}`,
          { respond: true },
        );
        clients.push(carol);
        assert.equal((await carol.replay()).length, 3);
        const resumed = (await scrape(server.httpUrl)).exposition;
        assert.equal(
          valueOf(resumed, "chat_replayed_messages_total")! - valueOf(said.exposition, "chat_replayed_messages_total")!,
          3,
        );
        assert.equal(valueOf(resumed, "chat_connections"), 3);
        await carol.leave();
        await waitForMetric(server.httpUrl, "chat_connections", (value) => value === 2);

        const { body } = await scrape(server.httpUrl);
        for (const secretThing of [...texts, "metrics text", name, "metrics-bob", secret, alice.welcome.you]) {
          assert.ok(!body.includes(secretThing), `${JSON.stringify(secretThing)} is not in /metrics`);
        }
      } finally {
        for (const client of clients) client.destroy();
        await server.stop("SIGKILL");
      }
    },
  );

  test("a slow consumer closed with 1008 (RFC 6455 §7.4.1) counts in chat_slow_consumer_closes_total", async () => {
    const server = await spawnServer([
      "--max-buffered",
      "65536",
      "--message-rate",
      "100000",
      "--message-burst",
      "100000",
      "--keepalive-interval",
      "0",
    ]);
    const clients: RawClient[] = [];
    try {
      const stalled = await RawClient.open(server.port, { path: "/?name=stalled", respond: true });
      clients.push(stalled);
      await stalled.next("text");
      stalled.socket.pause();
      const sender = await RawClient.open(server.port, { path: "/?name=sender" });
      clients.push(sender);
      await sender.next("text");
      let received = 0;
      sender.onEvent = (event) => {
        if (textStartsWith(event, '{"type":"message"')) received++;
      };
      const text = "😀".repeat(2000); // 8,000 bytes of UTF-8, the longest message allowed
      const closed = () => /closing a slow consumer/.test(server.output());
      // At most 48 MB for the stalled client, 64 messages ahead of the sender's own copies.
      let sent = 0;
      while (!closed() && sent < 6000) {
        for (; sent < 6000 && sent - received < 64; sent++)
          sender.sendText(JSON.stringify({ type: "say", id: `slow-${sent}`, text }));
        await sender.waitFor(() => closed() || sent - received < 64 || received >= 6000, 10_000, "the echoes");
      }
      assert.ok(closed(), "the stalled client was closed as a slow consumer");
      assert.equal(await metric(server.httpUrl, "chat_slow_consumer_closes_total"), 1);
    } finally {
      for (const client of clients) client.destroy();
      await server.stop("SIGKILL");
    }
  });

  test(
    "with --redis: chat_redis_up 1 and the last PING's round trip; Redis killed: 0; Redis back without its data: " +
      "chat_epoch_changes_total +1 and chat_redis_up 1",
    { skip: skipUnless("redis"), timeout: 60_000 },
    async () => {
      const redis = await TestRedis.start();
      let server: SpawnedServer | undefined;
      let client: ChatClient | undefined;
      try {
        [server] = await startHealthyServers(1, ["--redis", redis.url, "--redis-timeout", "500"]);
        const { exposition } = await scrape(server!.httpUrl);
        for (const [name, type] of Object.entries(redisOnly)) {
          assert.equal(exposition.type.get(name), type, `# TYPE ${name} ${type}`);
          assert.ok(exposition.help.has(name), `# HELP ${name}`);
        }
        assert.equal(valueOf(exposition, "chat_redis_up"), 1);
        const roundTrip = valueOf(exposition, "chat_redis_round_trip_seconds");
        assert.ok(
          roundTrip !== undefined && Number.isFinite(roundTrip) && roundTrip >= 0,
          `a round trip: ${roundTrip}`,
        );
        const epochChanges = valueOf(exposition, "chat_epoch_changes_total")!;

        client = await ChatClient.join(server!.port, "", { respond: true });
        await client.sayAndAck("before-redis-restart", "kept only in Redis's memory");
        await redis.stop("SIGKILL");
        await waitForMetric(server!.httpUrl, "chat_redis_up", (value) => value === 0);
        await redis.restart();
        assert.equal(await client.closeCode(15_000), 1012, "the room's history was lost: everyone reconnects");
        await waitForMetric(server!.httpUrl, "chat_redis_up", (value) => value === 1);
        assert.equal(await metric(server!.httpUrl, "chat_epoch_changes_total"), epochChanges + 1);
      } finally {
        client?.destroy();
        await server?.stop("SIGKILL");
        await redis.destroy();
      }
    },
  );
});

// ── TLS: https:// and wss:// ──────────────────────────────────────────────

/** server.ts with `args` (a certificate among them), once it says it listens on https://. */
async function spawnHttpsServer(args: string[]): Promise<SpawnedServer> {
  const server = await spawnServer(args);
  assert.match(server.output(), new RegExp(`listening on https://127\\.0\\.0\\.1:${server.port}/`), server.output());
  return server;
}

interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET over TLS with node:https, trusting `ca` only (no `ca`: the system's authorities). */
function httpsGet(url: string, ca?: Buffer): Promise<HttpsAnswer> {
  return within(
    new Promise<HttpsAnswer>((resolve, reject) => {
      const request = httpsRequest(url, { ca, agent: false }, (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end();
    }),
    10_000,
    `GET ${url}`,
  );
}

/** Two members on Debian's python3-websockets over wss://, with an ssl context that trusts only `cafile`. */
const pythonTlsChat = `
import asyncio, json, ssl, sys
import websockets

async def next_of_type(ws, kind):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message

async def main(url, cafile, text):
    context = ssl.create_default_context(cafile=cafile)
    async with websockets.connect(url + "?name=tls-a", ssl=context) as a, websockets.connect(url + "?name=tls-b", ssl=context) as b:
        welcome_a = await next_of_type(a, "welcome")
        welcome_b = await next_of_type(b, "welcome")
        await a.send(json.dumps({"type": "say", "id": "tls-1", "text": text}))
        echoed = await next_of_type(a, "message")
        received = await next_of_type(b, "message")
        tls = a.transport.get_extra_info("ssl_object")
        print(json.dumps({
            "tlsVersion": tls.version(),
            "peerCertificateSubject": dict(pair[0] for pair in tls.getpeercert()["subject"]),
            "names": [welcome_a["name"], welcome_b["name"]],
            "echoed": {"id": echoed["id"], "text": echoed["text"], "from": echoed["from"]},
            "received": {"id": received["id"], "text": received["text"], "from": received["from"]},
        }))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
`;

interface PythonTlsReport {
  tlsVersion: string;
  peerCertificateSubject: Record<string, string>;
  names: [string, string];
  echoed: { id: string; text: string; from: string };
  received: { id: string; text: string; from: string };
}

describe(
  "--tls-cert/--tls-key: https:// and wss:// (RFC 6455 §3, §4.1)",
  {
    skip: skipUnless("openssl"),
    timeout: 90_000,
  },
  () => {
    let directory: string;
    let certificatePath: string;
    let certificate: Buffer;
    let server: SpawnedServer | undefined;
    /** Short, so that the slowloris test is quick; the other tests' handshakes finish well within it. */
    const handshakeTimeoutMs = 2000;
    before(async () => {
      directory = mkdtempSync(join(tmpdir(), "chat-tls-"));
      certificatePath = join(directory, "cert.pem");
      const keyPath = join(directory, "key.pem");
      const made = spawnSync(
        opensslPath,
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          keyPath,
          "-out",
          certificatePath,
        ],
        { encoding: "utf8", timeout: 30_000 },
      );
      assert.equal(made.status, 0, `openssl req: ${made.stderr}`);
      certificate = readFileSync(certificatePath);
      server = await spawnHttpsServer([
        "--tls-cert",
        certificatePath,
        "--tls-key",
        keyPath,
        "--handshake-timeout",
        String(handshakeTimeoutMs),
      ]);
    });
    after(async () => {
      await server?.stop();
      rmSync(directory, { recursive: true, force: true });
    });

    test("GET https://…/ serves the page to a client that trusts the certificate; one that does not refuses it", async () => {
      const page = await httpsGet(`https://127.0.0.1:${server!.port}/`, certificate);
      assert.equal(page.status, 200);
      assert.match(String(page.headers["content-type"]), /^text\/html/);
      assert.match(page.body, /<script src="client\.js"><\/script>/);
      assert.equal((await httpsGet(`https://127.0.0.1:${server!.port}/healthz`, certificate)).body.trim(), "ok");
      await assert.rejects(httpsGet(`https://127.0.0.1:${server!.port}/`), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" });
    });

    test("slowloris before TLS: a connection that never says hello is dropped after --handshake-timeout", async () => {
      const connectedAt = Date.now();
      const socket = connect({ host: "127.0.0.1", port: server!.port });
      socket.on("error", () => undefined); // a reset counts as dropped too
      await within(
        new Promise((resolve) => socket.once("close", resolve)), // not events.once, which rejects on a reset
        handshakeTimeoutMs + 10_000,
        "the server to drop a silent connection",
      );
      const closedAfter = Date.now() - connectedAt;
      assert.ok(
        closedAfter >= handshakeTimeoutMs - 20,
        `dropped after ${closedAfter} ms, before ${handshakeTimeoutMs}`,
      );
    });

    test("wss://: two Python websockets clients (Debian's python3-websockets) chat over TLS", async () => {
      requirePythonWebsockets();
      const text = "over TLS: 你好, wss";
      const report = await runJsonClient<PythonTlsReport>("the Python wss client", binaries.python, [
        "-c",
        pythonTlsChat,
        `wss://127.0.0.1:${server!.port}/`,
        certificatePath,
        text,
      ]);
      assert.match(report.tlsVersion, /^TLSv1\.[23]$/);
      assert.equal(report.peerCertificateSubject.commonName, "127.0.0.1");
      assert.deepEqual(report.names, ["tls-a", "tls-b"]);
      assert.deepEqual(report.echoed, { id: "tls-1", text, from: "tls-a" }, "the sender's acknowledgement");
      assert.deepEqual(report.received, { id: "tls-1", text, from: "tls-a" }, "the other member's copy");
    });

    test("--tls-cert with --trust-proxy is refused at start-up with the reason: TLS ends at the proxy", async () => {
      const keyPath = join(directory, "key.pem");
      const finished = await runServerToExit([
        "--tls-cert",
        certificatePath,
        "--tls-key",
        keyPath,
        "--trust-proxy",
        "127.0.0.1",
      ]);
      assert.equal(finished.code, 2);
      assert.match(finished.stderr, /--trust-proxy cannot be used with --tls-cert/);
    });
  },
);

// ── The kernel's accept queue ───────────────────────────────────────────────

describe(
  "a burst of connections: the kernel's accept queue (RFC 9293 §3.5, before RFC 6455 §4.1)",
  { timeout: 60_000 },
  () => {
    test(
      "1,500 clients connecting while the server is stopped all complete TCP's handshake and are answered once it " +
        "runs (Node's default queue, 511, would drop the SYNs of all but 512)",
      async () => {
        // Linux queues at most net.core.somaxconn connections for any listener, whatever it asks for.
        const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
        const count = Math.min(1500, somaxconn);
        const server = await spawnServer([]);
        const sockets: ReturnType<typeof connect>[] = [];
        try {
          // A stopped process accepts nothing: every connection that completes now waits in the queue.
          process.kill(server.pid!, "SIGSTOP");
          let connected = 0;
          let answered = 0;
          for (let index = 0; index < count; index++) {
            const socket = connect({ host: "127.0.0.1", port: server.port });
            socket.on("error", () => undefined); // counted by what did not arrive
            socket.once("connect", () => {
              connected++;
              socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nConnection: close\r\n\r\n`);
            });
            let reply = "";
            socket.on("data", (chunk: Buffer) => {
              reply += chunk.toString("latin1");
              if (reply.startsWith("HTTP/1.1 200 ") && reply.endsWith("ok\n")) answered++;
            });
            sockets.push(socket);
          }
          // Without the queue a SYN is dropped and retried 1, 3, 7 s later, into a queue that is still full.
          await waitUntil(
            () => connected === count,
            15_000,
            () => `${count} connections to complete: ${connected} did`,
          );
          process.kill(server.pid!, "SIGCONT");
          await waitUntil(
            () => answered === count,
            30_000,
            () => `${count} answers to GET /healthz: ${answered} came`,
          );
        } finally {
          process.kill(server.pid!, "SIGCONT");
          for (const socket of sockets) socket.destroy();
          await server.stop();
        }
      },
    );
  },
);
