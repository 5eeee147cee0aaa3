// Shared test plumbing: start the real server as a child process on an
// ephemeral port, and wait for things without sleeping blindly.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const serverPath = join(repositoryRoot, "server.ts");

export interface RunningServer {
  child: ChildProcess;
  port: number;
  httpUrl: string; // http://127.0.0.1:PORT
  wsUrl: string; // ws://127.0.0.1:PORT
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Resolves once the output matches, or rejects after timeoutMs. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends the signal (default SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  /** The command that runs a TypeScript file; default: this Node with tsx. */
  command?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  cwd?: string;
}

/** Starts server.ts with `--port 0` plus `args` and resolves once it prints the URL it listens on. */
export function startServer(args: string[] = [], options: StartOptions = {}): Promise<RunningServer> {
  const command = options.command ?? [process.execPath, "--import", "tsx"];
  const hasPort = args.includes("--port");
  const fullArgs = [...command.slice(1), serverPath, ...(hasPort ? [] : ["--port", "0"]), ...args];
  const child = spawn(command[0]!, fullArgs, {
    cwd: options.cwd ?? repositoryRoot,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    for (const listener of listeners) listener();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => {
    for (const listener of listeners) listener();
    resolve(code);
  }));

  const waitForOutput = (pattern: RegExp, timeoutMs = 10_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern);
        if (match) {
          cleanup();
          resolve(match);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          cleanup();
          reject(new Error(`server exited before printing ${pattern}; output:\n${output}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${pattern}; output:\n${output}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  return waitForOutput(/listening on http:\/\/([^\s/]+):(\d+)\//, options.timeoutMs ?? 20_000).then(
    (match) => {
      const port = Number(match[2]);
      const host = "127.0.0.1";
      return {
        child,
        port,
        httpUrl: `http://${host}:${port}`,
        wsUrl: `ws://${host}:${port}`,
        output: () => output,
        waitForOutput,
        exited,
        stop(signal: NodeJS.Signals = "SIGTERM") {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      };
    },
    (error: unknown) => {
      child.kill("SIGKILL");
      throw error;
    },
  );
}

/** Polls `condition` every 10 ms until it is true, or throws after timeoutMs. */
export async function waitUntil(condition: () => boolean, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
