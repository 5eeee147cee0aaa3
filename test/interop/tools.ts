// Plumbing shared by test/interop.test.ts and test/runtimes.test.ts: where the
// runtime binaries and the client scripts are, a loud check that a binary is
// really there and runs, and a bounded way to run a client script and read
// the JSON it prints.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repositoryRoot } from "../support/spawn.ts";
import type { Plan, Report } from "./ws-client.ts";

const runtimeModules = join(repositoryRoot, "test", "runtimes", "node_modules");

export const binaries = {
  node22: join(runtimeModules, "node22", "bin", "node"),
  node24: join(runtimeModules, "node24", "bin", "node"),
  deno: join(runtimeModules, ".bin", "deno"),
  bun: join(runtimeModules, ".bin", "bun"),
  /** Debian's Python, which has Debian's python3-websockets (the `python3` on PATH may not). */
  python: "/usr/bin/python3",
} as const;

export const wsClientScript = join(repositoryRoot, "test", "interop", "ws-client.ts");
export const pythonClientScript = join(repositoryRoot, "test", "interop", "echo_client.py");

export const runtimeInstallHint =
  "install the runtime matrix with `node test/runtimes/ensure.mjs` (npm test runs it first)";
export const pythonInstallHint =
  "install it with `apt-get install -y --no-install-recommends python3-websockets` (it must import from " +
  "/usr/bin/python3)";

const checked = new Map<string, string>();

/** Throws a clear error unless `path` exists and `path ...versionArgs` exits 0
 * (checked once per path); returns the first line it printed. Never skips. */
export function requireBinary(name: string, path: string, hint: string, versionArgs: string[] = ["--version"]): string {
  const known = checked.get(path);
  if (known !== undefined) return known;
  if (!existsSync(path)) throw new Error(`${name} is missing: ${path} does not exist; ${hint}`);
  const result = spawnSync(path, versionArgs, { encoding: "utf8", timeout: 30_000 });
  if (result.error !== undefined || result.status !== 0) {
    const why =
      result.error?.message ?? `exit status ${result.status}, signal ${result.signal}: ${result.stderr.trim()}`;
    throw new Error(`${name} at ${path} cannot run (${why}); ${hint}`);
  }
  const version = result.stdout.trim().split("\n")[0] ?? "";
  checked.set(path, version);
  return version;
}

/** Throws a clear error unless Debian's Python can import websockets; returns its version. */
export function requirePythonWebsockets(): string {
  const known = checked.get("python websockets");
  if (known !== undefined) return known;
  requireBinary(
    "/usr/bin/python3",
    binaries.python,
    `install Python with apt-get install -y python3; then ${pythonInstallHint}`,
  );
  const result = spawnSync(binaries.python, ["-c", "import websockets; print(websockets.__version__)"], {
    encoding: "utf8",
    timeout: 30_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `python websockets is not importable from ${binaries.python}: ${result.stderr.trim().split("\n").pop()}; ` +
        `${pythonInstallHint}`,
    );
  }
  checked.set("python websockets", result.stdout.trim());
  return result.stdout.trim();
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, killing it after timeoutMs. Never rejects. */
export function runProcess(command: string, args: string[], timeoutMs = 60_000): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: repositoryRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + error.message });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a client and parses the one JSON line it prints; a failure says what it printed. */
export async function runJsonClient<T>(what: string, command: string, args: string[], timeoutMs = 60_000): Promise<T> {
  const result = await runProcess(command, args, timeoutMs);
  const line = result.stdout.trim().split("\n").pop() ?? "";
  if (result.code !== 0 || line === "") {
    const exit = `${result.code}${result.signal ? `, ${result.signal}` : ""}`;
    throw new Error(`${what} failed (exit ${exit}):\n${result.stderr.trim()}\n${result.stdout.trim()}`);
  }
  return JSON.parse(line) as T;
}

/** The standard WebSocket of Node 24 (undici), through test/interop/ws-client.ts. */
export function runNodeClient(plan: Plan): Promise<Report> {
  requireBinary("node24", binaries.node24, runtimeInstallHint);
  return runJsonClient<Report>("the Node 24 WebSocket client", binaries.node24, [wsClientScript, JSON.stringify(plan)]);
}

