// The benchmark runs, on a tiny load, and its correctness checks hold: every
// echo reply came back with the same type and bytes (in the first echo
// scenario from Bun.serve and from server.ts run by Bun too, where the test
// runtimes' Bun is installed; without it the run says SKIPPED for those two
// sides and still succeeds), every fan-out message
// reached every client exactly once and in order (in the busy classroom
// too, beside its node:net floor), every idle connection opened (the floor's
// too), every client of a reconnect storm came back with nobody refused;
// and the chat room at scale (server.ts alone): every client of a
// join storm and of a first visit welcomed, a first visit replayed one page,
// the history file read and compacted; and, where redis-server is installed,
// the fan-out on one server.ts and on two sharing one Redis: every message to
// every client once, in seq order, in both. No timing is asserted: the figures
// of a tiny run mean nothing, and neither do #16's targets at its sizes (they
// are reported, not asserted, in tiny mode).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { binaries } from "./interop/tools.ts";
import { haveRedis } from "./support/redis.ts";
import { repositoryRoot } from "./support/spawn.ts";

interface Run {
  side: "ours" | "ws" | "tcp" | "bun" | "ours-on-bun" | "one-node" | "two-nodes";
  round: number;
  ok: boolean;
  error?: string;
  metrics: Record<string, number | null>;
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
  targets?: Array<{ name: string; ok: boolean; detail?: string }>;
}

interface Ratio {
  median: number;
  min: number;
  max: number;
}

interface Report {
  meta: { mode: string; bun: string | null };
  results: Array<{
    id: string;
    title: string;
    scenario: { kind: string };
    summary: Array<{ ratio: Ratio | null; ratioBun: Ratio | null; ratioOursOnBun: Ratio | null }>;
    checks: { ok: boolean; failures: string[] };
    targets: Array<{ name: string; met: boolean; details: string[] }>;
    runs: Run[];
  }>;
  table: string;
}

/** Scenarios of server.ts alone: ws has no chat room to compare with. */
const roomKinds = ["join-storm", "first-visit", "history-startup", "history-compaction"];
/** One server.ts against two on one Redis: skipped by the benchmark without redis-server. */
const redisKind = "fanout-redis";

const directory = mkdtempSync(join(tmpdir(), "bench-test-"));
after(() => rmSync(directory, { recursive: true, force: true }));

