// The benchmark runs, on a tiny load, and its correctness checks hold: every
// echo reply came back with the same type and bytes, every fan-out message
// reached every client exactly once and in order, every idle connection
// opened. No timing is asserted: the figures of a tiny run mean nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { repositoryRoot } from "./support/spawn.ts";

interface Run {
  side: "ours" | "ws" | "tcp";
  round: number;
  ok: boolean;
  error?: string;
  metrics: Record<string, number | null>;
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
}

interface Report {
  meta: { mode: string };
  results: Array<{
    id: string;
    title: string;
    scenario: { kind: string };
    checks: { ok: boolean; failures: string[] };
    runs: Run[];
  }>;
  table: string;
}

const directory = mkdtempSync(join(tmpdir(), "bench-test-"));
after(() => rmSync(directory, { recursive: true, force: true }));

function runTiny(jsonPath: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/bench.ts", "--tiny", "--json", jsonPath], {
      cwd: repositoryRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bench --tiny did not finish within 60 s:\n${output}`));
    }, 60_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test(
  "bench --tiny runs every kind of scenario against ours, ws and the TCP ceiling, and every check holds",
  { timeout: 90_000 },
  async () => {
    const jsonPath = join(directory, "tiny.json");
    const { code, output } = await runTiny(jsonPath);
    assert.equal(code, 0, `bench --tiny failed:\n${output}`);
    const report = JSON.parse(readFileSync(jsonPath, "utf8")) as Report;
    assert.equal(report.meta.mode, "tiny");
    assert.match(report.table, /ours\/ws/);

    const kinds = new Set(report.results.map((result) => result.scenario.kind));
    for (const kind of ["echo", "latency", "fanout", "memory"])
      assert.ok(kinds.has(kind), `no ${kind} scenario in the tiny run`);

    for (const result of report.results) {
      assert.ok(result.checks.ok, `${result.title}: ${result.checks.failures.join("; ")}`);
      for (const side of ["ours", "ws"] as const) {
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
  },
);
