// bench/trace-cost.ts — what the protocol trace costs when it is off.
//
//   node --import tsx bench/trace-cost.ts [--rounds 6]
//
// With --trace off, the only trace code on the hot path is a check per frame:
// `this.observers.watching` when sending, and `observeFrames` when a
// payload piece arrives. This script makes a copy of server.ts with exactly
// those checks replaced by `false` (V8 then drops the code behind them), runs
// the copy and server.ts alternately under the same echo load (64
// connections, 16-byte messages: the case where a per-frame cost shows most),
// and prints the ratio. A ratio of 1.00 within the rounds' spread means
// tracing off costs nothing measurable.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runEcho } from "./load.ts";

const here = dirname(fileURLToPath(import.meta.url));
const rounds = Number(process.argv[process.argv.indexOf("--rounds") + 1] || 6);
// As bench.ts does: the server on the second core, this load generator on the first.
const pin = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
if (pin) spawnSync("taskset", ["-p", "-c", "0", String(process.pid)]);

/** server.ts with the tracing checks taken out; throws if they are not where expected. */
function withoutTracing(source: string): string {
  const checks: Array<[string, string]> = [
    ["this.observers.watching", "false"],
    ["if (!this.options.observeFrames || offset >= PREVIEW_BYTES) return;", "return;"],
  ];
  let result = source;
  for (const [check, replacement] of checks) {
    if (!result.includes(check)) throw new Error(`server.ts no longer contains ${check}: update bench/trace-cost.ts`);
    result = result.split(check).join(replacement);
  }
  return result;
}

function start(file: string): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const command = [
      process.execPath,
      "--import",
      "tsx",
      file,
      "--port",
      "0",
      "--keepalive-interval",
      "0",
      "--no-deflate",
    ];
    const pinned = pin ? ["taskset", "-c", "1", ...command] : command;
    const child = spawn(pinned[0]!, pinned.slice(1), {
      cwd: join(here, ".."),
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = output.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (match) resolve({ child, port: Number(match[1]) });
    });
    child.on("exit", (code) => reject(new Error(`${file} exited (${code}) before listening`)));
  });
}

async function measure(file: string): Promise<number> {
  const { child, port } = await start(file);
  try {
    const result = await runEcho({
      target: { host: "127.0.0.1", port },
      raw: false,
      connections: 64,
      size: 16,
      kind: "text",
      deflate: false,
      window: 16,
      warmupMs: 500,
      durationMs: 2000,
    });
    return result.messagesPerSecond;
  } finally {
    child.kill("SIGKILL");
  }
}

const directory = mkdtempSync(join(tmpdir(), "trace-cost-"));
const stripped = join(directory, "server-without-tracing.ts");
writeFileSync(stripped, withoutTracing(readFileSync(join(here, "..", "server.ts"), "utf8")));
const ratios: number[] = [];
try {
  for (let round = 1; round <= rounds; round++) {
    // A B, then B A: whichever runs first in a round is not always the same one.
    let withChecks: number;
    let without: number;
    if (round % 2 === 1) {
      withChecks = await measure(join(here, "..", "server.ts"));
      without = await measure(stripped);
    } else {
      without = await measure(stripped);
      withChecks = await measure(join(here, "..", "server.ts"));
    }
    ratios.push(withChecks / without);
    console.log(
      `round ${round}: server.ts ${Math.round(withChecks)} msg/s, without the trace checks ${Math.round(without)} msg/s, ratio ${(withChecks / without).toFixed(3)}`,
    );
  }
} finally {
  rmSync(directory, { recursive: true, force: true });
}
ratios.sort((a, b) => a - b);
const median = ratios[Math.floor(ratios.length / 2)]!;
console.log(
  `tracing off / no tracing code: median ${median.toFixed(3)} [${ratios[0]!.toFixed(3)}–${ratios.at(-1)!.toFixed(3)}]`,
);