function runTiny(jsonPath: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // --no-pin: beside other test files, a server held to one core waits for it; a tiny run's figures mean nothing.
    const args = ["--import", "tsx", "bench/bench.ts", "--tiny", "--no-pin", "--json", jsonPath];
    const child = spawn(process.execPath, args, {
      cwd: repositoryRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bench --tiny did not finish within 90 s:\n${output}`));
    }, 90_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test(
  "bench --tiny runs every kind of scenario against ours, ws and the TCP ceiling (and one echo against Bun.serve " +
    "and server.ts on Bun), and every check holds",
  { timeout: 120_000 },
  async () => {
    const jsonPath = join(directory, "tiny.json");
    const { code, output } = await runTiny(jsonPath);
    assert.equal(code, 0, `bench --tiny failed:\n${output}`);
    const report = JSON.parse(readFileSync(jsonPath, "utf8")) as Report;
    assert.equal(report.meta.mode, "tiny");
    assert.match(report.table, /ours\/ws/);

    const kinds = new Set(report.results.map((result) => result.scenario.kind));
    for (const kind of [
      "echo",
      "latency",
      "fanout",
      "classroom",
      "storm",
      "memory",
      ...roomKinds,
      ...(haveRedis() ? [redisKind] : []),
    ])
      assert.ok(kinds.has(kind), `no ${kind} scenario in the tiny run`);

    for (const result of report.results) {
      assert.ok(result.checks.ok, `${result.title}: ${result.checks.failures.join("; ")}`);
      const sides = roomKinds.includes(result.scenario.kind)
        ? (["ours"] as const)
        : result.scenario.kind === redisKind
          ? (["one-node", "two-nodes"] as const)
          : (["ours", "ws"] as const);
      for (const side of sides) {
        const runs = result.runs.filter((run) => run.side === side);
        assert.ok(runs.length >= 1, `${result.title}: no run against ${side}`);
        for (const run of runs) {
          assert.ok(run.ok, `${result.title} ${side}: ${run.error ?? JSON.stringify(run.checks)}`);
          assert.ok(
            run.checks.length > 0 && run.checks.every((check) => check.ok),
            `${result.title} ${side}: ${JSON.stringify(run.checks)}`,
          );
        }
      }
    }

    // Echo: bytes equal, and replies were actually checked, including the TCP ceiling.
    const echoes = report.results.filter(
      (result) => result.scenario.kind === "echo" || result.scenario.kind === "latency",
    );
    for (const result of echoes) {
      for (const run of result.runs) {
        assert.match(run.checks[0]!.name, /echo bytes equal/);
        assert.ok((run.metrics.verified ?? 0) > 0, `${result.title} ${run.side}: no reply was checked`);
      }
      assert.ok(
        result.runs.some((run) => run.side === "tcp"),
        `${result.title}: no TCP ceiling run`,
      );
    }
    // Bun: the first echo scenario, and only it, ran against Bun.serve and server.ts on Bun, and has both
    // ratios to Bun.serve; without the test runtimes' Bun those sides are skipped, loudly, and nothing else is.
    const withBun = report.results.filter((result) =>
      result.runs.some((run) => run.side === "bun" || run.side === "ours-on-bun"),
    );
    if (existsSync(binaries.bun)) {
      assert.equal(typeof report.meta.bun, "string", "bun is installed but the report names no Bun version");
      assert.deepEqual(
        withBun.map((result) => result.id),
        [echoes.find((result) => result.scenario.kind === "echo")!.id],
        "Bun should run in the first echo scenario only",
      );
      for (const side of ["bun", "ours-on-bun"] as const) {
        const runs = withBun[0]!.runs.filter((run) => run.side === side);
        assert.ok(runs.length >= 1, `${withBun[0]!.title}: no run against ${side}`);
        for (const run of runs) assert.ok(run.ok, `${withBun[0]!.title} ${side}: ${run.error ?? ""}`);
      }
      assert.ok(withBun[0]!.summary[0]!.ratioBun !== null, "no ours/bun ratio");
      assert.ok(withBun[0]!.summary[0]!.ratioOursOnBun !== null, "no ours-on-bun/bun ratio");
      assert.match(report.table, /ours\/bun/);
    } else {
      assert.equal(withBun.length, 0);
      assert.match(output, /Bun\.serve and server\.ts on Bun: SKIPPED/);
    }

    // A deflate scenario negotiated compression and its compressed replies were checked.
    assert.ok(
      report.results.some((result) => result.id.endsWith("-deflate")),
      "no permessage-deflate scenario",
    );

    // Fan-out: every client got every message once, in order.
    for (const result of report.results.filter((item) => item.scenario.kind === "fanout")) {
      for (const run of result.runs) {
        const check = run.checks.find((item) => item.name === "every client got every message once, in order");
        assert.ok(check?.ok, `${result.title} ${run.side}: ${check?.detail}`);
        assert.ok((run.metrics.said ?? 0) > 1, `${result.title} ${run.side}: no message was said`);
      }
    }

    // The busy classroom and idle connections: a floor run (tcp) beside ours and ws; every classroom delivery checked.
    for (const result of report.results.filter(
      (item) => item.scenario.kind === "classroom" || item.scenario.kind === "memory",
    ))
      assert.ok(
        result.runs.some((run) => run.side === "tcp" && run.ok),
        `${result.title}: no floor run`,
      );
    for (const result of report.results.filter((item) => item.scenario.kind === "classroom")) {
      for (const run of result.runs) {
        const check = run.checks.find((item) => item.name === "every client got every message once, in order");
        assert.ok(check?.ok, `${result.title} ${run.side}: ${check?.detail}`);
        assert.ok((run.metrics.messages ?? 0) > 0, `${result.title} ${run.side}: nothing said in the measured window`);
      }
      assert.ok(result.targets.length > 0, `${result.title}: no #16 target reported`);
    }
    // The reconnect storm: every client back on both servers, nobody refused, the target reported.
    for (const result of report.results.filter((item) => item.scenario.kind === "storm")) {
      for (const run of result.runs) {
        assert.ok(
          run.checks.find((item) => item.name === "every client came back")?.ok,
          `${result.title} ${run.side}: ${JSON.stringify(run.checks)}`,
        );
        assert.equal(run.metrics.refused, 0, `${result.title} ${run.side}: attempts refused with a status`);
      }
      assert.ok(result.targets.length > 0, `${result.title}: no #16 target reported`);
    }

    // Fan-out on Redis: both setups, every message to every client once, in seq order; Redis's CPU measured.
    for (const result of report.results.filter((item) => item.scenario.kind === redisKind)) {
      for (const run of result.runs) {
        const check = run.checks.find((item) => item.name === "every client got every message once, in seq order");
        assert.ok(check?.ok, `${result.title} ${run.side}: ${check?.detail}`);
        assert.ok((run.metrics.said ?? 0) > 1, `${result.title} ${run.side}: no message was said`);
        assert.ok((run.metrics.pacedMessages ?? 0) > 0, `${result.title} ${run.side}: nothing said in the paced phase`);
        if (run.side === "two-nodes")
          assert.ok(run.metrics.redisCpuSeconds !== null, `${result.title}: Redis's CPU was not read`);
      }
    }

    // The chat room at scale: only server.ts, every target reported (met or not), and the counts are real.
    for (const result of report.results.filter((item) => roomKinds.includes(item.scenario.kind))) {
      assert.ok(
        result.runs.every((run) => run.side === "ours"),
        `${result.title}: a room scenario ran against another server`,
      );
      assert.ok(result.targets.length > 0, `${result.title}: no #16 target reported`);
      for (const run of result.runs)
        assert.ok((run.targets ?? []).length > 0, `${result.title}: a run without targets`);
    }
    const metric = (kind: string, key: string) =>
      report.results.find((result) => result.scenario.kind === kind)?.runs[0]?.metrics[key] ?? Number.NaN;
    assert.ok(metric("join-storm", "presencePerClient") > 0, "the join storm counted no presence frame");
    assert.equal(metric("first-visit", "messagesPerClient"), 100, "a first visit is replayed one page of 100");
    assert.ok(metric("history-compaction", "fileMessages") <= 1000, "the history file was not compacted");
  },
);
