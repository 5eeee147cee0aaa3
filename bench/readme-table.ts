// bench/readme-table.ts — the README's performance table, made from the
// results `npm run bench -- --json FILE` wrote (docs/bench.json by default):
// one Markdown row per scenario, medians with [min–max] over the rounds, a
// ratio in bold where it is in our favour. Paste its output over the table.
//
//   node --import tsx bench/readme-table.ts [docs/bench.json]
import { readFileSync } from "node:fs";
import process from "node:process";
import type { EchoScenario, MetricSummary, Scenario, ScenarioResult, Spread } from "./bench.ts";
import { sizeName, thousands } from "./format.ts";

/** What bench.ts writes with --json: its report's fields this table reads. */
interface Report {
  meta: { date: string; commit?: string };
  results: ScenarioResult[];
}

const file = process.argv[2] ?? "docs/bench.json";
const { meta, results } = JSON.parse(readFileSync(file, "utf8")) as Report;

/** The results of one kind of scenario, typed as that kind. */
function ofKind<Kind extends Scenario["kind"]>(
  kind: Kind,
): Array<ScenarioResult & { scenario: Extract<Scenario, { kind: Kind }> }> {
  return results.filter(
    (result): result is ScenarioResult & { scenario: Extract<Scenario, { kind: Kind }> } =>
      result.scenario.kind === kind,
  );
}

function metric(result: ScenarioResult, key: string): MetricSummary {
  const found = result.summary.find((candidate) => candidate.key === key);
  if (found === undefined) throw new Error(`${result.scenario.id} has no ${key}`);
  return found;
}

function median(spread: Spread | null): number {
  return spread?.median ?? Number.NaN;
}

/** 123 · 1,234 · 12.3k · 123k · 1005k: rounded to thousands from 10,000 up. */
function count(value: number): string {
  if (Number.isNaN(value)) return "–";
  if (value >= 100_000) return `${Math.round(value / 1000)}k`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(1);
}

/** `value` with `digits` decimals, or "–" where a side was not measured. */
function fixed(value: number, digits: number): string {
  return Number.isNaN(value) ? "–" : value.toFixed(digits);
}

/** Two decimals below 2, one above: 0.84, 1.43, 2.9. */
function decimals(value: number): string {
  return value >= 2 ? value.toFixed(1) : value.toFixed(2);
}

function times(value: number): string {
  return Number.isNaN(value) ? "–" : `${decimals(value)}×`;
}

/** A ratio with its spread; bold when it is in our favour. */
function ratio(spread: Spread | null, higherIsBetter = true): string {
  if (spread === null) return "";
  const favourable = higherIsBetter ? spread.median > 1 : spread.median < 1;
  const text = times(spread.median);
  return `${favourable ? `**${text}**` : text} [${decimals(spread.min)}–${decimals(spread.max)}]`;
}

function kibibytes(bytes: number): string {
  return `${fixed(bytes / 1024, 1)} KiB`;
}

function milliseconds(microseconds: number): string {
  return `${fixed(microseconds / 1000, microseconds >= 100_000 ? 0 : 2)} ms`;
}

/** "echo 64 × 1 KiB text, msg/s". */
function echoLabel({ connections, size, type, deflate }: EchoScenario): string {
  return `echo ${connections} × ${sizeName(size)} ${type}${deflate ? ", permessage-deflate" : ", msg/s"}`;
}

/** An echo's row: each side's messages a second and the ratios, then `last`. */
function echoRow(result: ScenarioResult & { scenario: EchoScenario }, last: string): string[] {
  const m = metric(result, "messagesPerSecond");
  return [
    echoLabel(result.scenario),
    count(median(m.ours)),
    count(median(m.ws)),
    ratio(m.ratio),
    count(median(m.bun)),
    ratio(m.ratioBun),
    count(median(m.oursOnBun)),
    ratio(m.ratioOursOnBun),
    last,
  ];
}

