// npm run loadtest -- [--clients 1000] [--messages 5] [--text-length 100] [--window 2]
//                     [--interval MS] [--seed S] [--port P] [--kill] [--chaos 0.3] [--timeout 300]
//
// C reconnecting chat clients (test/support/chat-client.ts) join the room,
// then each says M messages, at most `window` unacknowledged at a time. At
// the end every transcript must be identical and complete; the script prints
// deliveries per second and the p50/p99 latency from a message's first send
// to each client's first sight of it, and the server's peak RSS. Without
// --interval the clients send as fast as their window allows, so the room is
// saturated and the latency is mostly queueing; --interval MS paces each
// client (e.g. --interval 1000: 1,000 clients make 1,000 messages a second).
//   --port P     use the server already on P (start it with --message-rate,
//                --message-burst and --max-connections-per-ip raised)
//   --kill       start the server with --history, SIGKILL it when a third of
//                the messages are acknowledged, restart it on the same port
//   --chaos P    put a TCP proxy in between that cuts a connection with
//                probability P at a random byte (stops cutting at 80%)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { ChaosProxy } from "./lib/chaos-proxy.ts";
import { LoadRun } from "./lib/load.ts";
import { megabytes, RssSampler } from "../test/support/memory.ts";
import { freePort, spawnServer, type SpawnedServer } from "../test/support/spawn.ts";
import { waitUntil } from "../test/support/wait.ts";

function number(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) {
    console.error(`loadtest: --${name} takes a number, not ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return parsed;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      clients: { type: "string" },
      messages: { type: "string" },
      "text-length": { type: "string" },
      window: { type: "string" },
      interval: { type: "string" },
      seed: { type: "string" },
      port: { type: "string" },
      kill: { type: "boolean" },
      chaos: { type: "string" },
      timeout: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "usage: npm run loadtest -- [--clients N] [--messages M] [--text-length L] [--window W] [--interval MS] " +
        "[--seed S] [--port P] [--kill] [--chaos P] [--timeout SECONDS]",
    );
    return 0;
  }
  const clients = number("clients", values.clients, 1000);
  const messages = number("messages", values.messages, 5);
  const seed = number("seed", values.seed, Date.now() % 2 ** 31);
  const timeoutMs = number("timeout", values.timeout, 300) * 1000;
  const chaos = values.chaos === undefined ? undefined : number("chaos", values.chaos, 0.3);
  if (values.kill && values.port !== undefined) {
    console.error("loadtest: --kill needs a server started here; leave out --port");
    return 2;
  }

  let server: SpawnedServer | undefined;
  let directory: string | undefined;
  let serverPort: number;
  let serverArgs: string[] = [];
  if (values.port !== undefined) serverPort = number("port", values.port, 0);
  else {
    serverPort = await freePort();
    serverArgs = [
      "--port",
      String(serverPort),
      "--message-rate",
      "1000000",
      "--message-burst",
      "1000000",
      "--max-connections-per-ip",
      "100000",
      "--max-connections",
      "100000",
      "--history-size",
      String(Math.max(1000, clients * messages + 1000)),
    ];
    if (values.kill) {
      directory = mkdtempSync(join(tmpdir(), "loadtest-"));
      serverArgs.push("--history", join(directory, "history.jsonl"));
    }
    server = await spawnServer(serverArgs);
    console.log(`server.ts on port ${serverPort}, pid ${server.pid}: ${serverArgs.join(" ")}`);
  }
  let sampler = new RssSampler(server?.pid, 200);
  let peakRss = 0;
  const proxy =
    chaos === undefined
      ? undefined
      : new ChaosProxy({ targetPort: serverPort, seed, cutProbability: chaos, maxBytesBeforeCut: 20_000 });
  const port = proxy === undefined ? serverPort : await proxy.listen();
  if (proxy !== undefined) console.log(`chaos proxy on port ${port}: cuts a connection with probability ${chaos}`);

  const run = new LoadRun({
    port,
    clients,
    messagesPerClient: messages,
    textLength: number("text-length", values["text-length"], 100),
    window: number("window", values.window, 2),
    intervalMs: number("interval", values.interval, 0),
    seed,
    connectBatch: 100,
  });
  const ticker = setInterval(() => console.log(`  ${run.progress()}`), 2000);
  try {
    const connectStart = performance.now();
    await run.start(120_000);
    console.log(
      `${clients} clients in the room after ${((performance.now() - connectStart) / 1000).toFixed(1)} s; each says ` +
        `${messages} messages (seed ${seed})`,
    );
    if (values.kill && server !== undefined) {
      await waitUntil(() => run.acknowledged >= run.totalMessages / 3, timeoutMs, "a third of the messages");
      peakRss = Math.max(peakRss, sampler.stop());
      server.child.kill("SIGKILL");
      await server.exited;
      console.log(`SIGKILL at ${run.progress()}`);
      server = await spawnServer(serverArgs);
      sampler = new RssSampler(server.pid, 200);
      console.log(`restarted on port ${serverPort} (pid ${server.pid})`);
    }
    if (proxy !== undefined) {
      await waitUntil(() => run.acknowledged >= run.totalMessages * 0.8, timeoutMs, "80% of the messages");
      proxy.cutting = false;
      console.log(`the proxy stops cutting (${proxy.cuts} cuts so far, in ${proxy.connections} connections)`);
    }
    await run.waitUntilComplete(timeoutMs);
  } catch (error) {
    console.error(`loadtest: ${error instanceof Error ? error.message : String(error)}; ${run.progress()}`);
    return 1;
  } finally {
    clearInterval(ticker);
    peakRss = Math.max(peakRss, sampler.stop());
    run.stop();
    await proxy?.close();
    await server?.stop();
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  }

  const summary = run.summary();
  const problems = run.verify({ exactlyOnceOnTheWire: !values.kill && proxy === undefined });
  console.log(
    `${summary.messages} messages to ${summary.clients} clients: ${summary.deliveries} deliveries in ` +
      `${summary.seconds.toFixed(2)} s`,
  );
  console.log(`  ${summary.deliveriesPerSecond.toFixed(0)} deliveries/s`);
  console.log(
    `  send-to-delivery latency: p50 ${summary.p50.toFixed(1)} ms, p99 ${summary.p99.toFixed(1)} ms, max ` +
      `${summary.max.toFixed(1)} ms`,
  );
  console.log(
    `  connections ${summary.connections} (failed attempts ${summary.failedConnections}), resends ` +
      `${summary.resends}, repeated deliveries ${summary.repeatedDeliveries}, replayed ` +
      `${summary.replayedDeliveries}, resumes refused ${summary.resumesRefused}`,
  );
  if (Object.keys(summary.errors).length > 0) console.log(`  errors from the room: ${JSON.stringify(summary.errors)}`);
  if (proxy !== undefined)
    console.log(
      `  proxy: ${proxy.cuts} cuts (${proxy.cutsInsideData} inside data) in ${proxy.connections} connections`,
    );
  if (peakRss > 0) console.log(`  server peak RSS (sampled) ${megabytes(peakRss)}`);
  if (problems.length > 0) {
    console.log(`FAILED:\n  ${problems.join("\n  ")}`);
    return 1;
  }
  console.log("all transcripts identical and complete");
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
