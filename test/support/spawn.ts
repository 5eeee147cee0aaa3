// Server processes, for the tests where the process is the point (signals,
// SIGKILL and restart, the command line, other runtimes, a process's memory)
// and for the scripts. Everything else runs server.ts in the test's own
// process (in-process.ts). Named spawnServer / SpawnedServer so that nothing
// here shadows server.ts's startServer / RunningServer.
//
// A spawned server.ts runs precompiled: esbuild turns server.ts into one
// JavaScript file (in node_modules/.cache, named by a hash of server.ts and
// esbuild's version, so built once per change of server.ts, whichever test
// file asks first) and bare `node` runs it; the benchmark runs its servers
// the same way. Starting tsx's loader costs about 0.45 CPU-s per process over
// bare node, and a test run starts about 60 of them. The file is the same
// program: esbuild is what tsx runs on server.ts, `import.meta.url` is
// replaced by server.ts's own (so it serves client.html from the
// repository), and an inline source map points coverage at server.ts's
// lines. The tests about how the server is started (the command line it
// shows, `--import tsx`) pass `{ viaTsx: true }` and get `node --import tsx
// server.ts`, as `npm start` runs it; `command` runs server.ts with another
// runtime as it is.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildSync, version as esbuildVersion } from "esbuild";

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const serverPath = join(repositoryRoot, "server.ts");

const compiled = new Map<string, { hash: string; path: string }>();

/** A TypeScript file of this repository compiled to JavaScript for bare `node` (see the top of this file);
 * built when the file changed. Written under node_modules/.cache so that its bare imports (`ws`) resolve. */
export function compiledPath(file: string): string {
  const source = readFileSync(file);
  const hash = createHash("sha256").update(source).update(esbuildVersion).update(file).digest("hex").slice(0, 16);
  const known = compiled.get(file);
  if (known?.hash === hash) return known.path;
  const directory = join(repositoryRoot, "node_modules", ".cache", "chat-room-compiled");
  const path = join(directory, `${basename(file, ".ts")}-${hash}.mjs`);
  if (!existsSync(path)) {
    mkdirSync(directory, { recursive: true });
    const result = buildSync({
      entryPoints: [file],
      bundle: false,
      format: "esm",
      platform: "node",
      target: `node${process.versions.node.split(".")[0]}`,
      sourcemap: "inline",
      define: { "import.meta.url": JSON.stringify(pathToFileURL(file).href) },
      write: false,
      outfile: path,
      logLevel: "silent",
    });
    // Written whole under another name, then renamed: processes building at once never see half a file.
    const partial = `${path}.${process.pid}.partial`;
    writeFileSync(partial, result.outputFiles[0]!.contents);
    renameSync(partial, path);
  }
  compiled.set(file, { hash, path });
  return path;
}

export interface SpawnedServer {
  child: ChildProcess;
  pid: number | undefined;
  port: number;
  /** http://127.0.0.1:PORT and ws://127.0.0.1:PORT (https and wss with --tls-cert) */
  httpUrl: string;
  wsUrl: string;
  /** Everything it printed so far, stdout and stderr together. */
  output(): string;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` (SIGTERM by default) unless it has exited, and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
  /** true while the process has neither exited nor been killed. */
  alive(): boolean;
}

export interface SpawnOptions {
  /** The command that runs a TypeScript file as it is; default: this Node with tsx (server.ts: precompiled). */
  command?: string[];
  /** Run server.ts with `node --import tsx` as `npm start` does, not precompiled: for tests of how it is started. */
  viaTsx?: boolean;
  env?: NodeJS.ProcessEnv;
  /** How long it may take to print the address it listens on (default 20 s). */
  timeoutMs?: number;
  cwd?: string;
}

/** The command line that runs `file`: `command FILE`, server.ts precompiled, or `node --import tsx FILE`. */
function commandFor(file: string, options: SpawnOptions): string[] {
  if (options.command !== undefined) return [...options.command, file];
  if (file === serverPath && options.viaTsx !== true) return [process.execPath, compiledPath(serverPath)];
  return [process.execPath, "--import", "tsx", file];
}

/** Runs `node --import tsx FILE ARGS` (server.ts: precompiled unless viaTsx; or `command FILE ARGS`) from
 * the repository root and resolves once it printed "listening on http://HOST:PORT/". */
export function spawnTypeScript(file: string, args: string[], options: SpawnOptions = {}): Promise<SpawnedServer> {
  const command = commandFor(file, options);
  const timeoutMs = options.timeoutMs ?? 20_000;
  const child = spawn(command[0]!, [...command.slice(1), ...args], {
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
  return waitForOutput(/listening on (https?):\/\/([^\s/]+):(\d+)\//, timeoutMs).then(
    (match) => {
      const secure = match[1] === "https"; // --tls-cert
      const port = Number(match[3]);
      return {
        child,
        pid: child.pid,
        port,
        httpUrl: `${secure ? "https" : "http"}://127.0.0.1:${port}`,
        wsUrl: `${secure ? "wss" : "ws"}://127.0.0.1:${port}`,
        output: () => output,
        waitForOutput,
        exited,
        alive,
        stop(signal: NodeJS.Signals = "SIGTERM") {
          if (alive()) child.kill(signal);
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

/** Starts server.ts as a child process with `--port 0` (unless args name a port) plus `args`. */
export function spawnServer(args: string[] = [], options: SpawnOptions = {}): Promise<SpawnedServer> {
  return spawnTypeScript(serverPath, args.includes("--port") ? args : ["--port", "0", ...args], options);
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs server.ts (precompiled unless viaTsx) with `args` to its end (it must exit by itself within timeoutMs). */
export function runServerToExit(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 20_000,
  options: { viaTsx?: boolean } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const command = commandFor(serverPath, options);
    const child = spawn(command[0]!, [...command.slice(1), ...args], {
      cwd: repositoryRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server.ts ${args.join(" ")} did not exit within ${timeoutMs} ms; output:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A port on 127.0.0.1 that was free a moment ago (listen on 0, read it, close): for a restart on the same port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