const rows: string[][] = [];
const echoes = ofKind("echo");
for (const result of echoes.filter((echo) => !echo.scenario.deflate)) {
  const { ofCeiling } = metric(result, "messagesPerSecond");
  rows.push(echoRow(result, ofCeiling === null ? "" : `${Math.round(ofCeiling * 100)}%`));
}
for (const result of ofKind("latency")) {
  const p50 = metric(result, "p50");
  const p99 = metric(result, "p99");
  const pair = (a: Spread | null, b: Spread | null) => `${Math.round(median(a))} / ${Math.round(median(b))} µs`;
  const both = (a: Spread | null, b: Spread | null) => `${times(median(a))} / ${times(median(b))}`;
  const ofTcp =
    p50.ofCeiling === null || p99.ofCeiling === null
      ? ""
      : `${Math.round(p50.ofCeiling * 100)}% / ${Math.round(p99.ofCeiling * 100)}%`;
  rows.push([
    "round trip 16 B, p50 / p99 (lower is better)",
    pair(p50.ours, p99.ours),
    pair(p50.ws, p99.ws),
    `${ratio(p50.ratio, false)} / ${ratio(p99.ratio, false)}`,
    pair(p50.bun, p99.bun),
    both(p50.ratioBun, p99.ratioBun),
    pair(p50.oursOnBun, p99.oursOnBun),
    both(p50.ratioOursOnBun, p99.ratioOursOnBun),
    ofTcp,
  ]);
}
for (const result of echoes.filter((echo) => echo.scenario.deflate)) rows.push(echoRow(result, ""));
/** A row of a scenario with no Bun.serve column. */
function wsRow(label: string, ours: string, ws: string, versus: string, note: string): string[] {
  return [label, ours, ws, versus, "", "", "", "", note];
}
for (const result of ofKind("fanout")) {
  const m = metric(result, "deliveriesPerSecond");
  const p50 = metric(result, "p50");
  const p99 = metric(result, "p99");
  const latency = `p50 ${milliseconds(median(p50.ours))} vs ${milliseconds(median(p50.ws))}, p99 ${milliseconds(median(p99.ours))} vs ${milliseconds(median(p99.ws))}`;
  const label = `chat fan-out to ${thousands(result.scenario.clients)}: deliveries/s`;
  rows.push(wsRow(label, count(median(m.ours)), count(median(m.ws)), ratio(m.ratio), latency));
}
for (const result of ofKind("classroom")) {
  const m = metric(result, "serverCpuPerDelivery");
  const { clients, ratePerSecond } = result.scenario;
  const floor = `floor ${fixed(median(m.tcp), 1)} µs: ours ${times(median(m.ours) / median(m.tcp))}`;
  const label = `busy classroom, ${clients} clients × ${ratePerSecond} msg/s: server CPU per delivery (lower is better)`;
  const [ours, ws] = [median(m.ours), median(m.ws)].map((value) => `${fixed(value, 1)} µs`);
  rows.push(wsRow(label, ours!, ws!, ratio(m.ratio, false), floor));
}
for (const result of ofKind("storm")) {
  const m = metric(result, "handshakesPerSecond");
  const back = metric(result, "backSeconds");
  const failed = metric(result, "failedAttempts");
  const note =
    `per CPU-s ${ratio(m.perCpuRatio)}; all back after ${fixed(median(back.ours), 2)} s vs ` +
    `${fixed(median(back.ws), 2)} s; failed attempts ${median(failed.ours)} vs ${median(failed.ws)}`;
  const label = `reconnect storm, ${thousands(result.scenario.clients)} clients: handshakes/s`;
  rows.push(wsRow(label, count(median(m.ours)), count(median(m.ws)), ratio(m.ratio), note));
}
const idle = ofKind("memory");
for (const result of idle) {
  const m = metric(result, "bytesPerConnection");
  const floor = `floor ${kibibytes(median(m.tcp))}: ours ${times(median(m.ours) / median(m.tcp))}`;
  const label = `memory per idle connection, ${thousands(result.scenario.connections)}`;
  rows.push(wsRow(label, kibibytes(median(m.ours)), kibibytes(median(m.ws)), ratio(m.ratio, false), floor));
}
if (idle.length > 0) {
  const rates = idle.map((result) => metric(result, "handshakesPerSecond"));
  rows.push(
    wsRow(
      `handshakes per second, ${idle.map((result) => thousands(result.scenario.connections)).join(" / ")} idle`,
      rates.map((m) => count(median(m.ours))).join(" / "),
      rates.map((m) => count(median(m.ws))).join(" / "),
      rates.map((m) => ratio(m.ratio)).join(" / "),
      "",
    ),
  );
}

console.log(`<!-- bench/readme-table.ts ${file}: ${meta.date}${meta.commit ? `, commit ${meta.commit}` : ""} -->`);
console.log(
  "| Scenario | ours | ws | ours/ws [min–max] | Bun.serve | ours/Bun [min–max] | ours on Bun | on Bun/Bun [min–max] | ours/TCP |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
