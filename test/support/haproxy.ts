// A real load balancer for the tests: Debian's HAProxy (/usr/sbin/haproxy)
// run in the foreground (-db) with the project's own deploy/haproxy.cfg,
// unchanged. The config takes every address from the environment
// ("${CHAT_NODE1-127.0.0.1:5501}" and so on), so a test gives it free ports
// through CHAT_FRONTEND, CHAT_NODE1, CHAT_NODE2 and CHAT_STATS, and reads
// HAProxy's view of the nodes (UP or DOWN, and why) from the config's own
// status page, as CSV.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { freePort, repositoryRoot } from "./spawn.ts";
import { waitUntil } from "./wait.ts";

export const haproxyPath = "/usr/sbin/haproxy";
export const haproxyConfigPath = join(repositoryRoot, "deploy", "haproxy.cfg");

/** Why the HAProxy tests cannot run here (a reason for `skip`), or false when they can. */
export function haproxyMissing(): string | false {
  const result = spawnSync(haproxyPath, ["-v"], { encoding: "utf8", timeout: 10_000 });
  if (result.error !== undefined || result.status !== 0) {
    return `HAProxy is not installed at ${haproxyPath} (apt-get install haproxy; .ci/run installs it)`;
  }
  return false;
}

/** One line of HAProxy's status CSV for a server of the chat_nodes backend. */
export interface BackendServer {
  /** node1 or node2, as in deploy/haproxy.cfg. */
  name: string;
  /** "UP", "DOWN", or a transition such as "UP 1/2" (going down) or "DOWN 1/2" (coming up). */
  status: string;
  /** The last check's result: L7OK (200), L7STS (another status), L4CON (refused), INI (not checked yet)… */
  checkStatus: string;
  /** Connections open to it now (scur). */
  sessions: number;
  /** Connections it was given in all (stot). */
  totalSessions: number;
}

export interface HaproxyOptions {
  /** The ports of node1 and node2 on 127.0.0.1 (nothing need listen there). */
  nodePorts: readonly [number, number];
  /** Which nodes must be UP (last check passed) before start() resolves; default both. */
  expectUp?: readonly ("node1" | "node2")[];
  /** How long HAProxy may take to listen and see those nodes up (default 15 s). */
  timeoutMs?: number;
}

export class TestHaproxy {
  readonly port: number;
  readonly statsPort: number;
  readonly child: ChildProcess;
  private log = "";

  private constructor(port: number, statsPort: number, child: ChildProcess) {
    this.port = port;
    this.statsPort = statsPort;
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log += chunk.toString("utf8");
      if (this.log.length > 1_000_000) this.log = this.log.slice(-500_000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
  }

  /** Starts `haproxy -f deploy/haproxy.cfg -db` on free ports, and resolves once it
   * listens and every node of `expectUp` passed its health check. */
  static async start(options: HaproxyOptions): Promise<TestHaproxy> {
    const [port, statsPort] = [await freePort(), await freePort()];
    const child = spawn(haproxyPath, ["-f", haproxyConfigPath, "-db"], {
      env: {
        ...process.env,
        CHAT_FRONTEND: `127.0.0.1:${port}`,
        CHAT_NODE1: `127.0.0.1:${options.nodePorts[0]}`,
        CHAT_NODE2: `127.0.0.1:${options.nodePorts[1]}`,
        CHAT_STATS: `127.0.0.1:${statsPort}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const haproxy = new TestHaproxy(port, statsPort, child);
    const expectUp = options.expectUp ?? ["node1", "node2"];
    try {
      await haproxy.waitForServers(
        (servers) => expectUp.every((name) => servers.find((server) => server.name === name)?.checkStatus === "L7OK"),
        options.timeoutMs ?? 15_000,
        `${expectUp.join(" and ")} up`,
      );
    } catch (error) {
      await haproxy.stop();
      throw error;
    }
    return haproxy;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Everything HAProxy printed: its notices and one log line per request or WebSocket. */
  output(): string {
    return this.log;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The chat_nodes backend's servers, as HAProxy's status page reports them now. */
  async servers(): Promise<BackendServer[]> {
    const response = await fetch(`http://127.0.0.1:${this.statsPort}/;csv`);
    const lines = (await response.text()).trim().split("\n");
    const columns = lines[0]!.replace(/^# /, "").split(",");
    const column = (row: string[], name: string) => row[columns.indexOf(name)] ?? "";
    return lines
      .slice(1)
      .map((line) => line.split(","))
      .filter((row) => column(row, "pxname") === "chat_nodes" && column(row, "svname") !== "BACKEND")
      .map((row) => ({
        name: column(row, "svname"),
        status: column(row, "status"),
        checkStatus: column(row, "check_status"),
        sessions: Number(column(row, "scur")),
        totalSessions: Number(column(row, "stot")),
      }));
  }

  /** Waits until `condition` holds for the servers HAProxy reports (asked every 10 ms). */
  async waitForServers(
    condition: (servers: BackendServer[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<BackendServer[]> {
    let last: BackendServer[] = [];
    let exited = false;
    await waitUntil(
      () => exited || condition(last),
      timeoutMs,
      `HAProxy to report ${what}`,
      async () => {
        exited = !this.alive;
        try {
          last = await this.servers();
        } catch {
          last = []; // not listening yet
        }
      },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; it reports ${JSON.stringify(last)}; its output:\n${this.log}`);
    });
    if (exited) throw new Error(`haproxy exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.log}`);
    return last;
  }

  /** Stops HAProxy (SIGTERM: at once, every connection closed) and waits until it has exited. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}
