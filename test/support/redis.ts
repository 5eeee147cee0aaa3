// A real Redis for the tests: Debian's redis-server, started on a free port
// on 127.0.0.1 in a temporary folder of its own, never a mock. It can be
// stopped, killed and started again on the same port and folder (with or
// without persistence), and put behind a proxy that can swallow everything
// (a black hole: no reset, no answer), as a network that drops packets does.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, spawnServer, type SpawnedServer } from "./spawn.ts";
import { waitUntil } from "./wait.ts";

export const redisServerPath = "/usr/bin/redis-server";

/** Whether Debian's redis-server is installed (.ci/run installs it). */
export function haveRedis(): boolean {
  return spawnSync(redisServerPath, ["--version"]).status === 0;
}

export interface RedisOptions {
  /** "none": nothing survives a restart; "aof-always": every write is fsynced before it is answered. */
  persistence?: "none" | "aof-always";
  password?: string;
}

export class TestRedis {
  readonly port: number;
  readonly directory: string;
  private readonly options: RedisOptions;
  private child: ChildProcess | undefined;

  private constructor(port: number, directory: string, options: RedisOptions) {
    this.port = port;
    this.directory = directory;
    this.options = options;
  }

  static async start(options: RedisOptions = {}): Promise<TestRedis> {
    if (!haveRedis())
      throw new Error(`redis-server is missing at ${redisServerPath}: apt-get install redis-server (.ci/run does)`);
    const redis = new TestRedis(await freePort(), mkdtempSync(join(tmpdir(), "test-redis-")), options);
    await redis.restart();
    return redis;
  }

  get url(): string {
    return this.options.password === undefined
      ? `redis://127.0.0.1:${this.port}`
      : `redis://:${encodeURIComponent(this.options.password)}@127.0.0.1:${this.port}`;
  }

  /** Starts the process (again), and resolves once it answers PING. */
  async restart(options: RedisOptions = this.options): Promise<void> {
    Object.assign(this.options, options);
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.directory, "--save", ""];
    args.push(
      ...(this.options.persistence === "aof-always"
        ? ["--appendonly", "yes", "--appendfsync", "always"]
        : ["--appendonly", "no"]),
    );
    if (this.options.password !== undefined) args.push("--requirepass", this.options.password);
    const child = spawn(redisServerPath, args, { stdio: ["ignore", "ignore", "inherit"] });
    this.child = child;
    await waitUntil(
      () => child.exitCode !== null || this.answers,
      10_000,
      "redis-server to answer PING",
      () => this.ping(),
    );
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
  }

  private answers = false;

  private async ping(): Promise<void> {
    this.answers = await new Promise<boolean>((resolve) => {
      const socket = connect(this.port, "127.0.0.1");
      let reply = "";
      socket.on("connect", () => socket.write("PING\r\n"));
      socket.on("data", (chunk) => {
        reply += chunk.toString();
        if (reply.includes("\r\n")) {
          socket.destroy();
          resolve(reply.startsWith("+PONG") || reply.startsWith("-NOAUTH"));
        }
      });
      socket.on("error", () => resolve(false));
    });
  }

  /** Stops the process with `signal` and waits until it has exited. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await exited;
    this.answers = false;
  }

  async destroy(): Promise<void> {
    await this.stop("SIGKILL");
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** A TCP proxy in front of Redis that forwards both ways until `swallow()`:
 * from then on it reads and drops every byte in both directions and closes
 * nothing, so the client sees neither a reply nor a reset. */
export class BlackHoleProxy {
  readonly port: number;
  private readonly server: Server;
  private swallowing = false;
  private readonly sockets = new Set<Socket>();

  private constructor(port: number, server: Server) {
    this.port = port;
    this.server = server;
  }

  static async start(targetPort: number): Promise<BlackHoleProxy> {
    const port = await freePort();
    let proxy: BlackHoleProxy | undefined;
    const server = createServer((client) => {
      const upstream = connect(targetPort, "127.0.0.1");
      for (const socket of [client, upstream]) {
        proxy!.sockets.add(socket);
        socket.on("error", () => {});
        socket.on("close", () => proxy!.sockets.delete(socket));
      }
      client.on("data", (chunk) => proxy!.swallowing || upstream.write(chunk));
      upstream.on("data", (chunk) => proxy!.swallowing || client.write(chunk));
      client.on("close", () => proxy!.swallowing || upstream.destroy());
      upstream.on("close", () => proxy!.swallowing || client.destroy());
    });
    proxy = new BlackHoleProxy(port, server);
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return proxy;
  }

  swallow(): void {
    this.swallowing = true;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// ── server.ts processes on a TestRedis ──────────────────────────────────────

/** The arguments of a server.ts on `redis`, with limits that do not get in a test's way. */
export const nodeArgs = (redis: TestRedis): string[] => [
  "--redis",
  redis.url,
  "--redis-timeout",
  "500",
  "--message-rate",
  "1000",
  "--message-burst",
  "1000",
];

/** The status of GET /healthz, or 0 when nothing answers. */
export async function health(server: SpawnedServer): Promise<number> {
  try {
    return (await fetch(`${server.httpUrl}/healthz`)).status;
  } catch {
    return 0;
  }
}

/** Waits until the server's /healthz answers `status`. */
export async function waitForHealth(server: SpawnedServer, status: number, timeoutMs = 10_000): Promise<void> {
  let last = -1;
  await waitUntil(
    () => last === status,
    timeoutMs,
    `/healthz ${status} (last: ${last})`,
    async () => {
      last = await health(server);
    },
  );
}

/** `count` server.ts processes on `redis`, each answering /healthz 200. */
export function startNodes(redis: TestRedis, count: number): Promise<SpawnedServer[]> {
  return startHealthyServers(count, nodeArgs(redis));
}

/** `count` server.ts processes started with `args`, each answering /healthz 200. */
export async function startHealthyServers(count: number, args: string[]): Promise<SpawnedServer[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => spawnServer(args)));
  for (const server of servers) await waitForHealth(server, 200, 10_000);
  return servers;
}
