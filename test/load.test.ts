// Load and faults on the chat room: many reconnecting clients
// (ReconnectingChatClient in test/support/chat-client.ts), a server killed
// with SIGKILL in the middle, and a proxy that cuts connections at random
// bytes. Whatever happens, at the end every client holds the same transcript
// (seq → id), saw the seqs first in order 1, 2, 3…, with every message said
// exactly once and nothing acknowledged lost (README: wire contract, resume
// and epoch, history). Figures are printed, never asserted. server.ts runs in
// this process, except the servers killed with SIGKILL.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChaosProxy } from "../scripts/lib/chaos-proxy.ts";
import { LoadRun } from "../scripts/lib/load.ts";
import { waitUntil as waitFor } from "./support/wait.ts";
import { serveInProcess, type InProcessServer } from "./support/in-process.ts";
import { freePort, spawnServer, type SpawnedServer } from "./support/spawn.ts";

const roomLimits = {
  messageRate: 1_000_000,
  messageBurst: 1_000_000,
  maxConnectionsPerIp: 10_000,
  historySize: 100_000,
};
const roomLimitArgs = [
  "--message-rate",
  "1000000",
  "--message-burst",
  "1000000",
  "--max-connections-per-ip",
  "10000",
  "--history-size",
  "100000",
];

function report(label: string, run: LoadRun, extra = ""): void {
  const summary = run.summary();
  const errors = Object.keys(summary.errors).length > 0 ? `, errors ${JSON.stringify(summary.errors)}` : "";
  console.log(
    `${label}: ${summary.clients} clients, ${summary.messages} messages, ${summary.deliveries} deliveries in ` +
      `${summary.seconds.toFixed(1)} s = ${summary.deliveriesPerSecond.toFixed(0)}/s; ` +
      `latency p50 ${summary.p50.toFixed(1)} ms, p99 ${summary.p99.toFixed(1)} ms; connections ` +
      `${summary.connections} (failed attempts ${summary.failedConnections}), ` +
      `resends ${summary.resends}, repeated deliveries ${summary.repeatedDeliveries}, replayed ` +
      `${summary.replayedDeliveries}${errors}${extra}`,
  );
}

/** The history file's messages (JSON lines), in file order. */
function historyIds(path: string): Array<{ seq: number; id: string }> {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { type?: string; seq?: number; id?: string })
    .filter((record) => typeof record.seq === "number" && typeof record.id === "string")
    .map((record) => ({ seq: record.seq!, id: record.id! }));
}

describe("load on the chat room", () => {
  test(
    "100 clients x 10 messages: " + "every client receives every message exactly once, all in the same order",
    async () => {
      const server = await serveInProcess(roomLimits);
      const run = new LoadRun({
        port: server.port,
        clients: 100,
        messagesPerClient: 10,
        textLength: 100,
        window: 2,
        seed: 1,
      });
      try {
        await run.start();
        await run.waitUntilComplete(120_000);
        report("load", run);
        // verify() checks each client's first sightings came in seq order; exactly once on the wire,
        // they are every arrival: each client got 1, 2, …, 1000 in that order.
        assert.deepEqual(run.verify({ exactlyOnceOnTheWire: true }), []);
        assert.equal(run.deliveries, 100 * 1000, "one first sight per client per message");
        assert.equal(run.summary().connections, 100, "nobody had to reconnect");
      } finally {
        run.stop();
        await server.stop();
      }
    },
  );
});