/** Deno's WebSocket, through the same script. */
export function runDenoClient(plan: Plan): Promise<Report> {
  requireBinary("deno", binaries.deno, runtimeInstallHint);
  return runJsonClient<Report>("the Deno WebSocket client", binaries.deno, [
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    wsClientScript,
    JSON.stringify(plan),
  ]);
}

// ── The Python client's plan and report (test/interop/echo_client.py) ──────

export type PythonStep =
  | {
      op: "message";
      label: string;
      kind: "text" | "binary";
      size: number;
      content: "mixed" | "random" | "repeat";
      fragments?: number;
    }
  | { op: "ping"; label: string; size: number }
  | { op: "too_big"; label: string; kind: "text" | "binary"; size: number; content: "mixed" | "random" | "repeat" };

export interface PythonPlan {
  url: string;
  compression: "deflate" | null;
  steps: PythonStep[];
  close?: { code: number; reason: string };
}

export interface PythonStepResult {
  label: string;
  sentKind?: "text" | "binary";
  sentBytes?: number;
  sentSha256?: string;
  fragments?: number;
  receivedKind?: "text" | "binary";
  receivedBytes?: number;
  receivedSha256?: string;
  /** RSV1 on the echo's first frame (RFC 7692 §6); null without an extension. */
  receivedCompressed?: boolean | null;
  pong?: boolean;
  size?: number;
  closedByServer?: boolean;
  unexpectedEcho?: boolean;
  code?: number;
  reason?: string;
}

export interface PythonReport {
  library: string;
  extensions: string | null;
  steps: PythonStepResult[];
  close: { code: number; reason: string };
}

export function runPythonClient(plan: PythonPlan): Promise<PythonReport> {
  requirePythonWebsockets();
  return runJsonClient<PythonReport>("the python websockets client", binaries.python, [
    pythonClientScript,
    JSON.stringify(plan),
  ]);
}

// ── Checking what came back ────────────────────────────────────────────────

/** What a client reports of one echoed message (ws-client.ts and echo_client.py alike). */
export interface EchoResult {
  label: string;
  sentKind?: "text" | "binary";
  sentBytes?: number;
  sentSha256?: string;
  receivedKind?: "text" | "binary";
  receivedBytes?: number;
  receivedSha256?: string;
}

/** One echo per message, in order, each of the same type, length and bytes as what was sent. */
export function assertEchoes(
  results: readonly EchoResult[],
  expected: ReadonlyArray<{ label: string; kind: "text" | "binary"; size: number }>,
): void {
  assert.deepEqual(
    results.map((result) => result.label),
    expected.map((spec) => spec.label),
    "one echo per message, in order",
  );
  for (const [index, spec] of expected.entries()) {
    const result = results[index]!;
    assert.equal(result.sentBytes, spec.size, `${spec.label}: the client sent ${spec.size} bytes`);
    assert.equal(result.receivedKind, spec.kind, `${spec.label}: the echo has the same type`);
    assert.equal(result.receivedBytes, spec.size, `${spec.label}: the echo has the same length`);
    assert.equal(result.receivedSha256, result.sentSha256, `${spec.label}: the echo has the same bytes`);
  }
}

/** The server's default --deflate-threshold: shorter messages go uncompressed. */
export const DEFLATE_THRESHOLD = 1024;

/**
 * RFC 7692 §6, seen from the client: the echoes the server sent compressed
 * (RSV1) are exactly the compressible ones from the threshold up, and none
 * below it. Random bytes, which deflate cannot shrink, may go either way.
 */
export function assertServerCompressed(
  steps: readonly PythonStepResult[],
  specs: ReadonlyArray<{ label: string; size: number; content: "mixed" | "random" | "repeat" }>,
): void {
  for (const spec of specs) {
    const step = steps.find((candidate) => candidate.label === spec.label);
    assert.ok(step !== undefined, `no step ${spec.label}`);
    assert.notEqual(step.receivedCompressed, null, `${spec.label}: permessage-deflate was agreed`);
    if (spec.size < DEFLATE_THRESHOLD) assert.equal(step.receivedCompressed, false, `${spec.label}: sent uncompressed`);
    else if (spec.content !== "random")
      assert.equal(step.receivedCompressed, true, `${spec.label}: sent compressed (RSV1)`);
  }
}
