// npm run fuzz -- [--cases N] [--seed S] [--from I] [--case I] [--live [--port P]]
//
// Long runs of the frame-decoder fuzzer (scripts/lib/fuzzer.ts). Without
// --live, the pure FrameDecoder (server mode, expectMasked, 64 KiB
// maxPayload) is fed N mutated streams; with --live, the streams go to a
// server on /echo over TCP (a fresh one started here, or the one on --port).
// Any failure is printed as a reproducer (seed, case index, the stream in
// hex, the chunking), and the exit code is then 1.
//   --case I   replays case I of the seed alone and prints what both decoders saw.
import { parseArgs } from "node:util";
import process from "node:process";
import {
  checkCase,
  describeEvent,
  formatReproducer,
  makeCase,
  referenceDecode,
  runDecoder,
  runFuzz,
} from "./lib/fuzzer.ts";
import { checkLiveCase, describeLiveFailure, echoStillWorks, runLiveFuzz, sendLiveCase } from "./lib/live-fuzz.ts";
import { megabytes, readProcessMemory } from "../test/support/memory.ts";
import { spawnServer, type SpawnedServer } from "../test/support/spawn.ts";

const LIVE_MAX_PAYLOAD = 64 * 1024;

function parseNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) {
    console.error(`fuzz: --${name} takes a whole number, not ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return number;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      cases: { type: "string" },
      seed: { type: "string" },
      from: { type: "string" },
      case: { type: "string" },
      live: { type: "boolean" },
      port: { type: "string" },
      "max-failures": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "usage: npm run fuzz -- [--cases N] [--seed S] [--from I] [--case I] [--live [--port P]] [--max-failures N]",
    );
    return 0;
  }
  const seed = parseNumber("seed", values.seed, (Date.now() ^ (process.pid << 16)) >>> 0);
  const cases = parseNumber("cases", values.cases, values.live ? 5_000 : 200_000);
  const from = parseNumber("from", values.from, 0);
  const maxFailures = parseNumber("max-failures", values["max-failures"], 5);

  if (values.case !== undefined)
    return replay(seed, parseNumber("case", values.case, 0), values.live === true, values.port);
  if (values.live) return live(seed, cases, from, maxFailures, values.port);

  console.log(`fuzzing FrameDecoder: seed ${seed}, cases ${from}..${from + cases - 1}`);
  const started = Date.now();
  const summary = runFuzz(seed, cases, from, maxFailures, (done) => {
    const seconds = (Date.now() - started) / 1000;
    console.log(`  ${done} cases, ${(done / seconds).toFixed(0)} cases/s`);
  });
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `${summary.cases} cases, ${megabytes(summary.bytes)} of frames, in ${seconds.toFixed(1)} s ` +
      `(${(summary.cases / seconds).toFixed(0)} cases/s)`,
  );
  console.log(`  how the streams ended: ${JSON.stringify(summary.endings)}`);
  console.log(`  violations found: ${JSON.stringify(summary.violations)}`);
  for (const failure of summary.failures) console.log("\n" + formatReproducer(failure));
  if (summary.failures.length > 0) {
    console.log(`\n${summary.failures.length} failure(s)`);
    return 1;
  }
  console.log("no failure");
  return 0;
}

async function startTarget(
  portOption: string | undefined,
): Promise<{ port: number; pid: number | undefined; server: SpawnedServer | undefined }> {
  if (portOption !== undefined) {
    console.log(
      `live fuzz against the server on port ${portOption} (started with --max-payload ${LIVE_MAX_PAYLOAD}, please)`,
    );
    return { port: parseNumber("port", portOption, 0), pid: undefined, server: undefined };
  }
  const server = await spawnServer(["--max-payload", String(LIVE_MAX_PAYLOAD)]);
  console.log(`started server.ts on port ${server.port} (pid ${server.pid})`);
  return { port: server.port, pid: server.pid, server };
}

async function live(
  seed: number,
  cases: number,
  from: number,
  maxFailures: number,
  portOption: string | undefined,
): Promise<number> {
  const target = await startTarget(portOption);
  try {
    console.log(`live fuzz on /echo: seed ${seed}, cases ${from}..${from + cases - 1}, one connection each`);
    const started = Date.now();
    const summary = await runLiveFuzz({
      port: target.port,
      pid: target.pid,
      seed,
      cases,
      from,
      maxPayload: LIVE_MAX_PAYLOAD,
      maxFailures,
      onProgress: (done) =>
        console.log(`  ${done} connections, ${(done / ((Date.now() - started) / 1000)).toFixed(0)}/s`),
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const final = readProcessMemory(target.pid);
    const alive = target.server === undefined || target.server.alive();
    const echo = alive && (await echoStillWorks(target.port));
    console.log(
      `${summary.cases} connections in ${((Date.now() - started) / 1000).toFixed(1)} s; ${summary.uncertain} only ` +
        `partly predictable (compressed data needing the server's window, or ping floods)`,
    );
    if (target.pid !== undefined) {
      console.log(
        `server RSS: baseline ${summary.baselineRss === undefined ? "?" : megabytes(summary.baselineRss)}, peak ` +
          `sampled ${summary.peakRss === undefined ? "?" : megabytes(summary.peakRss)}, after 1 s ` +
          `${final === undefined ? "?" : megabytes(final.rss)} (VmHWM ` +
          `${final === undefined ? "?" : megabytes(final.peakRss)})`,
      );
    }
    console.log(`server alive: ${alive}; echo works afterwards: ${echo}`);
    for (const failure of summary.failures) console.log("\n" + describeLiveFailure(failure));
    if (summary.failures.length > 0 || !alive || !echo) {
      if (target.server !== undefined && !alive) console.log(`server output:\n${target.server.output().slice(-5000)}`);
      return 1;
    }
    console.log("no failure");
    return 0;
  } finally {
    await target.server?.stop();
  }
}

