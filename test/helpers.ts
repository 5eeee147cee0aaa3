// Shared test plumbing: start the real server as a child process on an
// ephemeral port, and wait for things without sleeping blindly.
import { spawnTypeScriptServer, type SpawnedServer, type SpawnOptions } from "../scripts/lib/spawn.ts";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const serverPath = join(repositoryRoot, "server.ts");

export interface RunningServer extends SpawnedServer {
  httpUrl: string; // http://127.0.0.1:PORT
  wsUrl: string; // ws://127.0.0.1:PORT
}

export type StartOptions = SpawnOptions;

/** Starts server.ts with `--port 0` plus `args` and resolves once it prints the URL it listens on. */
export async function startServer(args: string[] = [], options: StartOptions = {}): Promise<RunningServer> {
  const server = await spawnTypeScriptServer(serverPath, args.includes("--port") ? args : ["--port", "0", ...args], options);
  return { ...server, httpUrl: `http://127.0.0.1:${server.port}`, wsUrl: `ws://127.0.0.1:${server.port}` };
}

/** Polls `condition` every 10 ms until it is true, or throws after timeoutMs. */
export async function waitUntil(condition: () => boolean, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** "81 05 48" → bytes: frames in tests are written as the RFC writes them. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}
