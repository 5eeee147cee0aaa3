// bench/bench.ts — "Faster than ws": server.ts and a reference server on `ws`
// side by side, with a plain TCP echo as the ceiling; for echo, a second
// reference on Bun.serve (uWebSockets), and server.ts itself run by Bun.
//
//   node --import tsx bench/bench.ts            quick (about 6½ minutes here), 2 rounds
//   node --import tsx bench/bench.ts --full     every size, type and deflate setting, 3 rounds
//   node --import tsx bench/bench.ts --tiny     a few seconds of each kind (the test uses it)
//   options: --rounds N  --only REGEX  --json FILE|-  --svg FILE  --no-save  --no-pin
//
// Each server is a separate process: bare node on the file compiled by
// esbuild (test/support/spawn.ts's compiledPath, what tsx would run, without
// its loader: the code `node server.ts` runs on Node 24); this process is the
// one and only client (bench/load.ts). With taskset available, the client is
// pinned to CPU 0 and the servers to CPU 1, so the server under test has one
// core to itself and never competes with its load. Scenarios run A B [C] A B
// [C] ...: ours, ws, [tcp] in turn, round after round, so that a drift of the
// machine hits both sides alike. Before each run the servers must be idle.
//
// Echo and round trip have two more sides, when Bun is installed (the test
// runtimes: node test/runtimes/ensure.mjs): "bun", an echo server on
// Bun.serve (bench/bun-server.ts, uWebSockets in native code, the fastest
// thing a user could deploy on Bun), and "ours-on-bun", server.ts with the
// same flags as "ours" but run by `bun server.ts`. They take their turn in
// the same rounds (ours, ws, bun, ours-on-bun, [tcp]), and each scenario also
// reports ours/bun and ours-on-bun/bun round by round. Without Bun they are
// skipped with a message; tiny mode runs them in its first echo scenario only.
//
// A reconnect storm (#16 item 6) runs against ours and ws:
//   storm       N clients come back at once, as pages do after their server
//               restarted: each waits the page's own jittered delay
//               (client.ts's reconnectDelay, one seeded schedule for both
//               servers), tries, and on failure waits its next, longer delay.
//               Reported: the time until the last is back, handshakes per
//               second over that time and per server CPU-second, attempts
//               refused with a status (a documented limit) and attempts that
//               failed otherwise (reset, timed out, dropped by a full accept
//               queue); the target ours ≥ 1.0× ws in handshakes per second.
//               Its rate swings more from run to run than an echo's (the
//               same server took 2.6 to 3.1 CPU-seconds for the same 10,000
//               handshakes), so it has rounds of its own: 3 quick, 7 full.
//
// Two kinds have a third side, "tcp", a floor rather than a ceiling:
// bench/tcp-floor.ts, the least node:net itself spends on the same job, with
// no WebSocket, HTTP or JSON; each scenario also reports ours/tcp and ws/tcp
// round by round ("against the floor", below the main table):
//   classroom   #16's busy classroom: N chat clients, one sender saying R
//               messages a second (runFanout's paced phase alone), so that
//               each broadcast leaves in its own turn and per-delivery costs
//               dominate: server CPU per delivery and deliveries per server
//               CPU-second, and the target ours ≥ 2× ws per CPU-second (as
//               the room's targets: a miss fails quick and full runs). The
//               floor broadcasts fixed-size messages of a delivery's size to
//               as many plain TCP clients at the same pace. A server uses a
//               few percent of a core here, and /proc counts CPU in 10 ms
//               ticks: the window is long (quick: 15 s a side and round), and
//               the table says how many ticks the figures rest on.
//   memory      RSS per idle connection (idle-N); the floor holds plain TCP
//               sockets in a Set, a 'close' and an 'error' listener each.
//               --full adds 19,900: as many as one process may hold here
//               (20,000 descriptors, less 100 of its own); the load holds the
//               other ends in this one process, which fits under the same
//               limit, from several loopback source addresses.
//
// Reported per scenario: each side's absolute figures (median of the rounds),
// the ratio ours/ws per round (median, min, max), the CPU seconds the server
// process used in the measured window (/proc/PID/stat utime+stime), and the
// correctness checks (echo bytes equal; every fan-out delivery once, in order).
// quick and full write docs/bench.json and docs/bench.svg.
//
// The chat room at scale (issue #16) is measured on server.ts alone: ws has
// no chat room, so there is nothing to divide by. Each kind reports absolute
// figures, its correctness checks, and the issue's targets, met or missed (a
// missed target fails quick and full runs; tiny runs are too small for them
// to mean anything, so there they are only shown):
//   join-storm          N chat clients connect at once: the time until the last is welcomed, and the
//                       presence frames and bytes each is sent until the server falls quiet (A)
//   first-visit         N new clients onto a room that keeps M messages: bytes and frames each (B)
//   history-startup     start-up on a --history file of M messages, against an empty one: time and RSS (C)
//   history-compaction  M messages said with --history-size S: what the file holds afterwards (D)
//
// Fan-out across servers on Redis (issue #14) is measured on server.ts alone
// too, one setup against the other: one server.ts without --redis, then two
// server.ts processes on one Redis (redis-server, a fresh one for every run),
// the same N chat clients alternating between the two, the sender on the
// first. Each run has a paced phase (R messages a second: latency below
// saturation) and a saturated one (W messages in flight, as in the fan-out
// above). Reported: deliveries/s, p50/p99 from send to delivery, the servers'
// CPU per delivery and Redis's CPU per message (/proc/PID/stat of
// redis-server), as two/one ratios round by round and absolute figures. Redis
// is pinned with the servers (CPU 1): both setups have one core, so the
// ratios are what Redis costs, not what a second machine would add. Without
// /usr/bin/redis-server the kind is skipped, with a message.
//   fanout-redis        N clients, one node against two nodes on Redis

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { connect } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  FLOOR_MESSAGE_BYTES,
  destroyAll,
  echoWindow,
  openIdle,
  pacedCapacity,
  runEcho,
  runFanout,
  runFloorBroadcast,
  runStorm,
  type Conn,
  type DeliveryOutcome,
  type FanoutPhase,
  type Target,
} from "./load.ts";
import { runCrowd, sayMany, type CrowdResult } from "./room-load.ts";
import { KiB, MiB, sizeName, thousands } from "./format.ts";
import { renderChart, type ChartRow } from "./svg.ts";
import { readProcessMemory, rssOf } from "../test/support/memory.ts";
import { haveRedis, redisServerPath } from "../test/support/redis.ts";
import { compiledPath, freePort } from "../test/support/spawn.ts";
import { HISTORY_PAGE } from "../server.ts";
import { reconnectDelay } from "../client.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// ── Options ─────────────────────────────────────────────────────────────────

type Mode = "tiny" | "quick" | "full";

interface Options {
  mode: Mode;
  rounds: number | undefined;
  only: RegExp | undefined;
  json: string | undefined;
  svg: string | undefined;
  save: boolean;
  pin: boolean;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    mode: "quick",
    rounds: undefined,
    only: undefined,
    json: undefined,
    svg: undefined,
    save: true,
    pin: true,
  };
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    const value = () => {
      const next = argv[++index];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      return next;
    };
    if (argument === "--quick" || argument === "--full" || argument === "--tiny")
      options.mode = argument.slice(2) as Mode;
    else if (argument === "--rounds") options.rounds = Math.max(1, Math.min(20, Number(value()) || 1));
    else if (argument === "--only") options.only = new RegExp(value());
    else if (argument === "--json") options.json = value();
    else if (argument === "--svg") options.svg = value();
    else if (argument === "--no-save") options.save = false;
    else if (argument === "--no-pin") options.pin = false;
    else if (argument === "--help" || argument === "-h") {
      process.stdout.write(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n\n", 1)[0]! + "\n");
      process.exit(0);
    } else throw new Error(`unknown option ${argument} (see --help)`);
  }
  if (options.save && options.mode !== "tiny") {
    options.json ??= join(root, "docs", "bench.json");
    options.svg ??= join(root, "docs", "bench.svg");
  }
  return options;
}

interface Settings {
  rounds: number;
  /** Rounds that also run the TCP ceiling. */
  tcpRounds: number;
  /** Whether deflate scenarios get a TCP ceiling too (it echoes the compressed frames). */
  ceilingForDeflate: boolean;
  /** Echo and round-trip scenarios that also run against Bun.serve and server.ts on Bun (when Bun is there). */
  withBun: "all" | "first-echo";
  echoWarmupMs: number;
  echoMeasureMs: number;
  fanoutWarmupMs: number;
  fanoutMeasureMs: number;
  fanoutClients: number[];
  fanoutWindow: number;
  memoryConnections: number[];
  handshakeConcurrency: number;
  classroom: ClassroomSettings;
  /** Clients of the reconnect storm. */
  stormClients: number;
  /** Rounds of the reconnect storm: its handshake rate swings more from run to run than an echo's. */
  stormRounds: number;
  room: RoomSettings;
  redisFanout: RedisFanoutSettings;
}

/** Chat fan-out below saturation (#16 item 4): R messages a second, each broadcast in its own turn. */
interface ClassroomSettings {
  clients: number;
  /** The whole room's messages a second (one sender). */
  ratePerSecond: number;
  warmupMs: number;
  /** Per side and round: long enough for a few percent of a core to be many clock ticks (10 ms each). */
  measureMs: number;
}

/** Fan-out across two server.ts processes on one Redis, against one without (#14). */
interface RedisFanoutSettings {
  clients: number;
  /** Messages a second in the paced phase. */
  ratePerSecond: number;
  /** Both phases: long enough for Redis's CPU to be many clock ticks (10 ms each). */
  warmupMs: number;
  measureMs: number;
}

/** The chat room at scale (#16): server.ts only. */
interface RoomSettings {
  rounds: number;
  /** Chat clients of the join storm, every one connecting at once. */
  stormClients: number;
  firstVisitClients: number;
  firstVisitMessages: number;
  historyFileMessages: number;
  compactionMessages: number;
  compactionHistorySize: number;
  /** A crowd is counted until the server has sent nothing for this long (its presence interval is 1 s). */
  quietMs: number;
  /** A bound on each run of a room scenario. */
  timeoutMs: number;
  /** Whether a missed #16 target fails the run. */
  assertTargets: boolean;
}

/** The descriptors a process needs besides its connections: Node's own
 * (about 20), the pipes of a child's output, the listening socket. */
const IDLE_FD_MARGIN = 100;
/** As many idle connections as one process may hold here: 20,000 descriptors
 * a process (ulimit -n), less IDLE_FD_MARGIN. The load generator holds the
 * other end of each in one process too, under the same limit. */
const MOST_IDLE_CONNECTIONS = 19_900;
/** Up to this many idle connections come from 127.0.0.1, as they always
 * have; beyond, from 127.0.0.2 onwards (CONNECTIONS_PER_SOURCE_ADDRESS each). */
const IDLE_FROM_ONE_ADDRESS = 10_000;

const settingsFor: Record<Mode, Settings> = {
  tiny: {
    rounds: 1,
    tcpRounds: 1,
    ceilingForDeflate: true,
    withBun: "first-echo",
    echoWarmupMs: 20,
    echoMeasureMs: 80,
    fanoutWarmupMs: 20,
    fanoutMeasureMs: 100,
    fanoutClients: [20],
    fanoutWindow: 10,
    memoryConnections: [50],
    handshakeConcurrency: 10,
    classroom: { clients: 20, ratePerSecond: 50, warmupMs: 50, measureMs: 250 },
    stormClients: 200,
    stormRounds: 1,
    room: {
      rounds: 1,
      stormClients: 150,
      firstVisitClients: 60,
      firstVisitMessages: 150,
      historyFileMessages: 5_000,
      compactionMessages: 1_200,
      compactionHistorySize: 100,
      quietMs: 1200,
      timeoutMs: 20_000,
      assertTargets: false,
    },
    redisFanout: { clients: 20, ratePerSecond: 100, warmupMs: 50, measureMs: 200 },
  },
  quick: {
    rounds: 2,
    tcpRounds: 1,
    ceilingForDeflate: false,
    withBun: "all",
    echoWarmupMs: 200,
    echoMeasureMs: 700,
    fanoutWarmupMs: 200,
    fanoutMeasureMs: 800,
    fanoutClients: [100, 1000],
    fanoutWindow: 10,
    memoryConnections: [1000, 10_000],
    handshakeConcurrency: 100,
    // 15 s a side: at 1,500 deliveries/s a server uses a few percent of a core, some 40 ticks of CPU.
    classroom: { clients: 100, ratePerSecond: 15, warmupMs: 1000, measureMs: 15_000 },
    stormClients: 10_000,
    stormRounds: 3,
    room: {
      rounds: 1, // each round of a 10,000-client storm is a fresh server and half a minute
      stormClients: 10_000,
      firstVisitClients: 500,
      firstVisitMessages: 1000,
      historyFileMessages: 2_000_000,
      compactionMessages: 20_000,
      compactionHistorySize: 100,
      quietMs: 1500,
      timeoutMs: 120_000,
      assertTargets: true,
    },
    redisFanout: { clients: 100, ratePerSecond: 300, warmupMs: 300, measureMs: 1500 },
  },
  full: {
    rounds: 3,
    tcpRounds: 3,
    ceilingForDeflate: true,
    withBun: "all",
    echoWarmupMs: 1000,
    echoMeasureMs: 3000,
    fanoutWarmupMs: 1000,
    fanoutMeasureMs: 3000,
    fanoutClients: [100, 1000],
    fanoutWindow: 10,
    memoryConnections: [1000, 10_000, MOST_IDLE_CONNECTIONS],
    handshakeConcurrency: 100,
    classroom: { clients: 100, ratePerSecond: 15, warmupMs: 3000, measureMs: 30_000 },
    stormClients: 10_000,
    stormRounds: 7,
    room: {
      rounds: 3,
      stormClients: 10_000,
      firstVisitClients: 500,
      firstVisitMessages: 1000,
      historyFileMessages: 2_000_000,
      compactionMessages: 20_000,
      compactionHistorySize: 100,
      quietMs: 1500,
      timeoutMs: 120_000,
      assertTargets: true,
    },
    redisFanout: { clients: 100, ratePerSecond: 300, warmupMs: 1000, measureMs: 3000 },
  },
};