describe("faults under load", () => {
  test(
    "50 clients x 30 messages, SIGKILL mid-load, twice, restarted on the same port with the same --history: " +
      "clients resume (since, epoch), resend unacknowledged messages with the same id; nothing acknowledged is " +
      "lost, nothing duplicated",
    async () => {
      const directory = mkdtempSync(join(tmpdir(), "load-kill-"));
      const history = join(directory, "history.jsonl");
      const port = await freePort();
      const args = ["--port", String(port), "--history", history, ...roomLimitArgs];
      let server: SpawnedServer | InProcessServer = await spawnServer(args);
      const run = new LoadRun({
        port,
        clients: 50,
        messagesPerClient: 30,
        textLength: 60,
        window: 2,
        seed: 2,
        maxDelayMs: 500,
      });
      const acknowledgedBeforeKills: Array<Map<string, number>> = [];
      try {
        await run.start();
        for (const [index, fraction] of [0.25, 0.6].entries()) {
          // Kill in the middle of the traffic: every client back in the room and talking.
          await waitFor(
            () => run.acknowledged >= run.totalMessages * fraction && run.clients.every((client) => client.connected),
            60_000,
            `${Math.round(fraction * 100)}% of the messages`,
          );
          const killed = server as SpawnedServer;
          killed.child.kill("SIGKILL");
          await killed.exited;
          // What every client holds as acknowledged at the moment of the kill must survive it.
          acknowledgedBeforeKills.push(new Map(run.clients.flatMap((client) => [...client.acknowledged])));
          console.log(`SIGKILL: ${run.progress()}`);
          // Restarted on the same port with the same file: a process while it is to be killed again,
          // then in this process.
          server =
            index === 0 ? await spawnServer(args) : await serveInProcess({ ...roomLimits, port, historyFile: history });
          assert.equal(server.port, port);
        }
        await run.waitUntilComplete(120_000);
        report("SIGKILL x2", run);
        assert.deepEqual(run.verify(), []);
        const final = new Map(run.clients[0]!.orderedIds().map((id, index) => [id!, index + 1]));
        for (const acknowledged of acknowledgedBeforeKills) {
          for (const [id, seq] of acknowledged)
            assert.equal(final.get(id), seq, `${id}, acknowledged as seq ${seq} before a kill`);
        }
        for (const client of run.clients) {
          assert.equal(client.stats.epochChanges, 0, "the epoch survives a restart with the same history file");
          assert.equal(client.stats.resumesRefused, 0, "every resume was honoured");
        }
        // The second kill may come while clients are still coming back from the first: at least one reconnection each.
        assert.ok(run.summary().connections >= 2 * run.clients.length, "every client reconnected");
        // The file holds each message once, with contiguous seqs.
        const stored = historyIds(history);
        assert.equal(stored.length, run.totalMessages);
        assert.equal(new Set(stored.map((record) => record.id)).size, run.totalMessages);
        assert.deepEqual(
          stored.map((record) => record.seq),
          stored.map((_, index) => index + 1),
        );
      } finally {
        run.stop();
        await ("child" in server ? server.stop("SIGKILL") : server.stop());
        rmSync(directory, { recursive: true, force: true });
      }
    },
  );

  test(
    "50 clients x 12 messages through a proxy that cuts connections at random bytes (inside frames and " +
      "handshakes, seeded): clients reconnect and resend; the final transcripts are identical and complete",
    async () => {
      const server = await serveInProcess(roomLimits);
      const proxy = new ChaosProxy({
        targetPort: server.port,
        seed: 6455,
        cutProbability: 0.6,
        maxBytesBeforeCut: 30_000,
      });
      const port = await proxy.listen();
      const run = new LoadRun({
        port,
        clients: 50,
        messagesPerClient: 12,
        textLength: 60,
        window: 3,
        seed: 3,
        maxDelayMs: 300,
      });
      try {
        await run.start();
        // Cut while most of the messages flow, then let the room settle.
        await waitFor(() => run.acknowledged >= run.totalMessages * 0.8, 90_000, "80% of the messages");
        proxy.cutting = false;
        const cutsWhileLoaded = proxy.cuts;
        await run.waitUntilComplete(120_000);
        report(
          "chaos proxy",
          run,
          `; proxy: ${proxy.cuts} cuts (${proxy.cutsInsideData} after some bytes) in ${proxy.connections} connections`,
        );
        assert.ok(cutsWhileLoaded >= 20, `the proxy cut ${cutsWhileLoaded} connections`);
        assert.deepEqual(run.verify(), []);
        assert.ok(run.summary().resends > 0, "unacknowledged messages were sent again");
      } finally {
        run.stop();
        await proxy.close();
        await server.stop();
      }
    },
  );
});