async function replay(seed: number, index: number, liveMode: boolean, portOption: string | undefined): Promise<number> {
  const fuzzCase = liveMode
    ? makeCase(seed, index, { maxPayload: LIVE_MAX_PAYLOAD, maxFragments: 131_072 })
    : makeCase(seed, index);
  console.log(`case ${index} of seed ${seed}`);
  console.log(`  options: ${JSON.stringify(fuzzCase.options)}`);
  console.log(`  mutations: ${fuzzCase.mutations.join(" ") || "(none)"}`);
  console.log(`  stream (${fuzzCase.stream.length} bytes): ${fuzzCase.stream.toString("hex")}`);
  console.log(
    `  reference: ${referenceDecode(fuzzCase.stream, fuzzCase.options).map(describeEvent).join(", ") || "(no event)"}`,
  );
  for (const chunking of fuzzCase.chunkings) {
    const run = runDecoder(fuzzCase.stream, chunking, fuzzCase.options);
    const events = run.events.map(describeEvent).join(", ") || "(no event)";
    const thrown = run.thrown ? ` THREW ${run.thrown}` : "";
    const problem = run.problem ? ` PROBLEM ${run.problem}` : "";
    console.log(`  decoder, ${chunking.length} chunk(s): ${events}${thrown}${problem}`);
  }
  let failed = false;
  const failure = checkCase(fuzzCase);
  if (failure !== undefined && !liveMode) {
    console.log("\n" + formatReproducer(failure));
    failed = true;
  }
  if (liveMode) {
    const target = await startTarget(portOption);
    try {
      const result = await sendLiveCase(target.port, fuzzCase);
      const answered = result.received.map(describeEvent).join(", ") || "(nothing)";
      console.log(`  live server answered: ${answered}${result.timedOut ? " (and did not close)" : ""}`);
      const message = checkLiveCase(fuzzCase, result);
      if (message !== undefined) {
        console.log("\n" + describeLiveFailure({ fuzzCase, message }));
        failed = true;
      }
    } finally {
      await target.server?.stop();
    }
  }
  if (!failed) console.log("no failure");
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
