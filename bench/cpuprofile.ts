// bench/cpuprofile.ts — reads a V8 .cpuprofile (node --cpu-prof) and prints
// where the time went: self time by function (with file:line), and total
// (inclusive) time of the functions of one file, server.ts by default.
//
//   node --cpu-prof --cpu-prof-dir=.profiles --import tsx server.ts --port 5500 ...
//   (drive it with bench/load.ts, then Ctrl-C the server)
//   node --import tsx bench/cpuprofile.ts .profiles/CPU.*.cpuprofile [--file server.ts] [--top 25]
import { readFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { file: { type: "string", default: "server.ts" }, top: { type: "string", default: "25" } },
});
const top = Number(values.top);

for (const path of positionals) {
  const profile = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // Self time per node, from the samples and their time deltas (microseconds).
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, index) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const total = [...selfTime.values()].reduce((sum, value) => sum + value, 0);
  const idle = [...selfTime.entries()]
    .filter(([id]) => byId.get(id)?.callFrame.functionName === "(idle)")
    .reduce((sum, [, value]) => sum + value, 0);
  const busy = total - idle;

  const name = (frame: CallFrame) => {
    const file = frame.url.replace(/^file:\/\/.*\//, "");
    return `${frame.functionName || "(anonymous)"} ${file ? `${file}:${frame.lineNumber + 1}` : ""}`.trim();
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, time] of selfTime) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === "(idle)") continue;
    self.set(name(node.callFrame), (self.get(name(node.callFrame)) ?? 0) + time);
    // Inclusive time for the functions of the chosen file: each counted once per sample stack.
    const seen = new Set<string>();
    for (let cursor: number | undefined = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const frame = byId.get(cursor)!.callFrame;
      if (!frame.url.endsWith(values.file)) continue;
      const key = name(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + time);
    }
  }
  const percent = (value: number) => `${((value / busy) * 100).toFixed(1).padStart(5)}%`;
  const ms = (value: number) => `${(value / 1000).toFixed(0).padStart(7)} ms`;
  console.log(`${path}: ${(total / 1e6).toFixed(2)} s profiled, ${(busy / 1e6).toFixed(2)} s busy`);
  console.log(`\n  self time (% of busy)`);
  for (const [key, value] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`  ${ms(value)} ${percent(value)}  ${key}`);
  console.log(`\n  total time of ${values.file} functions (% of busy, callees included)`);
  for (const [key, value] of [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`  ${ms(value)} ${percent(value)}  ${key}`);
  console.log("");
}

if (positionals.length === 0) {
  console.error("usage: node --import tsx bench/cpuprofile.ts FILE.cpuprofile [--file server.ts] [--top 25]");
  process.exitCode = 2;
}