// ── Scenarios ───────────────────────────────────────────────────────────────

export interface EchoScenario {
  kind: "echo";
  id: string;
  title: string;
  connections: number;
  size: number;
  type: "text" | "binary";
  deflate: boolean;
  window: number;
}
interface LatencyScenario {
  kind: "latency";
  id: string;
  title: string;
  size: number;
}
interface FanoutScenario {
  kind: "fanout";
  id: string;
  title: string;
  clients: number;
}
/** #16 item 4: R messages a second to N chat clients, CPU per delivery; and the TCP floor's. */
interface ClassroomScenario {
  kind: "classroom";
  id: string;
  title: string;
  clients: number;
  ratePerSecond: number;
}
interface StormScenario {
  kind: "storm";
  id: string;
  title: string;
  clients: number;
}
interface MemoryScenario {
  kind: "memory";
  id: string;
  title: string;
  connections: number;
}
interface JoinStormScenario {
  kind: "join-storm";
  id: string;
  title: string;
  clients: number;
}
interface FirstVisitScenario {
  kind: "first-visit";
  id: string;
  title: string;
  clients: number;
  messages: number;
}
interface HistoryStartupScenario {
  kind: "history-startup";
  id: string;
  title: string;
  messages: number;
}
interface HistoryCompactionScenario {
  kind: "history-compaction";
  id: string;
  title: string;
  messages: number;
  historySize: number;
}
/** The chat room at scale: server.ts only, absolute figures and #16's targets. */
type RoomScenario = JoinStormScenario | FirstVisitScenario | HistoryStartupScenario | HistoryCompactionScenario;
/** Fan-out on one server.ts against two on one Redis (#14): server.ts only, two/one. */
interface FanoutRedisScenario {
  kind: "fanout-redis";
  id: string;
  title: string;
  clients: number;
  ratePerSecond: number;
}
export type Scenario =
  | EchoScenario
  | LatencyScenario
  | FanoutScenario
  | ClassroomScenario
  | StormScenario
  | MemoryScenario
  | RoomScenario
  | FanoutRedisScenario;

const roomKinds: ReadonlySet<Scenario["kind"]> = new Set([
  "join-storm",
  "first-visit",
  "history-startup",
  "history-compaction",
]);

function isRoomScenario(scenario: Scenario): scenario is RoomScenario {
  return roomKinds.has(scenario.kind);
}

function echoScenario(connections: number, size: number, type: "text" | "binary", deflate: boolean): EchoScenario {
  return {
    kind: "echo",
    id: `echo-${connections}c-${size}-${type}${deflate ? "-deflate" : ""}`,
    title: `echo ${connections}×${sizeName(size)} ${type}${deflate ? " deflate" : ""}`,
    connections,
    size,
    type,
    deflate,
    window: echoWindow(connections, size),
  };
}

function planFor(mode: Mode, settings: Settings): Scenario[] {
  const echo: EchoScenario[] = [];
  if (mode === "full") {
    for (const deflate of [false, true]) {
      for (const size of [16, KiB, 64 * KiB, MiB]) {
        // 1 MiB on 4 connections too: #16's 1 MiB target names 1, 4 and 64.
        for (const connections of size === MiB ? [1, 4, 64] : [1, 64])
          for (const type of ["text", "binary"] as const) echo.push(echoScenario(connections, size, type, deflate));
      }
    }
  } else if (mode === "quick") {
    // Every size on 1 and 64 connections (1 MiB on 4 too); text and binary
    // alternate so that each size and each connection count is seen with both.
    echo.push(
      echoScenario(1, 16, "text", false),
      echoScenario(64, 16, "binary", false),
      echoScenario(1, KiB, "binary", false),
      echoScenario(64, KiB, "text", false),
      // #16's small-message target against Bun.serve, in both types: Bun.serve hands a text message to
      // JavaScript as a string and encodes the reply again, a binary one as bytes, so the two differ threefold.
      echoScenario(64, KiB, "binary", false),
      echoScenario(1, 64 * KiB, "text", false),
      echoScenario(64, 64 * KiB, "binary", false),
      echoScenario(1, MiB, "binary", false),
      echoScenario(4, MiB, "binary", false), // #16's 1 MiB target names 1, 4 and 64 connections
      echoScenario(64, MiB, "text", false),
      echoScenario(64, KiB, "text", true),
      echoScenario(1, 64 * KiB, "binary", true),
      echoScenario(64, 64 * KiB, "text", true),
      echoScenario(1, MiB, "text", true),
    );
  } else {
    echo.push(
      echoScenario(1, 16, "text", false),
      echoScenario(4, 64 * KiB, "binary", false),
      echoScenario(2, 2 * KiB, "text", true),
    );
  }
  const others: Scenario[] = [
    { kind: "latency", id: "latency-16", title: "round trip 1×16 B text", size: 16 },
    ...settings.fanoutClients.map((clients): FanoutScenario => ({
      kind: "fanout",
      id: `fanout-${clients}`,
      title: `chat fan-out to ${clients}`,
      clients,
    })),
    {
      kind: "classroom",
      id: `classroom-${settings.classroom.clients}x${settings.classroom.ratePerSecond}`,
      title: `busy classroom: ${settings.classroom.clients} clients × ${settings.classroom.ratePerSecond} msg/s`,
      clients: settings.classroom.clients,
      ratePerSecond: settings.classroom.ratePerSecond,
    },
    {
      kind: "storm",
      id: `storm-${settings.stormClients}`,
      title: `reconnect storm: ${thousands(settings.stormClients)} clients at once`,
      clients: settings.stormClients,
    },
    ...settings.memoryConnections.map((connections): MemoryScenario => ({
      kind: "memory",
      id: `idle-${connections}`,
      title: `${connections} idle connections`,
      connections,
    })),
  ];
  const room = settings.room;
  const roomScenarios: RoomScenario[] = [
    {
      kind: "join-storm",
      id: `join-storm-${room.stormClients}`,
      title: `join storm: ${thousands(room.stormClients)} chat clients at once`,
      clients: room.stormClients,
    },
    {
      kind: "first-visit",
      id: `first-visit-${room.firstVisitClients}x${room.firstVisitMessages}`,
      title: `first visit: ${thousands(room.firstVisitClients)} new clients, ${thousands(room.firstVisitMessages)} messages kept`,
      clients: room.firstVisitClients,
      messages: room.firstVisitMessages,
    },
    {
      kind: "history-startup",
      id: `history-startup-${room.historyFileMessages}`,
      title: `start-up on a --history file of ${thousands(room.historyFileMessages)} messages`,
      messages: room.historyFileMessages,
    },
    {
      kind: "history-compaction",
      id: `history-compaction-${room.compactionMessages}`,
      title: `${thousands(room.compactionMessages)} messages said with --history-size ${room.compactionHistorySize}`,
      messages: room.compactionMessages,
      historySize: room.compactionHistorySize,
    },
  ];
  const redis = settings.redisFanout;
  const fanoutRedis: FanoutRedisScenario = {
    kind: "fanout-redis",
    id: `fanout-redis-${redis.clients}`,
    title: `chat fan-out to ${thousands(redis.clients)}, two nodes on Redis vs one`,
    clients: redis.clients,
    ratePerSecond: redis.ratePerSecond,
  };
  return [...echo, ...others, fanoutRedis, ...roomScenarios];
}

// ── Server processes ────────────────────────────────────────────────────────

type Side = "ours" | "ws" | "tcp" | "bun" | "ours-on-bun";
/** The fan-out on Redis compares two setups of server.ts, not two servers. */
type NodeSetup = "one-node" | "two-nodes";
type RunSide = Side | NodeSetup;

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Bun, from the test runtimes (node test/runtimes/ensure.mjs installs it). */
const bunPath = join(root, "test", "runtimes", "node_modules", ".bin", "bun");

