// Starts a TypeScript program that prints "listening on http://HOST:PORT/"
// (server.ts, or a test fixture that embeds it) as a child process, the
// way test/helpers.ts does for server.ts alone.
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface SpawnedServer {
  child: ChildProcess;
  pid: number | undefined;
  port: number;
  output(): string;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
  /** true while the process has neither exited nor been killed. */
  alive(): boolean;
}

export interface SpawnOptions {
  /** The command that runs a TypeScript file; default: this Node with tsx. */
  command?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  cwd?: string;
}

/** Runs `node --import tsx FILE ARGS` (or `command FILE ARGS`) from the
 * repository root and resolves once it printed the address it listens on. */
export function spawnTypeScriptServer(file: string, args: string[], options: SpawnOptions = {}): Promise<SpawnedServer> {
  const command = options.command ?? [process.execPath, "--import", "tsx"];
  const timeoutMs = options.timeoutMs ?? 20_000;
  const child = spawn(command[0]!, [...command.slice(1), file, ...args], {
    cwd: options.cwd ?? repositoryRoot,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (output.length > 4_000_000) output = output.slice(-2_000_000); // a long run logs a lot
    for (const listener of listeners) listener();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      for (const listener of listeners) listener();
      resolve(code);
    }),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const waitForOutput = (pattern: RegExp, waitMs = 10_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern);
        if (match) {
          cleanup();
          resolve(match);
        } else if (!alive()) {
          cleanup();
          reject(new Error(`${file} exited before printing ${pattern}; output:\n${output}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${pattern}; output:\n${output}`));
      }, waitMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return waitForOutput(/listening on http:\/\/([^\s/]+):(\d+)\//, timeoutMs).then(
    (match) => ({
      child,
      pid: child.pid,
      port: Number(match[2]),
      output: () => output,
      waitForOutput,
      exited,
      alive,
      stop(signal: NodeJS.Signals = "SIGTERM") {
        if (alive()) child.kill(signal);
        return exited;
      },
    }),
    (error: unknown) => {
      child.kill("SIGKILL");
      throw error;
    },
  );
}

export const serverFile = join(repositoryRoot, "server.ts");

/** A port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