/** Bun's version if it is installed and runs, else undefined (its sides are then skipped). */
function bunVersion(): string | undefined {
  if (!existsSync(bunPath)) return undefined;
  const result = spawnSync(bunPath, ["--version"], { encoding: "utf8", timeout: 30_000 });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** The sides that run under Bun rather than under Node. */
function runsOnBun(side: Side): boolean {
  return side === "bun" || side === "ours-on-bun";
}

function serverCommand(side: Side, deflate: boolean): string[] {
  switch (side) {
    case "ours":
    case "ours-on-bun":
      return [
        "server.ts",
        "--port",
        "0",
        "--keepalive-interval",
        "0",
        "--message-rate",
        "1000000",
        "--message-burst",
        "1000000",
        "--max-connections-per-ip",
        "100000",
        "--max-connections",
        "100000",
        "--max-buffered",
        String(32 * MiB),
        ...(deflate ? [] : ["--no-deflate"]),
      ];
    case "ws":
      return ["bench/ws-server.ts", "--port", "0", ...(deflate ? ["--deflate"] : [])];
    case "bun":
      return ["bench/bun-server.ts", "--port", "0", ...(deflate ? ["--deflate"] : [])];
    case "tcp":
      return ["bench/tcp-echo.ts", "--port", "0"];
  }
}

/** The "tcp" side of the busy classroom and of idle connections: not the echo ceiling but a floor. */
function floorCommand(mode: "broadcast" | "idle"): string[] {
  return ["bench/tcp-floor.ts", "--port", "0", `--${mode}`];
}

class ServerProcess {
  readonly side: Side;
  readonly child: ChildProcess;
  readonly pid: number;
  port = 0;
  /** From the spawn to the listening line on its standard output. */
  startSeconds = 0;
  private output = "";

  private constructor(side: Side, child: ChildProcess) {
    this.side = side;
    this.child = child;
    this.pid = child.pid ?? 0;
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString("utf8")).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
  }

  /** `args`: server.ts's command line instead of the benchmark's usual one (the room scenarios). */
  static async start(side: Side, deflate: boolean, pin: boolean, args?: string[]): Promise<ServerProcess> {
    const [file, ...options] = args ?? serverCommand(side, deflate);
    const program = runsOnBun(side) ? [bunPath, file!] : [process.execPath, compiledPath(join(root, file!))];
    const serverArgs = [...program, ...options];
    const command = pin ? ["taskset", "-c", "1", ...serverArgs] : serverArgs;
    const spawned = performance.now();
    const child = spawn(command[0]!, command.slice(1), { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    const server = new ServerProcess(side, child);
    const exited = new Promise<never>((_resolve, reject) =>
      child.once("exit", (code) => reject(new Error(`${side} server exited (${code}): ${server.output}`))),
    );
    exited.catch(() => {});
    const listening = new Promise<number>((resolvePromise) => {
      const check = () => {
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(server.output);
        if (match) {
          child.stdout?.off("data", check);
          resolvePromise(Number(match[1]));
        }
      };
      child.stdout?.on("data", check);
    });
    const timeout = new Promise<never>((_resolve, reject) =>
      setTimeout(() => reject(new Error(`${side} server did not start: ${server.output}`)), 30_000).unref(),
    );
    try {
      server.port = await Promise.race([listening, exited, timeout]);
      server.startSeconds = (performance.now() - spawned) / 1000;
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    return server;
  }

  get target(): Target {
    return { host: "127.0.0.1", port: this.port };
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** utime + stime of the whole process (all threads), in clock ticks. */
  cpuTicks(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  }

  /** Resident set size in bytes (test/support's reader: it throws rather than report 0). */
  rss(): number {
    return rssOf(this.pid);
  }

  /** The highest RSS so far (VmHWM), in bytes; NaN if it cannot be read. */
  peakRss(): number {
    return readProcessMemory(this.pid)?.peakRss ?? Number.NaN;
  }

  lastOutput(): string {
    return this.output;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((resolvePromise) => this.child.once("exit", () => resolvePromise()));
    this.child.kill("SIGKILL");
    await exited;
  }
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, milliseconds));
}

/** A process whose CPU the benchmark reads: a server, or Redis. */
interface CpuSource {
  readonly alive: boolean;
  cpuTicks(): number;
}

/** Waits until every server has stopped using CPU (at most one tick in 100 ms), for at most `maxMs`. */
async function settle(servers: CpuSource[], maxMs = 5000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let before = servers.map((server) => (server.alive ? server.cpuTicks() : 0));
  while (Date.now() < deadline) {
    await sleep(100);
    const now = servers.map((server) => (server.alive ? server.cpuTicks() : 0));
    if (now.every((ticks, index) => ticks - before[index]! <= 1)) return;
    before = now;
  }
}

// ── Runs ────────────────────────────────────────────────────────────────────

interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

interface RunRecord {
  side: RunSide;
  round: number;
  ok: boolean;
  error?: string;
  metrics: Record<string, number>;
  checks: Check[];
  /** The #16 targets (room scenarios): reported apart from the checks, which say the run itself was sound. */
  targets?: Check[];
}

/** Busy clock ticks of the whole machine (all CPUs), from /proc/stat. */
function machineBusyTicks(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0); // user..steal
  return total - fields[3]! - fields[4]!; // minus idle and iowait
}

function ownTicks(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Measures, between the two hooks, the server's CPU and the CPU used by
 * everything else on the machine (neither the server nor this client): on a
 * shared machine that is the noise under the figures. */
function cpuMeter(server: ServerProcess) {
  let before = { server: 0, own: 0, machine: 0, at: 0 };
  let after = before;
  const sample = () => ({
    server: server.cpuTicks(),
    own: ownTicks(),
    machine: machineBusyTicks(),
    at: performance.now(),
  });
  const wall = () => (after.at - before.at) / 1000;
  return {
    onMeasureStart: () => {
      before = sample();
    },
    onMeasureEnd: () => {
      after = sample();
    },
    seconds: () => (after.server - before.server) / CLOCK_TICKS,
    /** The server's CPU in clock ticks: what the figures rest on (a difference of two truncated counts: ±1). */
    ticks: () => after.server - before.server,
    percent: () => ((after.server - before.server) / CLOCK_TICKS / wall()) * 100,
    /** CPU used by other processes, in % of one core. */
    noisePercent: () => {
      const foreign = after.machine - before.machine - (after.server - before.server) - (after.own - before.own);
      return (Math.max(0, foreign) / CLOCK_TICKS / wall()) * 100;
    },
  };
}

async function runEchoOn(
  server: ServerProcess,
  scenario: EchoScenario | LatencyScenario,
  settings: Settings,
): Promise<RunRecord> {
  const meter = cpuMeter(server);
  const latency = scenario.kind === "latency";
  const result = await runEcho({
    target: server.target,
    raw: server.side === "tcp",
    connections: latency ? 1 : scenario.connections,
    size: scenario.size,
    kind: latency ? "text" : scenario.type,
    deflate: latency ? false : scenario.deflate,
    window: latency ? 1 : scenario.window,
    warmupMs: settings.echoWarmupMs,
    durationMs: settings.echoMeasureMs,
    recordLatency: latency,
    onMeasureStart: meter.onMeasureStart,
    onMeasureEnd: meter.onMeasureEnd,
  });
  const serverCpu = meter.seconds();
  const ok = result.errors === 0 && result.missing === 0 && result.verified > 0;
  const metrics: Record<string, number> = {
    messagesPerSecond: result.messagesPerSecond,
    mebibytesPerSecond: result.bytesPerSecond / MiB,
    messagesPerCpuSecond: serverCpu > 0 ? result.messages / serverCpu : Number.NaN,
    serverCpuSeconds: serverCpu,
    serverCpuPercent: meter.percent(),
    clientCpuPercent: (result.clientCpuSeconds / result.seconds) * 100,
    noisePercent: meter.noisePercent(),
    verified: result.verified,
    inflatedToCheck: result.inflated,
  };
  if (result.latency) {
    metrics.p50 = result.latency.p50;
    metrics.p99 = result.latency.p99;
    metrics.samples = result.latency.count;
  }
  return {
    side: server.side,
    round: 0,
    ok,
    metrics,
    checks: [
      {
        name: server.side === "tcp" ? "echo bytes equal (raw frames back)" : "echo bytes equal (type, RSV1, payload)",
        ok,
        detail: ok
          ? `${result.verified} replies checked`
          : `${result.errors} errors, ${result.missing} missing: ${result.firstErrors.join("; ")}`,
      },
    ],
  };
}

async function runFanoutOn(
  server: ServerProcess,
  scenario: FanoutScenario,
  settings: Settings,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  const meter = cpuMeter(server);
  const result = await runFanout({
    target: server.target,
    clients: scenario.clients,
    window: settings.fanoutWindow,
    warmupMs: settings.fanoutWarmupMs,
    durationMs: settings.fanoutMeasureMs,
    maxMessages: 200_000,
    onMeasureStart: meter.onMeasureStart,
    onMeasureEnd: meter.onMeasureEnd,
  });
  const ok = result.everyDeliveryOnceInOrder && result.errors === 0;
  return {
    conns: result.conns,
    record: {
      side: server.side,
      round: 0,
      ok,
      metrics: deliveryMetrics(result, meter),
      checks: [everyDeliveryCheck(result, ok)],
    },
  };
}

/** What a run of one sender to many clients measured (the fan-out, the busy classroom): its pace, its
 * latencies, and the server's CPU for it. */
function deliveryMetrics(
  result: FanoutPhase & DeliveryOutcome,
  meter: ReturnType<typeof cpuMeter>,
): Record<string, number> {
  const serverCpu = meter.seconds();
  return {
    deliveriesPerSecond: result.deliveriesPerSecond,
    deliveriesPerCpuSecond: serverCpu > 0 ? result.deliveries / serverCpu : Number.NaN,
    p50: result.latency.p50,
    p99: result.latency.p99,
    messages: result.messages,
    said: result.said,
    serverCpuSeconds: serverCpu,
    serverCpuPercent: meter.percent(),
    clientCpuPercent: (result.clientCpuSeconds / result.seconds) * 100,
    noisePercent: meter.noisePercent(),
    connectSeconds: result.connectSeconds,
  };
}

/** The check of such a run; `how` says more of how it was checked, `why` more of why it failed. */
function everyDeliveryCheck(result: DeliveryOutcome, ok: boolean, how = "", why = ""): Check {
  return {
    name: "every client got every message once, in order",
    ok,
    detail: ok
      ? `${result.said} messages × ${result.clients} clients${how}`
      : `${result.errors} errors: ${result.firstErrors.join("; ")}${why}`,
  };
}

/** One side of the busy classroom. ours and ws: runFanout's paced phase alone
 * (one sender, R messages a second, every delivery checked); tcp: the same
 * pace on bench/tcp-floor.ts --broadcast, with messages of a delivery's size. */
async function runClassroomOn(
  server: ServerProcess,
  scenario: ClassroomScenario,
  settings: Settings,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  const meter = cpuMeter(server);
  const timing = settings.classroom;
  const paced = {
    ratePerSecond: scenario.ratePerSecond,
    warmupMs: timing.warmupMs,
    durationMs: timing.measureMs,
    onMeasureStart: meter.onMeasureStart,
    onMeasureEnd: meter.onMeasureEnd,
  };
  const result =
    server.side === "tcp"
      ? await runFloorBroadcast({
          target: server.target,
          clients: scenario.clients,
          size: FLOOR_MESSAGE_BYTES,
          ...paced,
        })
      : await runFanout({
          target: server.target,
          clients: scenario.clients,
          window: settings.fanoutWindow,
          warmupMs: 0,
          durationMs: 0,
          maxMessages: pacedCapacity(paced),
          // The joins are announced to everyone: not part of the fan-out.
          beforeLoad: () => settle([server]),
          paced,
          saturated: false,
        });
  const serverCpu = meter.seconds();
  const ok = result.everyDeliveryOnceInOrder && result.errors === 0 && server.alive;
  return {
    conns: result.conns,
    record: {
      side: server.side,
      round: 0,
      ok,
      metrics: {
        ...deliveryMetrics(result, meter),
        serverCpuPerDelivery: result.deliveries > 0 ? (serverCpu * 1e6) / result.deliveries : Number.NaN,
        serverCpuTicks: meter.ticks(),
        deliveries: result.deliveries,
        measuredSeconds: result.seconds,
      },
      checks: [
        everyDeliveryCheck(
          result,
          ok,
          server.side === "tcp" ? `, ${FLOOR_MESSAGE_BYTES} bytes each, compared byte for byte` : "",
          server.alive ? "" : "; the server died",
        ),
      ],
    },
  };
}

/** Open descriptors of a process (its connections among them), or NaN if they cannot be counted. */
function descriptorsOf(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** One side of the reconnect storm: the server has just started, and every client comes back at once. */
async function runStormOn(
  server: ServerProcess,
  scenario: StormScenario,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  const meter = cpuMeter(server);
  meter.onMeasureStart();
  const storm = await runStorm(
    server.target,
    scenario.clients,
    {
      seed: 6455,
      perSourceAddress: scenario.clients > IDLE_FROM_ONE_ADDRESS ? CONNECTIONS_PER_SOURCE_ADDRESS : 0,
      attemptTimeoutMs: 10_000,
      timeoutMs: 120_000,
    },
    reconnectDelay,
  );
  meter.onMeasureEnd();
  const serverCpu = meter.seconds();
  const open = storm.conns.filter((conn) => !conn.socket.destroyed).length;
  const ok = open === scenario.clients && storm.refused === 0 && server.alive;
  return {
    conns: storm.conns,
    record: {
      side: server.side,
      round: 0,
      ok,
      metrics: {
        backSeconds: storm.backSeconds,
        handshakesPerSecond: scenario.clients / storm.backSeconds,
        handshakesPerCpuSecond: serverCpu > 0 ? scenario.clients / serverCpu : Number.NaN,
        failedAttempts: storm.failedAttempts,
        refused: storm.refused,
        serverCpuSeconds: serverCpu,
        serverCpuPercent: meter.percent(),
        clientCpuPercent: (storm.clientCpuSeconds / storm.backSeconds) * 100,
        noisePercent: meter.noisePercent(),
      },
      checks: [
        { name: "every client came back", ok: open === scenario.clients, detail: `${open} of ${scenario.clients}` },
        {
          name: "nobody was refused (no limit is near)",
          ok: storm.refused === 0,
          detail: `${storm.refused} attempts answered with a status`,
        },
      ],
    },
  };
}

async function runMemoryOn(
  server: ServerProcess,
  scenario: MemoryScenario,
  settings: Settings,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  // The floor (tcp) takes plain TCP connections: no handshake, so no handshake figures.
  const raw = server.side === "tcp";
  // Warm up first (JIT, parser pools, the first garbage collections), so that
  // the baseline is a server that has already served connections.
  const warm = await openIdle(server.target, Math.min(200, scenario.connections), settings.handshakeConcurrency, {
    raw,
  });
  destroyAll(warm.conns);
  await settle([server]);
  await sleep(300);
  const rssBefore = server.rss();
  const descriptorsBefore = descriptorsOf(server.pid);
  const meter = cpuMeter(server);
  meter.onMeasureStart();
  const idle = await openIdle(server.target, scenario.connections, settings.handshakeConcurrency, {
    raw,
    perSourceAddress: scenario.connections > IDLE_FROM_ONE_ADDRESS ? CONNECTIONS_PER_SOURCE_ADDRESS : 0,
  });
  meter.onMeasureEnd();
  await settle([server]);
  await sleep(500);
  const rssAfter = server.rss();
  const held = descriptorsOf(server.pid) - descriptorsBefore;
  const serverCpu = meter.seconds();
  const open = idle.conns.filter((conn) => !conn.socket.destroyed).length;
  const ok = open === scenario.connections && server.alive;
  // A connection is accepted by the kernel before the server takes it: the floor has no
  // handshake to prove it did, so every side is asked how many descriptors it holds.
  const allHeld = Number.isNaN(held) || held >= scenario.connections;
  return {
    conns: idle.conns,
    record: {
      side: server.side,
      round: 0,
      ok: ok && allHeld,
      metrics: {
        bytesPerConnection: (rssAfter - rssBefore) / scenario.connections,
        rssBefore,
        rssAfter,
        handshakesPerSecond: raw ? Number.NaN : idle.handshakesPerSecond,
        handshakesPerCpuSecond: !raw && serverCpu > 0 ? scenario.connections / serverCpu : Number.NaN,
        descriptorsHeld: held,
        serverCpuSeconds: serverCpu,
        serverCpuPercent: meter.percent(),
        clientCpuPercent: (idle.clientCpuSeconds / idle.seconds) * 100,
        noisePercent: meter.noisePercent(),
      },
      checks: [
        { name: "every connection opened and stayed open", ok, detail: `${open} of ${scenario.connections} open` },
        {
          name: "the server holds every connection",
          ok: allHeld,
          detail: Number.isNaN(held)
            ? `its descriptors could not be counted (/proc/${server.pid}/fd)`
            : `${held} more descriptors than before`,
        },
      ],
    },
  };
}

// ── The chat room at scale (#16), server.ts only ────────────────────────────

const CHAT_LINE = "A chat line of about sixty characters, the size people type.";
/** Each loopback source address (127.0.0.2 onwards) opens at most this many
 * connections: its ephemeral ports (32768–60999) are then never short, even
 * with the TIME_WAITs of the scenarios before. */
const CONNECTIONS_PER_SOURCE_ADDRESS = 4000;

/** server.ts for the room scenarios: no keepalive, no connection limit below
 * 20,000 (the file descriptors of one process here), no rate limit. */
function roomServerArgs(extra: string[]): string[] {
  return [
    "server.ts",
    "--port",
    "0",
    "--keepalive-interval",
    "0",
    "--max-connections",
    "20000",
    "--max-connections-per-ip",
    "20000",
    "--message-rate",
    "1000000",
    "--message-burst",
    "1000000",
    ...extra,
  ];
}

function seconds(value: number): string {
  return `${value.toFixed(2)} s`;
}

function crowdChecks(result: CrowdResult, server: ServerProcess, settings: Settings): Check[] {
  const welcomed = result.opened === result.clients && result.welcomed === result.clients && result.errors === 0;
  return [
    {
      name: "every client connected and was welcomed once, the welcome first",
      ok: welcomed && server.alive,
      detail: welcomed
        ? `${thousands(result.welcomed)} of ${thousands(result.clients)} welcomed`
        : `${thousands(result.opened)} opened, ${thousands(result.welcomed)} welcomed, ${result.errors} errors: ${result.firstErrors.join("; ")}${server.alive ? "" : "; the server died"}`,
    },
    {
      name: `the server fell quiet (nothing sent for ${settings.room.quietMs / 1000} s)`,
      ok: result.quiet,
      detail: result.quiet
        ? `last frame at ${seconds(result.lastFrameSeconds)}`
        : `still sending after ${settings.room.timeoutMs / 1000} s`,
    },
  ];
}

function crowdMetrics(result: CrowdResult, meter: ReturnType<typeof cpuMeter>): Record<string, number> {
  return {
    lastWelcomeSeconds: result.lastWelcomeSeconds,
    medianWelcomeSeconds: result.medianWelcomeSeconds,
    lastFrameSeconds: result.lastFrameSeconds,
    presencePerClient: result.presencePerClient,
    presenceMax: result.presenceMax,
    framesPerClient: result.framesPerClient,
    bytesPerClient: result.bytesPerClient,
    messagesPerClient: result.messagesPerClient,
    framesTotal: result.framesTotal,
    bytesTotal: result.bytesTotal,
    serverCpuSeconds: meter.seconds(),
    serverCpuPercent: meter.percent(),
    clientCpuPercent: (result.clientCpuSeconds / result.lastFrameSeconds) * 100,
    noisePercent: meter.noisePercent(),
  };
}

/** A: N clients at once onto an empty room. */
async function runJoinStormOn(
  server: ServerProcess,
  scenario: JoinStormScenario,
  settings: Settings,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  const meter = cpuMeter(server);
  const result = await runCrowd({
    target: server.target,
    clients: scenario.clients,
    path: "/",
    perSourceAddress: scenario.clients > CONNECTIONS_PER_SOURCE_ADDRESS ? CONNECTIONS_PER_SOURCE_ADDRESS : 0,
    quietMs: settings.room.quietMs,
    timeoutMs: settings.room.timeoutMs,
    onStart: meter.onMeasureStart,
    onEnd: meter.onMeasureEnd,
  });
  const checks = crowdChecks(result, server, settings);
  return {
    conns: result.conns,
    record: {
      side: "ours",
      round: 0,
      ok: checks.every((check) => check.ok),
      metrics: crowdMetrics(result, meter),
      checks,
      targets: [
        {
          name: `A: ${thousands(scenario.clients)} clients at once all welcomed within 10 s`,
          ok: result.lastWelcomeSeconds <= 10,
          detail: `the last after ${seconds(result.lastWelcomeSeconds)}`,
        },
        {
          name: "A: presence frames per client ≤ 30 on average",
          ok: result.presencePerClient <= 30,
          detail: `${result.presencePerClient.toFixed(1)} on average, ${result.presenceMax} at most`,
        },
      ],
    },
  };
}

/** B: a room keeps M messages (said by one client, who then leaves); N new clients arrive at once. */
async function runFirstVisitOn(
  server: ServerProcess,
  scenario: FirstVisitScenario,
  settings: Settings,
): Promise<{ record: RunRecord; conns: Conn[] }> {
  const seed = await sayMany({
    target: server.target,
    count: scenario.messages,
    window: 50,
    text: CHAT_LINE,
    timeoutMs: settings.room.timeoutMs,
  });
  await settle([server]);
  const meter = cpuMeter(server);
  const result = await runCrowd({
    target: server.target,
    clients: scenario.clients,
    path: "/",
    perSourceAddress: scenario.clients > CONNECTIONS_PER_SOURCE_ADDRESS ? CONNECTIONS_PER_SOURCE_ADDRESS : 0,
    quietMs: settings.room.quietMs,
    timeoutMs: settings.room.timeoutMs,
    onStart: meter.onMeasureStart,
    onEnd: meter.onMeasureEnd,
  });
  const page = Math.min(HISTORY_PAGE, scenario.messages);
  const newestPage =
    result.messagesMin === page &&
    result.messagesMax === page &&
    result.lastSeq === seed.lastSeq &&
    result.firstSeq === seed.lastSeq - page + 1 &&
    result.replaysNotEndingAtLatest === 0;
  const checks: Check[] = [
    {
      name: `the room was given ${thousands(scenario.messages)} messages first`,
      ok: seed.errors === 0 && seed.acknowledged === scenario.messages,
      detail: `${thousands(seed.acknowledged)} acknowledged in ${seconds(seed.seconds)}${seed.errors > 0 ? `: ${seed.firstErrors.join("; ")}` : ""}`,
    },
    ...crowdChecks(result, server, settings),
    {
      name: `every first visit was replayed the newest ${page} messages, in order`,
      ok: newestPage,
      detail: `${result.messagesMin}–${result.messagesMax} messages a client, seq ${result.firstSeq}–${result.lastSeq} of ${seed.lastSeq}`,
    },
  ];
  return {
    conns: result.conns,
    record: {
      side: "ours",
      round: 0,
      ok: checks.every((check) => check.ok),
      metrics: { ...crowdMetrics(result, meter), seedSeconds: seed.seconds },
      checks,
      targets: [
        {
          name: `B: a first visit is replayed the newest ${HISTORY_PAGE} messages, not all ${thousands(scenario.messages)} (before: 160 KB and 1,251 frames a client)`,
          ok: result.messagesMax <= HISTORY_PAGE,
          detail: `${result.messagesMax} messages, ${formatValue(result.bytesPerClient, "B")} and ${result.framesPerClient.toFixed(0)} frames a client`,
        },
      ],
    },
  };
}

/** A history file as server.ts writes it: the epoch on the first line, then
 * one message a line, about 136 bytes each (#16's file: 273 MB for
 * 2,000,000). The lines are made by hand, not by JSON.stringify: every part
 * is already valid JSON, and two million objects would take seconds. */
function writeHistoryFile(path: string, messages: number): void {
  const descriptor = openSync(path, "w");
  try {
    writeSync(descriptor, JSON.stringify({ type: "epoch", epoch: "bench-epoch-0123456789abcdef" }) + "\n");
    const time = Date.UTC(2026, 0, 1);
    const senders = [
      '"sid":"k3JzQ2x9AbCd","from":"小明"',
      '"sid":"Qe9LmN0pQrSt","from":"小红"',
      '"sid":"Zx8YwV7uTsRq","from":"Alice"',
    ];
    const texts = [
      '"See you all at the meeting at three, ok?"',
      '"你好，今天的会议改到下午三点了，别忘了"',
      '"ok, thanks!"',
      '"Has anyone seen the new build? It fails again."',
    ];
    for (let from = 1; from <= messages; from += 10_000) {
      let lines = "";
      for (let seq = from; seq < Math.min(messages + 1, from + 10_000); seq++) {
        lines += `{"seq":${seq},"id":"m${seq.toString(36)}",${senders[seq % 3]},"text":${texts[seq % 4]},"time":${time + seq * 1000}}\n`;
      }
      writeSync(descriptor, lines);
    }
    // On disk, as the file of a server that ran before: otherwise the server's
    // first fsync would also write out these hundreds of megabytes.
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

/** A copy of `source`, on disk (see writeHistoryFile). */
function copyToDisk(source: string, path: string): void {
  copyFileSync(source, path);
  const descriptor = openSync(path, "r+");
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

/** server.ts's start-up line about its history: how many messages it kept, and the next seq. */
function historyLine(output: string): { kept: number; nextSeq: number } | undefined {
  const match = /history .*: (\d+) messages kept, epoch \S+, next seq (\d+)/.exec(output);
  return match ? { kept: Number(match[1]), nextSeq: Number(match[2]) } : undefined;
}

/** Waits until the server is idle, then reads its RSS and peak RSS. */
async function settledMemory(server: ServerProcess): Promise<{ rss: number; peak: number }> {
  await settle([server], 3000);
  await sleep(300);
  return { rss: server.rss(), peak: server.peakRss() };
}

/** C: spawn to listening, and RSS, on a file of M messages against an empty one. The
 * server cuts a long file back to what it keeps, so every round starts on a fresh copy. */
async function runHistoryStartup(
  scenario: HistoryStartupScenario,
  pin: boolean,
  round: number,
  source: string,
  directory: string,
): Promise<RunRecord> {
  const emptyPath = join(directory, `empty-${round}.jsonl`);
  const bigPath = join(directory, `history-${round}.jsonl`);
  copyToDisk(source, bigPath);
  const fileBytes = statSync(bigPath).size;
  const empty = await ServerProcess.start("ours", false, pin, roomServerArgs(["--history", emptyPath]));
  let emptyMemory: { rss: number; peak: number };
  try {
    emptyMemory = await settledMemory(empty);
  } finally {
    await empty.stop();
  }
  const big = await ServerProcess.start("ours", false, pin, roomServerArgs(["--history", bigPath]));
  let bigMemory: { rss: number; peak: number };
  let line: { kept: number; nextSeq: number } | undefined;
  try {
    bigMemory = await settledMemory(big);
    line = historyLine(big.lastOutput());
  } finally {
    await big.stop();
  }
  rmSync(bigPath, { force: true });
  rmSync(emptyPath, { force: true });
  const kept = Math.min(1000, scenario.messages); // --history-size's default
  const rssExtra = bigMemory.rss - emptyMemory.rss;
  const checks: Check[] = [
    {
      name: `the server kept the newest ${thousands(kept)} messages and continues at seq ${thousands(scenario.messages + 1)}`,
      ok: line?.kept === kept && line.nextSeq === scenario.messages + 1,
      detail: line
        ? `${thousands(line.kept)} kept, next seq ${thousands(line.nextSeq)}`
        : "no history line in its output",
    },
  ];
  return {
    side: "ours",
    round,
    ok: checks.every((check) => check.ok),
    metrics: {
      startSeconds: big.startSeconds,
      emptyStartSeconds: empty.startSeconds,
      startExtraSeconds: big.startSeconds - empty.startSeconds,
      rss: bigMemory.rss,
      emptyRss: emptyMemory.rss,
      rssExtra,
      peakRss: bigMemory.peak,
      emptyPeakRss: emptyMemory.peak,
      fileBytes,
    },
    checks,
    targets: [
      {
        name: `C: start-up on ${formatValue(fileBytes, "B")} of history ≤ 1 s (spawn to listening)`,
        ok: big.startSeconds <= 1,
        detail: `${seconds(big.startSeconds)}; ${seconds(empty.startSeconds)} with an empty file`,
      },
      {
        name: "C: RSS within 50 MB of an empty start",
        ok: rssExtra <= 50 * 1000 * 1000,
        detail: `${formatValue(bigMemory.rss, "B")} against ${formatValue(emptyMemory.rss, "B")} (peak ${formatValue(bigMemory.peak, "B")} against ${formatValue(emptyMemory.peak, "B")})`,
      },
    ],
  };
}

/** The messages of a history file, oldest first, and whether its first line is an epoch. */
function readHistoryFile(path: string): { epochFirst: boolean; seqs: number[]; bytes: number } {
  const text = readFileSync(path, "utf8");
  const lines = text.split("\n").filter((line) => line !== "");
  const seqs: number[] = [];
  for (const line of lines.slice(1)) {
    const record = JSON.parse(line) as { seq?: unknown };
    if (typeof record.seq === "number") seqs.push(record.seq);
  }
  const first = lines[0] === undefined ? undefined : (JSON.parse(lines[0]) as { type?: unknown });
  return { epochFirst: first?.type === "epoch", seqs, bytes: Buffer.byteLength(text) };
}

/** Message lines in a history file now (every line but the epoch's), by counting newlines. */
function messageLinesIn(path: string): number {
  try {
    const bytes = readFileSync(path);
    let lines = 0;
    for (let index = bytes.indexOf(0x0a); index >= 0; index = bytes.indexOf(0x0a, index + 1)) lines++;
    return Math.max(0, lines - 1);
  } catch {
    return 0; // between the rename and the reopen there is always a file; before the first write there is none
  }
}

/** D: M messages said over a real connection with --history-size S; the file is watched
 * all along, read at the end, and a restart on it must continue where it stopped. */
async function runHistoryCompaction(
  scenario: HistoryCompactionScenario,
  settings: Settings,
  pin: boolean,
  round: number,
  directory: string,
): Promise<RunRecord> {
  const path = join(directory, `compaction-${round}.jsonl`);
  const args = roomServerArgs(["--history", path, "--history-size", String(scenario.historySize)]);
  const server = await ServerProcess.start("ours", false, pin, args);
  let most = 0;
  let said: Awaited<ReturnType<typeof sayMany>>;
  const meter = cpuMeter(server);
  const watcher = setInterval(() => (most = Math.max(most, messageLinesIn(path))), 25);
  try {
    await settle([server]);
    meter.onMeasureStart();
    said = await sayMany({
      target: server.target,
      count: scenario.messages,
      window: 50,
      text: CHAT_LINE,
      timeoutMs: settings.room.timeoutMs,
    });
    meter.onMeasureEnd();
  } finally {
    clearInterval(watcher);
    await server.stop(); // SIGKILL: what is on disk is what a crash would leave
  }
  const file = readHistoryFile(path);
  most = Math.max(most, file.seqs.length);
  const bound = 10 * scenario.historySize;
  const newest = file.seqs.every((seq, index) => seq === said.lastSeq - file.seqs.length + 1 + index);
  const restarted = await ServerProcess.start("ours", false, pin, args);
  const line = historyLine(restarted.lastOutput());
  await restarted.stop();
  rmSync(path, { force: true });
  const checks: Check[] = [
    {
      name: "every message was acknowledged, in order",
      ok: said.errors === 0 && said.acknowledged === scenario.messages,
      detail: `${thousands(said.acknowledged)} of ${thousands(scenario.messages)}${said.errors > 0 ? `: ${said.firstErrors.join("; ")}` : ""}`,
    },
    {
      name: "the file is its epoch and the newest messages, in order, up to the last one acknowledged",
      ok: file.epochFirst && newest && file.seqs.length >= scenario.historySize && said.lastSeq === scenario.messages,
      detail: `epoch first: ${file.epochFirst}; ${thousands(file.seqs.length)} messages, seq ${file.seqs[0] ?? "–"}–${file.seqs.at(-1) ?? "–"}`,
    },
    {
      name: `a restart on the file keeps ${scenario.historySize} messages and continues at seq ${thousands(scenario.messages + 1)}`,
      ok: line?.kept === scenario.historySize && line.nextSeq === scenario.messages + 1,
      detail: line
        ? `${thousands(line.kept)} kept, next seq ${thousands(line.nextSeq)}`
        : "no history line in its output",
    },
  ];
  return {
    side: "ours",
    round,
    ok: checks.every((check) => check.ok),
    metrics: {
      messagesPerSecond: said.acknowledged / said.seconds,
      sayingSeconds: said.seconds,
      fileMessages: file.seqs.length,
      fileMessagesMostSeen: most,
      fileBytes: file.bytes,
      serverCpuSeconds: meter.seconds(),
      serverCpuPercent: meter.percent(),
      noisePercent: meter.noisePercent(),
    },
    checks,
    targets: [
      {
        name: `D: after ${thousands(scenario.messages)} messages with --history-size ${scenario.historySize} the file holds ≤ ${thousands(bound)}`,
        ok: file.seqs.length <= bound,
        detail: `${thousands(file.seqs.length)} messages (${formatValue(file.bytes, "B")}); at most ${thousands(most)} seen while they were said`,
      },
    ],
  };
}

// ── Fan-out across servers on Redis (#14), server.ts only ───────────────────

/** A redis-server of the benchmark's own: in a scratch folder, on 127.0.0.1, nothing persisted
 * (the room's numbering and stream are all it keeps), pinned with the servers. A fresh one for
 * every run, so that each starts at seq 1 without the presence of servers killed before. */
class RedisProcess implements CpuSource {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  private readonly directory: string;
  private output = "";

  private constructor(child: ChildProcess, port: number, directory: string) {
    this.child = child;
    this.pid = child.pid ?? 0;
    this.port = port;
    this.directory = directory;
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString("utf8")).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
  }

  static async start(pin: boolean, scratch: string): Promise<RedisProcess> {
    const port = await freePort();
    const directory = mkdtempSync(join(scratch, "redis-"));
    const redisCommand = [redisServerPath, "--port", String(port), "--bind", "127.0.0.1", "--dir", directory];
    redisCommand.push("--save", "", "--appendonly", "no", "--loglevel", "warning");
    const command = pin ? ["taskset", "-c", "1", ...redisCommand] : redisCommand;
    const child = spawn(command[0]!, command.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const redis = new RedisProcess(child, port, directory);
    const deadline = performance.now() + 10_000;
    while (!(await redis.answersPing())) {
      if (!redis.alive || performance.now() > deadline) {
        await redis.stop();
        throw new Error(`redis-server did not answer PING within 10 s: ${redis.output}`);
      }
      await sleep(20);
    }
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** utime + stime of redis-server (all its threads), in clock ticks: as for the servers. */
  cpuTicks(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  }

  private answersPing(): Promise<boolean> {
    return new Promise((resolvePromise) => {
      const socket = connect(this.port, "127.0.0.1");
      const done = (answer: boolean) => {
        socket.destroy();
        resolvePromise(answer);
      };
      let reply = "";
      socket.setTimeout(1000, () => done(false));
      socket.on("connect", () => socket.write("PING\r\n"));
      socket.on("data", (chunk: Buffer) => {
        reply += chunk.toString("latin1");
        if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
      });
      socket.on("error", () => done(false));
    });
  }

  async stop(): Promise<void> {
    if (this.alive) {
      const exited = new Promise<void>((resolvePromise) => this.child.once("exit", () => resolvePromise()));
      this.child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** The servers' CPU, Redis's, and everything else's, between the two hooks (see cpuMeter). */
function clusterMeter(servers: ServerProcess[], redis: RedisProcess | undefined) {
  type Sample = { servers: number; redis: number; own: number; machine: number; at: number };
  const sample = (): Sample => ({
    servers: servers.reduce((sum, server) => sum + server.cpuTicks(), 0),
    redis: redis?.cpuTicks() ?? 0,
    own: ownTicks(),
    machine: machineBusyTicks(),
    at: performance.now(),
  });
  let before = sample();
  let after = before;
  const wall = () => (after.at - before.at) / 1000;
  return {
    onMeasureStart: () => {
      before = sample();
    },
    onMeasureEnd: () => {
      after = sample();
    },
    serverSeconds: () => (after.servers - before.servers) / CLOCK_TICKS,
    redisSeconds: () => (after.redis - before.redis) / CLOCK_TICKS,
    wall,
    /** CPU used by other processes, in % of one core. */
    noisePercent: () => {
      const ours = after.servers - before.servers + (after.redis - before.redis) + (after.own - before.own);
      return (Math.max(0, after.machine - before.machine - ours) / CLOCK_TICKS / wall()) * 100;
    },
  };
}

/** Waits until `server` has written a line matching `pattern`, for at most `timeoutMs`. */
async function waitForOutput(server: ServerProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pattern.test(server.lastOutput())) {
    if (!server.alive || performance.now() > deadline)
      throw new Error(`server.ts never said ${String(pattern)}: ${server.lastOutput()}`);
    await sleep(20);
  }
}

/** One run of one setup: one server.ts alone, or two on a fresh Redis. Servers and Redis are
 * stopped before the clients' connections are closed (no storm of "left" into the next run). */
async function runFanoutRedis(
  scenario: FanoutRedisScenario,
  settings: Settings,
  pin: boolean,
  setup: NodeSetup,
  scratch: string,
): Promise<RunRecord> {
  const redis = setup === "two-nodes" ? await RedisProcess.start(pin, scratch) : undefined;
  const servers: ServerProcess[] = [];
  let conns: Conn[] = [];
  try {
    const args = redis === undefined ? undefined : [...serverCommand("ours", false), "--redis", redis.url];
    for (let index = 0; index < (redis === undefined ? 1 : 2); index++)
      servers.push(await ServerProcess.start("ours", false, pin, args));
    // Listening comes before Redis is reached; until then a chat client would be refused (503).
    if (redis !== undefined)
      for (const server of servers) await waitForOutput(server, /redis: serving the room/, 10_000);
    const everyone: CpuSource[] = [...servers, ...(redis === undefined ? [] : [redis])];
    await settle(everyone);
    const timing = settings.redisFanout;
    const paced = clusterMeter(servers, redis);
    const saturated = clusterMeter(servers, redis);
    const result = await runFanout({
      target: servers.map((server) => server.target),
      clients: scenario.clients,
      window: settings.fanoutWindow,
      warmupMs: timing.warmupMs,
      durationMs: timing.measureMs,
      maxMessages: 200_000,
      // The joins are announced to everyone (on Redis, to the other server too): not part of the fan-out.
      beforeLoad: () => settle(everyone),
      paced: {
        ratePerSecond: scenario.ratePerSecond,
        warmupMs: timing.warmupMs,
        durationMs: timing.measureMs,
        onMeasureStart: paced.onMeasureStart,
        onMeasureEnd: paced.onMeasureEnd,
      },
      onMeasureStart: saturated.onMeasureStart,
      onMeasureEnd: saturated.onMeasureEnd,
    });
    conns = result.conns;
    const ok = result.everyDeliveryOnceInOrder && result.errors === 0 && servers.every((server) => server.alive);
    const pacedPhase = result.paced!;
    const perDelivery = (meter: typeof paced, deliveries: number) =>
      deliveries > 0 ? (meter.serverSeconds() * 1e6) / deliveries : Number.NaN;
    const perMessage = (meter: typeof paced, messages: number) =>
      redis !== undefined && messages > 0 ? (meter.redisSeconds() * 1e6) / messages : Number.NaN;
    return {
      side: setup,
      round: 0,
      ok,
      metrics: {
        deliveriesPerSecond: result.deliveriesPerSecond,
        messagesPerSecond: result.messages / result.seconds,
        p50: result.latency.p50,
        p99: result.latency.p99,
        serverCpuPerDelivery: perDelivery(saturated, result.deliveries),
        redisCpuPerMessage: perMessage(saturated, result.messages),
        pacedDeliveriesPerSecond: pacedPhase.deliveriesPerSecond,
        pacedP50: pacedPhase.latency.p50,
        pacedP99: pacedPhase.latency.p99,
        pacedServerCpuPerDelivery: perDelivery(paced, pacedPhase.deliveries),
        pacedRedisCpuPerMessage: perMessage(paced, pacedPhase.messages),
        pacedServerCpuPercent: (paced.serverSeconds() / paced.wall()) * 100,
        pacedRedisCpuPercent: redis === undefined ? Number.NaN : (paced.redisSeconds() / paced.wall()) * 100,
        messages: result.messages,
        pacedMessages: pacedPhase.messages,
        said: result.said,
        serverCpuSeconds: saturated.serverSeconds(),
        serverCpuPercent: (saturated.serverSeconds() / saturated.wall()) * 100,
        redisCpuSeconds: redis === undefined ? Number.NaN : saturated.redisSeconds(),
        redisCpuPercent: redis === undefined ? Number.NaN : (saturated.redisSeconds() / saturated.wall()) * 100,
        clientCpuPercent: (result.clientCpuSeconds / result.seconds) * 100,
        noisePercent: Math.max(paced.noisePercent(), saturated.noisePercent()),
        connectSeconds: result.connectSeconds,
      },
      checks: [
        {
          name: "every client got every message once, in seq order",
          ok,
          detail: ok
            ? `${result.said} messages × ${result.clients} clients${redis === undefined ? "" : ", clients alternating between two servers"}`
            : `${result.errors} errors: ${result.firstErrors.join("; ")}${servers.every((server) => server.alive) ? "" : "; a server died"}`,
        },
      ],
    };
  } finally {
    for (const server of servers) await server.stop();
    await redis?.stop();
    destroyAll(conns);
  }
}

// ── Summaries ───────────────────────────────────────────────────────────────

export interface MetricSpec {
  key: string;
  label: string;
  unit: "msg/s" | "µs" | "B" | "hs/s" | "deliveries/s" | "s" | "frames" | "messages" | "s CPU" | "µs CPU" | "%";
  higherIsBetter: boolean;
  /** The same work per server CPU-second, when it makes sense. */
  perCpuKey?: string;
}

/** Handshakes per second, and per server CPU-second: the storm's and idle connections'. */
const handshakeRate: MetricSpec = {
  key: "handshakesPerSecond",
  label: "handshakes/s",
  unit: "hs/s",
  higherIsBetter: true,
  perCpuKey: "handshakesPerCpuSecond",
};
/** From a message's send to each delivery: the fan-out's and the classroom's. */
const deliveryLatency: MetricSpec[] = [
  { key: "p50", label: "p50 latency", unit: "µs", higherIsBetter: false },
  { key: "p99", label: "p99 latency", unit: "µs", higherIsBetter: false },
];

const metricsFor: Record<Scenario["kind"], MetricSpec[]> = {
  echo: [
    {
      key: "messagesPerSecond",
      label: "msg/s",
      unit: "msg/s",
      higherIsBetter: true,
      perCpuKey: "messagesPerCpuSecond",
    },
  ],
  latency: [
    { key: "p50", label: "p50 RTT", unit: "µs", higherIsBetter: false },
    { key: "p99", label: "p99 RTT", unit: "µs", higherIsBetter: false },
  ],
  fanout: [
    {
      key: "deliveriesPerSecond",
      label: "deliveries/s",
      unit: "deliveries/s",
      higherIsBetter: true,
      perCpuKey: "deliveriesPerCpuSecond",
    },
    ...deliveryLatency,
  ],
  classroom: [
    { key: "deliveriesPerCpuSecond", label: "deliveries/CPU-s", unit: "deliveries/s", higherIsBetter: true },
    { key: "serverCpuPerDelivery", label: "server CPU/delivery", unit: "µs CPU", higherIsBetter: false },
    { key: "deliveriesPerSecond", label: "deliveries/s (the pace)", unit: "deliveries/s", higherIsBetter: true },
    ...deliveryLatency,
  ],
  storm: [
    handshakeRate,
    { key: "backSeconds", label: "all back after", unit: "s", higherIsBetter: false },
    { key: "failedAttempts", label: "failed attempts", unit: "messages", higherIsBetter: false },
  ],
  memory: [{ key: "bytesPerConnection", label: "RSS/conn", unit: "B", higherIsBetter: false }, handshakeRate],
  "join-storm": [
    { key: "lastWelcomeSeconds", label: "last welcomed", unit: "s", higherIsBetter: false },
    { key: "medianWelcomeSeconds", label: "half welcomed", unit: "s", higherIsBetter: false },
    { key: "presencePerClient", label: "presence frames/client", unit: "frames", higherIsBetter: false },
    { key: "presenceMax", label: "presence frames, most", unit: "frames", higherIsBetter: false },
    { key: "framesPerClient", label: "frames/client", unit: "frames", higherIsBetter: false },
    { key: "bytesPerClient", label: "bytes/client", unit: "B", higherIsBetter: false },
    { key: "bytesTotal", label: "bytes in all", unit: "B", higherIsBetter: false },
    { key: "serverCpuSeconds", label: "server CPU", unit: "s CPU", higherIsBetter: false },
  ],
  "first-visit": [
    { key: "bytesPerClient", label: "bytes/client", unit: "B", higherIsBetter: false },
    { key: "framesPerClient", label: "frames/client", unit: "frames", higherIsBetter: false },
    { key: "messagesPerClient", label: "messages replayed/client", unit: "messages", higherIsBetter: false },
    { key: "presencePerClient", label: "presence frames/client", unit: "frames", higherIsBetter: false },
    { key: "bytesTotal", label: "bytes in all", unit: "B", higherIsBetter: false },
    { key: "lastWelcomeSeconds", label: "last welcomed", unit: "s", higherIsBetter: false },
    { key: "serverCpuSeconds", label: "server CPU", unit: "s CPU", higherIsBetter: false },
  ],
  "history-startup": [
    { key: "startSeconds", label: "start (spawn to listening)", unit: "s", higherIsBetter: false },
    { key: "emptyStartSeconds", label: "start, empty file", unit: "s", higherIsBetter: false },
    { key: "startExtraSeconds", label: "start, beyond an empty file", unit: "s", higherIsBetter: false },
    { key: "rss", label: "RSS after start", unit: "B", higherIsBetter: false },
    { key: "emptyRss", label: "RSS, empty file", unit: "B", higherIsBetter: false },
    { key: "peakRss", label: "peak RSS", unit: "B", higherIsBetter: false },
    { key: "fileBytes", label: "file size", unit: "B", higherIsBetter: false },
  ],
  "fanout-redis": [
    { key: "deliveriesPerSecond", label: "deliveries/s, saturated", unit: "deliveries/s", higherIsBetter: true },
    { key: "p50", label: "p50 latency, saturated", unit: "µs", higherIsBetter: false },
    { key: "p99", label: "p99 latency, saturated", unit: "µs", higherIsBetter: false },
    { key: "pacedP50", label: "p50 latency, paced", unit: "µs", higherIsBetter: false },
    { key: "pacedP99", label: "p99 latency, paced", unit: "µs", higherIsBetter: false },
    { key: "serverCpuPerDelivery", label: "servers' CPU/delivery, saturated", unit: "µs CPU", higherIsBetter: false },
    {
      key: "pacedServerCpuPerDelivery",
      label: "servers' CPU/delivery, paced",
      unit: "µs CPU",
      higherIsBetter: false,
    },
    { key: "redisCpuPerMessage", label: "Redis CPU/message, saturated", unit: "µs CPU", higherIsBetter: false },
    { key: "pacedRedisCpuPerMessage", label: "Redis CPU/message, paced", unit: "µs CPU", higherIsBetter: false },
    { key: "serverCpuPercent", label: "servers' CPU, saturated", unit: "%", higherIsBetter: false },
    { key: "redisCpuPercent", label: "Redis CPU, saturated", unit: "%", higherIsBetter: false },
  ],
  "history-compaction": [
    { key: "fileMessages", label: "messages in the file", unit: "messages", higherIsBetter: false },
    { key: "fileMessagesMostSeen", label: "most seen in it", unit: "messages", higherIsBetter: false },
    { key: "fileBytes", label: "file size", unit: "B", higherIsBetter: false },
    { key: "messagesPerSecond", label: "said and stored", unit: "msg/s", higherIsBetter: true },
    { key: "serverCpuSeconds", label: "server CPU", unit: "s CPU", higherIsBetter: false },
  ],
};

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface MetricSummary extends MetricSpec {
  ours: Spread | null;
  ws: Spread | null;
  tcp: Spread | null;
  /** Bun.serve (bench/bun-server.ts), and server.ts run by Bun: echo and round trip only. */
  bun: Spread | null;
  oursOnBun: Spread | null;
  /** ours/ws, round by round. */
  ratio: Spread | null;
  /** ours/ws of the per-CPU-second figure. */
  perCpuRatio: Spread | null;
  /** ours/bun and ours-on-bun/bun, round by round, and the same per CPU-second. */
  ratioBun: Spread | null;
  ratioOursOnBun: Spread | null;
  perCpuRatioBun: Spread | null;
  perCpuRatioOursOnBun: Spread | null;
  /** ours/tcp (medians). */
  ofCeiling: number | null;
  /** ours/tcp and ws/tcp round by round: against the floor (busy classroom, idle connections). */
  ratioTcp: Spread | null;
  ratioWsTcp: Spread | null;
  serverCpuPercent: { ours: number | null; ws: number | null; bun: number | null; oursOnBun: number | null };
  clientCpuPercent: number | null;
  /** CPU used by other processes during the runs (% of one core), at most. */
  noisePercent: number | null;
}

export interface ScenarioResult {
  scenario: Scenario;
  runs: RunRecord[];
  summary: MetricSummary[];
  checks: { ok: boolean; failures: string[] };
  /** The #16 targets of a room scenario, each met only if met in every round. */
  targets: Array<{ name: string; met: boolean; details: string[] }>;
  /** The fan-out on Redis: its figures one setup against the other (its `summary` is empty). */
  nodes?: NodesMetricSummary[];
}

interface NodesMetricSummary extends MetricSpec {
  oneNode: Spread | null;
  twoNodes: Spread | null;
  /** two nodes / one node, round by round. */
  ratio: Spread | null;
}

/** The fan-out on Redis: each setup's figures over the rounds, and two/one round by round. */
function summarizeNodes(scenario: FanoutRedisScenario, runs: RunRecord[]): NodesMetricSummary[] {
  const good = (setup: NodeSetup) => runs.filter((run) => run.side === setup && run.ok);
  const rounds = [...new Set(runs.map((run) => run.round))];
  return metricsFor[scenario.kind].map((spec) => ({
    ...spec,
    oneNode: spread(good("one-node").map((run) => run.metrics[spec.key] ?? Number.NaN)),
    twoNodes: spread(good("two-nodes").map((run) => run.metrics[spec.key] ?? Number.NaN)),
    ratio: spread(
      rounds.flatMap((round) => {
        const one = good("one-node").find((run) => run.round === round)?.metrics[spec.key];
        const two = good("two-nodes").find((run) => run.round === round)?.metrics[spec.key];
        return one !== undefined && two !== undefined && one !== 0 ? [two / one] : [];
      }),
    ),
  }));
}

function spread(values: number[]): Spread | null {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return null;
  const middle = finite.length >> 1;
  const median = finite.length % 2 === 1 ? finite[middle]! : (finite[middle - 1]! + finite[middle]!) / 2;
  return { median, min: finite[0]!, max: finite[finite.length - 1]! };
}

/** `assertTargets`: whether a missed target is one of the failures (not in tiny mode). */
function summarize(scenario: Scenario, runs: RunRecord[], assertTargets: boolean): ScenarioResult {
  const good = (side: RunSide) => runs.filter((run) => run.side === side && run.ok);
  const rounds = [...new Set(runs.map((run) => run.round))];
  /** `side`/`reference`, round by round (both runs of a round must have succeeded). */
  const ratioOf = (key: string, side: Side = "ours", reference: Side = "ws") =>
    spread(
      rounds.flatMap((round) => {
        const mine = good(side).find((run) => run.round === round)?.metrics[key];
        const theirs = good(reference).find((run) => run.round === round)?.metrics[key];
        return mine !== undefined && theirs !== undefined && theirs !== 0 ? [mine / theirs] : [];
      }),
    );
  const cpuPercentOf = (side: Side) =>
    spread(good(side).map((run) => run.metrics.serverCpuPercent ?? Number.NaN))?.median ?? null;
  const nodes = scenario.kind === "fanout-redis" ? summarizeNodes(scenario, runs) : undefined;
  const compared = nodes === undefined ? metricsFor[scenario.kind] : [];
  const summary = compared.map((spec): MetricSummary => {
    const values = (side: Side) => spread(good(side).map((run) => run.metrics[spec.key] ?? Number.NaN));
    const ours = values("ours");
    const tcp = values("tcp");
    const perCpu = (side: Side, reference: Side) => (spec.perCpuKey ? ratioOf(spec.perCpuKey, side, reference) : null);
    return {
      ...spec,
      ours,
      ws: values("ws"),
      tcp,
      bun: values("bun"),
      oursOnBun: values("ours-on-bun"),
      ratio: ratioOf(spec.key),
      perCpuRatio: perCpu("ours", "ws"),
      ratioBun: ratioOf(spec.key, "ours", "bun"),
      ratioOursOnBun: ratioOf(spec.key, "ours-on-bun", "bun"),
      perCpuRatioBun: perCpu("ours", "bun"),
      perCpuRatioOursOnBun: perCpu("ours-on-bun", "bun"),
      ofCeiling: ours && tcp && tcp.median > 0 ? ours.median / tcp.median : null,
      ratioTcp: ratioOf(spec.key, "ours", "tcp"),
      ratioWsTcp: ratioOf(spec.key, "ws", "tcp"),
      serverCpuPercent: {
        ours: cpuPercentOf("ours"),
        ws: cpuPercentOf("ws"),
        bun: cpuPercentOf("bun"),
        oursOnBun: cpuPercentOf("ours-on-bun"),
      },
      clientCpuPercent:
        spread(runs.filter((run) => run.side !== "tcp").map((run) => run.metrics.clientCpuPercent ?? Number.NaN))
          ?.max ?? null,
      noisePercent: spread(runs.map((run) => run.metrics.noisePercent ?? Number.NaN))?.max ?? null,
    };
  });
  const targetNames = [...new Set(runs.flatMap((run) => (run.targets ?? []).map((target) => target.name)))];
  const targets = targetNames.map((name) => {
    const found = runs.flatMap((run) => (run.targets ?? []).filter((target) => target.name === name));
    return {
      name,
      met: found.length === runs.length && found.every((target) => target.ok),
      details: found.map((target) => target.detail ?? ""),
    };
  });
  // Targets between two servers are met by a ratio of the rounds, not by each run alone.
  const pairTarget =
    scenario.kind === "classroom"
      ? classroomTargetOf(summary)
      : scenario.kind === "storm"
        ? stormTargetOf(summary)
        : undefined;
  if (pairTarget !== undefined) targets.push(pairTarget);
  const failures = runs.flatMap((run) => [
    ...(run.error ? [`${run.side} round ${run.round}: ${run.error}`] : []),
    ...run.checks
      .filter((check) => !check.ok)
      .map((check) => `${run.side} round ${run.round}: ${check.name}: ${check.detail ?? ""}`),
    ...(assertTargets ? (run.targets ?? []) : [])
      .filter((target) => !target.ok)
      .map((target) => `${run.side} round ${run.round}: target missed: ${target.name}: ${target.detail ?? ""}`),
  ]);
  if (assertTargets && pairTarget !== undefined && !pairTarget.met)
    failures.push(`target missed: ${pairTarget.name}: ${pairTarget.details.join("; ")}`);
  const checks = { ok: failures.length === 0 && runs.length > 0, failures };
  return { scenario, runs, summary, checks, targets, ...(nodes === undefined ? {} : { nodes }) };
}

/** #16 item 6, from the storm's ours/ws of handshakes per second (median of the rounds). */
function stormTargetOf(summary: MetricSummary[]): { name: string; met: boolean; details: string[] } {
  return ratioTargetOf(summary, "handshakesPerSecond", 1, {
    name: "reconnect storm: ours ≥ 1.0× ws in handshakes per second, median of the rounds",
    noRatio: "no ratio",
  });
}

/** #16 item 4, from the busy classroom's ours/ws of deliveries per server CPU-second (median of the rounds). */
function classroomTargetOf(summary: MetricSummary[]): { name: string; met: boolean; details: string[] } {
  return ratioTargetOf(summary, "deliveriesPerCpuSecond", 2, {
    name: "busy classroom: ours per CPU-s ≥ 2× ws (server CPU per delivery ≤ 0.5× ws's), median of the rounds",
    noRatio: "no ratio: a side used no whole clock tick",
  });
}

/** A target on ours/ws of one metric: met when the median of the rounds is at least `least`. */
function ratioTargetOf(
  summary: MetricSummary[],
  key: string,
  least: number,
  text: { name: string; noRatio: string },
): { name: string; met: boolean; details: string[] } {
  const ratio = summary.find((metric) => metric.key === key)?.ratio ?? null;
  return {
    name: text.name,
    met: ratio !== null && ratio.median >= least,
    details: [ratio === null ? text.noRatio : `ours/ws ${formatRatio(ratio)}`],
  };
}

function formatValue(value: number | undefined, unit: MetricSpec["unit"]): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  if (unit === "s" || unit === "s CPU") return `${value.toFixed(value >= 10 ? 1 : 2)} ${unit}`;
  if (unit === "µs CPU") return `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} µs`;
  if (unit === "%") return `${value.toFixed(0)}%`;
  if (unit === "µs")
    return value >= 10_000
      ? `${(value / 1000).toFixed(1)} ms`
      : value >= 1000
        ? `${(value / 1000).toFixed(2)} ms`
        : `${value.toFixed(0)} µs`;
  if (unit === "B")
    return value >= MiB
      ? `${(value / MiB).toFixed(2)} MiB`
      : value >= KiB
        ? `${(value / KiB).toFixed(1)} KiB`
        : `${value.toFixed(0)} B`;
  return value >= 1e6
    ? `${(value / 1e6).toFixed(2)}M`
    : value >= 1e4
      ? `${(value / 1e3).toFixed(1)}k`
      : value >= 100
        ? value.toFixed(0)
        : value.toFixed(1);
}

function formatRatio(ratio: Spread | null): string {
  if (ratio === null) return "–";
  const f = (value: number) => value.toFixed(value >= 10 ? 1 : 2);
  return ratio.min === ratio.max ? f(ratio.median) : `${f(ratio.median)} [${f(ratio.min)}–${f(ratio.max)}]`;
}

function table(results: ScenarioResult[]): string {
  const header = [
    "scenario",
    "metric",
    "ours",
    "ws",
    "ours/ws [min–max]",
    "per CPU-s",
    "bun",
    "ours/bun [min–max]",
    "on bun",
    "on-bun/bun [min–max]",
    "tcp",
    "ours/tcp",
    "srv CPU% o/w/b/ob",
    "cli%",
    "noise%",
    "ok",
  ];
  const rows: string[][] = [];
  for (const result of results) {
    if (isRoomScenario(result.scenario)) continue; // roomTable: nothing to compare with
    result.summary.forEach((metric, index) => {
      const percent = (value: number | null) => (value === null ? "–" : value.toFixed(0));
      const cpu = metric.serverCpuPercent;
      const withBun = metric.bun !== null || metric.oursOnBun !== null;
      rows.push([
        index === 0 ? result.scenario.title : "",
        `${metric.label} ${metric.higherIsBetter ? "↑" : "↓"}`,
        formatValue(metric.ours?.median, metric.unit),
        formatValue(metric.ws?.median, metric.unit),
        formatRatio(metric.ratio),
        formatRatio(metric.perCpuRatio),
        withBun ? formatValue(metric.bun?.median, metric.unit) : "",
        withBun ? formatRatio(metric.ratioBun) : "",
        withBun ? formatValue(metric.oursOnBun?.median, metric.unit) : "",
        withBun ? formatRatio(metric.ratioOursOnBun) : "",
        metric.tcp ? formatValue(metric.tcp.median, metric.unit) : "",
        metric.ofCeiling === null ? "" : `${(metric.ofCeiling * 100).toFixed(0)}%`,
        index === 0 ? [cpu.ours, cpu.ws, ...(withBun ? [cpu.bun, cpu.oursOnBun] : [])].map(percent).join("/") : "",
        index === 0 ? percent(metric.clientCpuPercent) : "",
        index === 0 ? percent(metric.noisePercent) : "",
        index === 0 ? (result.checks.ok ? "✓" : "✗") : "",
      ]);
    });
  }
  if (rows.length === 0) return "";
  return alignedTable(header, rows).join("\n");
}

/** A table's lines: the header, a rule, the rows; the first two columns to the left, the others to the right. */
function alignedTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ");
  return [line(header), widths.map((width) => "─".repeat(width)).join("  "), ...rows.map(line)];
}

/** One line for each #16 target of these results: met or missed, and each round's figures. */
function targetLines(results: ScenarioResult[]): string[] {
  return results.flatMap((result) =>
    result.targets.map(
      (target) => `${target.met ? "✓ met   " : "✗ MISSED"}  ${target.name}: ${target.details.join(" | ")}`,
    ),
  );
}

/** The room scenarios: server.ts's own figures (median [min–max] of the rounds), then #16's targets. */
function roomTable(results: ScenarioResult[]): string {
  const room = results.filter((result) => isRoomScenario(result.scenario));
  if (room.length === 0) return "";
  const header = ["chat room at scale (server.ts only)", "metric", "value [min–max]", "ok"];
  const rows: string[][] = [];
  for (const result of room) {
    result.summary.forEach((metric, index) => {
      const value = metric.ours;
      rows.push([
        index === 0 ? result.scenario.title : "",
        `${metric.label} ${metric.higherIsBetter ? "↑" : "↓"}`,
        value === null
          ? "–"
          : value.min === value.max
            ? formatValue(value.median, metric.unit)
            : `${formatValue(value.median, metric.unit)} [${formatValue(value.min, metric.unit)}–${formatValue(value.max, metric.unit)}]`,
        index === 0 ? (result.checks.ok ? "✓" : "✗") : "",
      ]);
    });
  }
  const targets = targetLines(room);
  return [
    ...alignedTable(header, rows),
    "",
    "Targets of issue #16 (measured on server.ts alone; every round must meet them):",
    ...targets,
  ].join("\n");
}

/** The busy classroom and idle connections against the floor (tcp): what node:net
 * itself spends on the same job, next to ours and ws; then #16's targets between them. */
function floorTable(results: ScenarioResult[], settings: Settings): string {
  const floored = results.filter(
    (result) =>
      (result.scenario.kind === "classroom" || result.scenario.kind === "memory") &&
      result.runs.some((run) => run.side === "tcp"),
  );
  if (floored.length === 0) return "";
  const median = (result: ScenarioResult, side: Side, key: string) =>
    spread(result.runs.filter((run) => run.side === side && run.ok).map((run) => run.metrics[key] ?? Number.NaN))
      ?.median ?? null;
  const rows: string[][] = [];
  let fewestTicks = Number.POSITIVE_INFINITY;
  for (const result of floored) {
    const classroom = result.scenario.kind === "classroom";
    if (classroom)
      for (const run of result.runs)
        if (run.ok) fewestTicks = Math.min(fewestTicks, run.metrics.serverCpuTicks ?? Number.POSITIVE_INFINITY);
    const ticks = (["ours", "ws", "tcp"] as const)
      .map((side) => median(result, side, "serverCpuTicks"))
      .map((value) => (value === null ? "–" : value.toFixed(0)))
      .join("/");
    result.summary
      .filter((metric) => metric.tcp !== null)
      .forEach((metric, index) => {
        rows.push([
          index === 0 ? result.scenario.title : "",
          `${metric.label} ${metric.higherIsBetter ? "↑" : "↓"}`,
          formatValue(metric.ours?.median, metric.unit),
          formatValue(metric.ws?.median, metric.unit),
          formatValue(metric.tcp?.median, metric.unit),
          formatRatio(metric.ratio),
          formatRatio(metric.ratioTcp),
          formatRatio(metric.ratioWsTcp),
          index === 0 && classroom ? ticks : "",
          index === 0 ? (metric.noisePercent === null ? "–" : metric.noisePercent.toFixed(0)) : "",
          index === 0 ? (result.checks.ok ? "✓" : "✗") : "",
        ]);
      });
  }
  const header = [
    "against the floor",
    "metric",
    "ours",
    "ws",
    "tcp floor",
    "ours/ws [min–max]",
    "ours/tcp [min–max]",
    "ws/tcp [min–max]",
    "CPU ticks o/w/t",
    "noise%",
    "ok",
  ];
  const notes = [
    "tcp floor: bench/tcp-floor.ts, the same job on plain node:net (no WebSocket, HTTP or JSON): for the classroom a broadcast",
    `of ${FLOOR_MESSAGE_BYTES}-byte messages (a delivery's size), one write per member; for idle connections, sockets kept in a Set`,
    "with a 'close' and an 'error' listener each. ours/tcp and ws/tcp: round by round, as ours/ws.",
  ];
  const classroom = floored.find((result) => result.scenario.kind === "classroom");
  if (classroom !== undefined && classroom.scenario.kind === "classroom") {
    const { warmupMs, measureMs } = settings.classroom;
    notes.push(
      `Busy classroom: one sender says ${classroom.scenario.ratePerSecond} messages a second to ${classroom.scenario.clients} clients, paced, so each broadcast leaves`,
      `in its own turn; ${warmupMs / 1000} s of warm-up, then ${measureMs / 1000} s measured per side and round. Server CPU: utime+stime of /proc/PID/stat,`,
      `in clock ticks of ${(1000 / CLOCK_TICKS).toFixed(0)} ms; the fewest ticks one side's figure rests on: ${Number.isFinite(fewestTicks) ? fewestTicks : "–"}` +
        (Number.isFinite(fewestTicks) && fewestTicks > 0
          ? ` (a count of whole ticks is good to ±1: within ${((1 / fewestTicks) * 100).toFixed(1)}%).`
          : "."),
    );
    const perDelivery = classroom.summary.find((metric) => metric.key === "serverCpuPerDelivery");
    if (perDelivery?.ws && perDelivery.tcp) {
      const half = perDelivery.ws.median / 2;
      notes.push(
        `#16 asks ours ≤ 0.5× ws = ${formatValue(half, "µs CPU")} of server CPU a delivery; node:net alone spends ${formatValue(perDelivery.tcp.median, "µs CPU")}`,
        `(tcp/ws ${(perDelivery.tcp.median / perDelivery.ws.median).toFixed(2)}×), so that target is ${perDelivery.tcp.median > half ? "below" : "above"} what node:net itself needs.`,
      );
    }
  }
  const memory = floored
    .filter((result) => result.scenario.kind === "memory")
    .sort(
      (a, b) =>
        Math.abs((a.scenario as MemoryScenario).connections - 10_000) -
        Math.abs((b.scenario as MemoryScenario).connections - 10_000),
    )[0];
  const rss = memory?.summary.find((metric) => metric.key === "bytesPerConnection");
  if (memory !== undefined && rss?.ws && rss.tcp) {
    const half = rss.ws.median / 2;
    notes.push(
      `Idle connections (${memory.scenario.title}): #16 asks ours ≤ 0.5× ws = ${formatValue(half, "B")} a connection; node:net alone holds one`,
      `for ${formatValue(rss.tcp.median, "B")} (tcp/ws ${(rss.tcp.median / rss.ws.median).toFixed(2)}×), so that target is ` +
        `${rss.tcp.median > half ? "below" : "above"} what node:net itself needs.`,
    );
  }
  const targets = targetLines(floored);
  return [
    ...alignedTable(header, rows),
    "",
    ...notes,
    ...(targets.length > 0 ? ["", "Targets of issue #16 (ours against ws):", ...targets] : []),
  ].join("\n");
}

/** The fan-out on Redis: one node, two nodes, two/one [min–max] over the rounds. */
function nodesTable(results: ScenarioResult[], window: number): string {
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const result of results) {
    if (result.nodes === undefined || result.scenario.kind !== "fanout-redis") continue;
    const { ratePerSecond } = result.scenario;
    const spreadText = (value: Spread | null, unit: MetricSpec["unit"]) =>
      value === null
        ? "–"
        : value.min === value.max
          ? formatValue(value.median, unit)
          : `${formatValue(value.median, unit)} [${formatValue(value.min, unit)}–${formatValue(value.max, unit)}]`;
    result.nodes.forEach((metric, index) => {
      rows.push([
        index === 0 ? result.scenario.title : "",
        `${metric.label} ${metric.higherIsBetter ? "↑" : "↓"}`,
        spreadText(metric.oneNode, metric.unit),
        spreadText(metric.twoNodes, metric.unit),
        formatRatio(metric.ratio),
        index === 0 ? (result.checks.ok ? "✓" : "✗") : "",
      ]);
    });
    const most = (key: string) =>
      spread(result.runs.map((run) => run.metrics[key] ?? Number.NaN))?.max.toFixed(0) ?? "–";
    notes.push(
      `${result.scenario.title}: paced = ${thousands(ratePerSecond)} messages/s from one sender; saturated = ${window} messages in flight; ` +
        `load generator's CPU at most ${most("clientCpuPercent")}%, other processes' at most ${most("noisePercent")}% of a core.`,
    );
  }
  if (rows.length === 0) return "";
  const header = ["fan-out on Redis (server.ts only)", "metric", "one node", "two nodes", "two/one [min–max]", "ok"];
  return [
    ...alignedTable(header, rows),
    "",
    ...notes,
    "Two nodes: two server.ts on one Redis, the clients alternating between them; servers and Redis share CPU 1, as the",
    "one node does alone, so two/one is what Redis costs, not what a second machine adds. Latency: from the sender's",
    "write to each delivery. CPU per delivery: both servers' CPU over the deliveries; Redis per message: redis-server's.",
  ].join("\n");
}

// ── The run ─────────────────────────────────────────────────────────────────

const processStarted = Date.now();

function log(line: string): void {
  process.stderr.write(`[${((Date.now() - processStarted) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);
}

function describeRun(record: RunRecord, scenario: Scenario): string {
  if (!record.ok)
    return `FAILED ${
      record.error ??
      record.checks
        .filter((check) => !check.ok)
        .map((check) => check.detail)
        .join("; ")
    }`;
  const spec = metricsFor[scenario.kind];
  return (
    spec.map((metric) => `${metric.label} ${formatValue(record.metrics[metric.key], metric.unit)}`).join(", ") +
    `, server CPU ${(record.metrics.serverCpuPercent ?? 0).toFixed(0)}%${record.metrics.serverCpuTicks === undefined ? "" : ` (${record.metrics.serverCpuTicks} ticks)`}, client CPU ${(record.metrics.clientCpuPercent ?? 0).toFixed(0)}%, noise ${(record.metrics.noisePercent ?? 0).toFixed(0)}%`
  );
}

function describeRoomRun(record: RunRecord, scenario: RoomScenario): string {
  if (!record.ok) return describeRun(record, scenario);
  const figures = metricsFor[scenario.kind]
    .map((metric) => `${metric.label} ${formatValue(record.metrics[metric.key], metric.unit)}`)
    .join(", ");
  const targets = (record.targets ?? []).map((target) => `${target.ok ? "✓" : "✗"} ${target.detail ?? ""}`);
  const percents = [
    ["server CPU", "serverCpuPercent"],
    ["client CPU", "clientCpuPercent"],
    ["noise", "noisePercent"],
  ].flatMap(([label, key]) => {
    const value = record.metrics[key!];
    return value === undefined || !Number.isFinite(value) ? [] : [`${label} ${value.toFixed(0)}%`];
  });
  return [figures, ...percents, ...targets].join("; ");
}

function describeRedisRun(record: RunRecord, scenario: FanoutRedisScenario): string {
  if (!record.ok) return describeRun(record, scenario);
  const value = (key: string, unit: MetricSpec["unit"]) => formatValue(record.metrics[key], unit);
  return (
    `paced ${thousands(scenario.ratePerSecond)} msg/s: p50 ${value("pacedP50", "µs")}, p99 ${value("pacedP99", "µs")}, ` +
    `servers ${value("pacedServerCpuPerDelivery", "µs CPU")}/delivery, Redis ${value("pacedRedisCpuPerMessage", "µs CPU")}/message; ` +
    `saturated: ${value("deliveriesPerSecond", "deliveries/s")} deliveries/s (${value("messagesPerSecond", "msg/s")} msg/s), ` +
    `p50 ${value("p50", "µs")}, p99 ${value("p99", "µs")}, servers ${value("serverCpuPerDelivery", "µs CPU")}/delivery ` +
    `(${value("serverCpuPercent", "%")}), Redis ${value("redisCpuPerMessage", "µs CPU")}/message (${value("redisCpuPercent", "%")}); ` +
    `client CPU ${value("clientCpuPercent", "%")}, noise ${value("noisePercent", "%")}`
  );
}

/** One run of a room scenario on fresh servers; the crowd's connections are closed after the server stopped. */
async function runRoomScenario(
  scenario: RoomScenario,
  settings: Settings,
  pin: boolean,
  round: number,
  scratch: string,
  historySource: string | undefined,
): Promise<RunRecord> {
  if (scenario.kind === "history-startup") return runHistoryStartup(scenario, pin, round, historySource!, scratch);
  if (scenario.kind === "history-compaction") return runHistoryCompaction(scenario, settings, pin, round, scratch);
  const server = await ServerProcess.start("ours", false, pin, roomServerArgs([]));
  let conns: Conn[] = [];
  try {
    await settle([server]);
    const { record, conns: opened } =
      scenario.kind === "join-storm"
        ? await runJoinStormOn(server, scenario, settings)
        : await runFirstVisitOn(server, scenario, settings);
    conns = opened;
    return record;
  } finally {
    // The server goes first: 10,000 leaving would otherwise keep it busy into the next run.
    await server.stop();
    destroyAll(conns);
  }
}

async function guarded<T>(side: RunSide, round: number, run: () => Promise<T>): Promise<T | RunRecord> {
  try {
    return await run();
  } catch (error) {
    return {
      side,
      round,
      ok: false,
      error: error instanceof Error ? error.message : String(error),
      metrics: {},
      checks: [],
    };
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const settings = { ...settingsFor[options.mode] };
  settings.room = { ...settings.room };
  if (options.rounds !== undefined) {
    settings.rounds = options.rounds;
    settings.room.rounds = options.rounds;
    settings.stormRounds = options.rounds;
    settings.tcpRounds = Math.min(settings.tcpRounds, options.rounds);
  }
  const maxCrowd = Math.max(settings.room.stormClients, settings.room.firstVisitClients);
  raiseFileLimit(
    Math.max(Math.max(...settings.memoryConnections) + IDLE_FD_MARGIN, maxCrowd + 2000, settings.stormClients + 2000),
    settings,
  );

  let pin = options.pin && cpus().length >= 2;
  if (pin) {
    try {
      execFileSync("taskset", ["-a", "-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
    } catch {
      pin = false;
    }
  }

  const plan = planFor(options.mode, settings).filter(
    (scenario) => options.only === undefined || options.only.test(scenario.id),
  );
  const started = Date.now();
  const loadBefore = loadavg();
  log(
    `bench: ${options.mode} mode, ${settings.rounds} round(s), ${plan.length} scenarios, ${pin ? "client on CPU 0, servers on CPU 1" : "no CPU pinning"}; load average ${loadBefore.map((value) => value.toFixed(2)).join(" ")}`,
  );

  const results: ScenarioResult[] = [];
  const record = (scenario: Scenario, runs: RunRecord[]) => {
    const result = summarize(scenario, runs, settings.room.assertTargets);
    results.push(result);
    const first = result.nodes?.[0];
    const figure =
      first !== undefined
        ? `two nodes/one ${formatRatio(first.ratio)} (${first.label}; ${formatValue(first.twoNodes?.median, first.unit)} vs ${formatValue(first.oneNode?.median, first.unit)})`
        : isRoomScenario(scenario)
          ? `${result.summary[0]!.label} ${formatValue(result.summary[0]!.ours?.median, result.summary[0]!.unit)}; targets ${result.targets.map((target) => (target.met ? "✓" : "✗")).join("")}`
          : `ours/ws ${formatRatio(result.summary[0]!.ratio)}${
              result.summary[0]!.bun === null && result.summary[0]!.oursOnBun === null
                ? ""
                : `, ours/bun ${formatRatio(result.summary[0]!.ratioBun)}, ours-on-bun/bun ${formatRatio(result.summary[0]!.ratioOursOnBun)}`
            } (${result.summary[0]!.label})`;
    log(`  → ${scenario.title}: ${figure}${result.checks.ok ? "" : "  CHECK FAILED"}`);
  };

  // Echo and latency: long-lived servers, one set per deflate setting.
  const echoPlan = plan.filter(
    (scenario): scenario is EchoScenario | LatencyScenario => scenario.kind === "echo" || scenario.kind === "latency",
  );
  const needsTcp = echoPlan.length > 0;
  // Bun.serve and server.ts on Bun: every echo and round trip, or (tiny) the first echo only.
  const firstEcho = echoPlan.find((scenario) => scenario.kind === "echo");
  const wantsBun = (scenario: EchoScenario | LatencyScenario) => settings.withBun === "all" || scenario === firstEcho;
  const bun = echoPlan.some(wantsBun) ? bunVersion() : undefined;
  if (echoPlan.some(wantsBun) && bun === undefined)
    log(
      `echo against Bun.serve and server.ts on Bun: SKIPPED — no runnable bun at ${bunPath} (node test/runtimes/ensure.mjs installs it); the other sides ran`,
    );
  const tcp = needsTcp ? await ServerProcess.start("tcp", false, pin) : undefined;
  try {
    for (const deflate of [false, true]) {
      const group = echoPlan.filter((scenario) => (scenario.kind === "echo" ? scenario.deflate : false) === deflate);
      if (group.length === 0) continue;
      const ours = await ServerProcess.start("ours", deflate, pin);
      const ws = await ServerProcess.start("ws", deflate, pin);
      const bunSides =
        bun !== undefined && group.some(wantsBun)
          ? [await ServerProcess.start("bun", deflate, pin), await ServerProcess.start("ours-on-bun", deflate, pin)]
          : [];
      const all = [ours, ws, ...bunSides, ...(tcp ? [tcp] : [])];
      try {
        for (const scenario of group) {
          const runs: RunRecord[] = [];
          for (let round = 1; round <= settings.rounds; round++) {
            const withCeiling =
              tcp !== undefined && round <= settings.tcpRounds && (settings.ceilingForDeflate || !deflate);
            const sides = [ours, ws, ...(wantsBun(scenario) ? bunSides : []), ...(withCeiling ? [tcp] : [])];
            for (const server of sides) {
              await settle(all);
              if (!server.alive) throw new Error(`${server.side} server died: ${server.lastOutput()}`);
              const outcome = await guarded(server.side, round, () => runEchoOn(server, scenario, settings));
              outcome.round = round;
              runs.push(outcome);
              log(`${scenario.title} round ${round} ${server.side}: ${describeRun(outcome, scenario)}`);
            }
          }
          record(scenario, runs);
        }
      } finally {
        await ours.stop();
        await ws.stop();
        for (const server of bunSides) await server.stop();
      }
    }
  } finally {
    await tcp?.stop();
  }

  // Fan-out, the busy classroom, the storm and memory: a fresh server for every
  // run (no leftover rooms, a clean RSS, a storm onto a server just started). The classroom and memory have a third side,
  // the floor (tcp): what node:net itself spends on the same job.
  for (const scenario of plan) {
    if (
      scenario.kind !== "fanout" &&
      scenario.kind !== "classroom" &&
      scenario.kind !== "storm" &&
      scenario.kind !== "memory"
    )
      continue;
    const runs: RunRecord[] = [];
    const sides: Side[] =
      scenario.kind === "fanout" || scenario.kind === "storm" ? ["ours", "ws"] : ["ours", "ws", "tcp"];
    const rounds = scenario.kind === "storm" ? settings.stormRounds : settings.rounds;
    for (let round = 1; round <= rounds; round++) {
      for (const side of sides) {
        let conns: Conn[] = [];
        const outcome = await guarded(side, round, async () => {
          const floor = side !== "tcp" ? undefined : floorCommand(scenario.kind === "classroom" ? "broadcast" : "idle");
          const server = await ServerProcess.start(side, false, pin, floor);
          try {
            await settle([server]);
            const { record: result, conns: opened } =
              scenario.kind === "fanout"
                ? await runFanoutOn(server, scenario, settings)
                : scenario.kind === "classroom"
                  ? await runClassroomOn(server, scenario, settings)
                  : scenario.kind === "storm"
                    ? await runStormOn(server, scenario)
                    : await runMemoryOn(server, scenario, settings);
            conns = opened;
            return result;
          } finally {
            // The server goes first: the clients' close would otherwise make it
            // tell everyone else who left, and TIME_WAIT stays on its side.
            await server.stop();
            destroyAll(conns);
          }
        });
        const run = outcome;
        run.round = round;
        runs.push(run);
        log(`${scenario.title} round ${round} ${side}: ${describeRun(run, scenario)}`);
      }
    }
    record(scenario, runs);
  }

  // Fan-out across servers on Redis: server.ts alone, one node against two, fresh processes for every run.
  for (const scenario of plan) {
    if (scenario.kind !== "fanout-redis") continue;
    if (!haveRedis()) {
      log(
        `${scenario.title}: SKIPPED — no redis-server at ${redisServerPath} (Debian: apt-get install redis-server); the other scenarios ran`,
      );
      continue;
    }
    const runs: RunRecord[] = [];
    const scratchRedis = mkdtempSync(join(tmpdir(), "bench-redis-"));
    try {
      for (let round = 1; round <= settings.rounds; round++) {
        for (const setup of ["one-node", "two-nodes"] as const) {
          const run = await guarded(setup, round, () => runFanoutRedis(scenario, settings, pin, setup, scratchRedis));
          run.round = round;
          runs.push(run);
          log(`${scenario.title} round ${round} ${setup}: ${describeRedisRun(run, scenario)}`);
        }
      }
    } finally {
      rmSync(scratchRedis, { recursive: true, force: true });
    }
    record(scenario, runs);
  }

  // The chat room at scale: server.ts alone, a fresh server (or two) for every run.
  const roomPlan = plan.filter(isRoomScenario);
  const scratch = roomPlan.length > 0 ? mkdtempSync(join(tmpdir(), "bench-room-")) : undefined;
  try {
    for (const scenario of roomPlan) {
      const runs: RunRecord[] = [];
      let historySource: string | undefined;
      if (scenario.kind === "history-startup") {
        historySource = join(scratch!, "source.jsonl");
        const began = Date.now();
        writeHistoryFile(historySource, scenario.messages);
        log(
          `${scenario.title}: wrote ${formatValue(statSync(historySource).size, "B")} in ${((Date.now() - began) / 1000).toFixed(1)} s`,
        );
      }
      for (let round = 1; round <= settings.room.rounds; round++) {
        const outcome = await guarded("ours", round, () =>
          runRoomScenario(scenario, settings, pin, round, scratch!, historySource),
        );
        outcome.round = round;
        runs.push(outcome);
        log(`${scenario.title} round ${round}: ${describeRoomRun(outcome, scenario)}`);
      }
      if (historySource !== undefined) rmSync(historySource, { force: true });
      record(scenario, runs);
    }
  } finally {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  }

  const seconds = (Date.now() - started) / 1000;
  const loadAfter = loadavg();
  const output = [
    table(results),
    floorTable(results, settings),
    nodesTable(results, settings.fanoutWindow),
    roomTable(results),
  ]
    .filter((text) => text !== "")
    .join("\n\n");
  process.stdout.write("\n" + output + "\n\n");
  process.stdout.write(
    "ours/ws: ratio of the two servers' figures, round by round (median [min–max]); per CPU-s: the same work per second of server CPU.\n" +
      "bun: Bun.serve (uWebSockets) echoing; on bun: server.ts run by Bun; ours/bun and on-bun/bun, round by round, as ours/ws.\n" +
      "srv CPU% o/w/b/ob: each server process's CPU use in the measured window (100 = one core); cli%: the load generator's, at most;\n" +
      "noise%: CPU used by other processes on the machine during the runs, at most (0 on a quiet machine).\n" +
      "tcp: plain node:net; for echo the ceiling (bench/tcp-echo.ts), for the busy classroom and idle connections the floor (bench/tcp-floor.ts).\n" +
      `${seconds.toFixed(0)} s in all; load average before ${loadBefore.map((value) => value.toFixed(2)).join(" ")}, after ${loadAfter.map((value) => value.toFixed(2)).join(" ")}.\n`,
  );
  const failed = results.filter((result) => !result.checks.ok);
  for (const result of failed)
    process.stdout.write(`✗ ${result.scenario.title}: ${result.checks.failures.join(" | ")}\n`);

  const report = {
    meta: {
      mode: options.mode,
      date: new Date().toISOString(),
      node: process.version,
      /** Bun's version, when its sides ran (echo and round trip against Bun.serve). */
      bun: bun ?? null,
      cpu: cpus()[0]?.model ?? "unknown",
      cpus: cpus().length,
      pinned: pin,
      rounds: settings.rounds,
      settings,
      seconds,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
      commit: gitCommit(),
      /** server.ts as benchmarked (the working tree may differ from the commit). */
      serverSha1: createHash("sha1")
        .update(readFileSync(join(root, "server.ts")))
        .digest("hex")
        .slice(0, 12),
    },
    results: results.map((result) => ({
      id: result.scenario.id,
      title: result.scenario.title,
      scenario: result.scenario,
      summary: result.summary,
      checks: result.checks,
      targets: result.targets,
      runs: result.runs,
    })),
    table: output,
  };
  if (options.json !== undefined) {
    const text =
      JSON.stringify(
        report,
        (_key, value: unknown) => (typeof value === "number" && !Number.isFinite(value) ? null : value),
        2,
      ) + "\n";
    if (options.json === "-") process.stdout.write(text);
    else writeOutput(options.json, text);
  }
  if (options.svg !== undefined) {
    // Each figure against ws, then (echo) against Bun.serve: server.ts on Node, and server.ts on Bun.
    const rows: ChartRow[] = results.flatMap((result) =>
      result.summary.flatMap((metric) => {
        const row = (name: string, ratio: Spread | null, perCpu: Spread | null): ChartRow[] =>
          ratio === null
            ? []
            : [
                {
                  label: `${result.scenario.title} · ${metric.label} · ${name}`,
                  ...ratio,
                  higherIsBetter: metric.higherIsBetter,
                  ...(perCpu ? { perCpu: perCpu.median } : {}),
                },
              ];
        return [
          ...row("ours/ws", metric.ratio, metric.perCpuRatio),
          ...row("ours/bun", metric.ratioBun, metric.perCpuRatioBun),
          ...row("on-bun/bun", metric.ratioOursOnBun, metric.perCpuRatioOursOnBun),
        ];
      }),
    );
    const subtitle = `${options.mode} run, ${settings.rounds} rounds, ${report.meta.date.slice(0, 10)}, Node ${process.version}${bun === undefined ? "" : `, Bun ${bun}`}, ${cpus().length}× ${report.meta.cpu}${pin ? ", client and server pinned to one core each" : ""}, load average ${loadBefore[0]!.toFixed(2)}`;
    writeOutput(options.svg, renderChart(rows, "server.ts vs ws (+bufferutil) and Bun.serve (uWebSockets)", subtitle));
  }
  if (options.json !== undefined && options.json !== "-") log(`wrote ${options.json}`);
  if (options.svg !== undefined) log(`wrote ${options.svg}`);
  process.exitCode = failed.length === 0 ? 0 : 1;
}

function writeOutput(path: string, text: string): void {
  const full = resolve(path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, text);
}

function gitCommit(): string | undefined {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return undefined;
  }
}

/** 10,000 connections need 10,000 descriptors in this process (and as many
 * in the server, which inherits the limit). When the soft limit is lower but
 * the hard one allows it, the benchmark runs itself again under a shell that
 * raised it; otherwise the memory scenarios are cut to what fits. */
function raiseFileLimit(needed: number, settings: Settings): void {
  let soft = Number.POSITIVE_INFINITY;
  let hard = Number.POSITIVE_INFINITY;
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((text) => text.startsWith("Max open files"));
    const fields = line?.split(/\s+/) ?? [];
    soft = fields[3] === "unlimited" ? Number.POSITIVE_INFINITY : Number(fields[3]);
    hard = fields[4] === "unlimited" ? Number.POSITIVE_INFINITY : Number(fields[4]);
  } catch {
    return; // not Linux: nothing to read, nothing to raise
  }
  if (soft >= needed) return;
  if (hard >= needed && process.env.BENCH_FILE_LIMIT_RAISED === undefined) {
    log(`bench: raising the open-file limit from ${soft} to ${needed} (ulimit -n) and starting again`);
    const result = spawnSync(
      "/bin/sh",
      ["-c", `ulimit -n ${needed} && exec "$@"`, "sh", process.execPath, ...process.execArgv, ...process.argv.slice(1)],
      { stdio: "inherit", env: { ...process.env, BENCH_FILE_LIMIT_RAISED: "1" } },
    );
    process.exit(result.status ?? 1);
  }
  const fits = Math.max(100, soft - 2000);
  const idleFits = Math.max(100, soft - IDLE_FD_MARGIN);
  settings.memoryConnections = [...new Set(settings.memoryConnections.map((count) => Math.min(count, idleFits)))];
  settings.room.stormClients = Math.min(settings.room.stormClients, fits);
  settings.room.firstVisitClients = Math.min(settings.room.firstVisitClients, fits);
  log(
    `bench: the open-file limit is ${soft} (hard ${hard}); idle connections capped at ${idleFits}, join-storm scenarios at ${fits}. Run \`ulimit -n ${needed}\` first for the full figures.`,
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
