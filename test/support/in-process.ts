// server.ts in the test's own process: its exported startServer on a real
// TCP port of 127.0.0.1, with a config object instead of a command line.
// This is how most tests get a server: it starts in milliseconds, the test
// can look inside (running.room, running.connections), and Node's coverage
// sees the code it runs. Tests where the process itself is the point use
// spawn.ts instead.
import { after, before } from "node:test";
import { format } from "node:util";
import { startServer, type Connection, type RunningServer, type ServerConfig } from "../../server.ts";
import { RawClient } from "./raw-client.ts";

export interface InProcessServer {
  /** What startServer returned: server, room, connections, port, shutdown. */
  running: RunningServer;
  port: number;
  /** http://127.0.0.1:PORT and ws://127.0.0.1:PORT */
  httpUrl: string;
  wsUrl: string;
  /** Every line it logged (config.log), and with a trace what it printed on the console, in order. */
  output(): string;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The server's side of a client's connection (throws when the server no longer holds it). */
  connectionOf(client: RawClient): Connection;
  /** Closes every connection at once and stops listening; safe to call twice. */
  stop(): Promise<void>;
}

/** The console, while a server with a trace runs: its ConsoleTracer prints
 * there, and whatever else it might print must not go unseen either. */
const consoleCaptures = new Set<(line: string) => void>();
const consoleMethods = ["log", "error", "warn", "info"] as const;
const originalConsole = Object.fromEntries(consoleMethods.map((method) => [method, console[method]]));
function captureConsole(sink: (line: string) => void): () => void {
  consoleCaptures.add(sink);
  for (const method of consoleMethods) {
    console[method] = (...args: unknown[]) => {
      const line = format(...args);
      for (const capture of consoleCaptures) capture(line);
    };
  }
  return () => {
    consoleCaptures.delete(sink);
    if (consoleCaptures.size === 0) for (const method of consoleMethods) console[method] = originalConsole[method]!;
  };
}

export interface ServeOptions {
  /** Also keep what is printed on the console while it runs (default: when it traces). */
  captureConsole?: boolean;
}

/** Starts server.ts's startServer on 127.0.0.1, a free port, with `config` over the defaults. */
export async function serveInProcess(
  config: Partial<ServerConfig> = {},
  options: ServeOptions = {},
): Promise<InProcessServer> {
  let output = "";
  const listeners = new Set<() => void>();
  const append = (line: string) => {
    output += `${line}\n`;
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
    for (const listener of listeners) listener();
  };
  const traced = config.trace !== undefined && config.trace !== "off";
  const release = (options.captureConsole ?? traced) ? captureConsole(append) : () => {};
  let running: RunningServer;
  try {
    running = await startServer({ host: "127.0.0.1", port: 0, ...config, log: append });
  } catch (error) {
    release();
    throw error;
  }
  let stopped: Promise<void> | undefined;
  const port = running.port;
  return {
    running,
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    output: () => output,
    waitForOutput: (pattern, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match === null) return;
          cleanup();
          resolve(match);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; output:\n${output.slice(-5000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
    connectionOf: (client) => {
      for (const connection of running.connections) {
        if (connection.socket.remotePort === client.socket.localPort) return connection;
      }
      throw new Error(`the server holds no connection from port ${client.socket.localPort}`);
    },
    stop: () =>
      (stopped ??= running.shutdown(0).finally(() => {
        release();
        RawClient.destroyAllTo(port);
      })),
  };
}

/** One server for the enclosing describe (or file): started before its tests, stopped after them. */
export function useServer(config: Partial<ServerConfig> = {}, options: ServeOptions = {}): () => InProcessServer {
  let server: InProcessServer | undefined;
  before(async () => {
    server = await serveInProcess(config, options);
  });
  after(async () => {
    await server?.stop();
  });
  return () => {
    if (server === undefined) throw new Error("the server starts in a before hook; use it inside a test");
    return server;
  };
}

/** Runs `body` against a fresh server, stopped afterwards whatever happens. */
export async function withServer<T>(
  config: Partial<ServerConfig>,
  body: (server: InProcessServer) => Promise<T>,
): Promise<T> {
  const server = await serveInProcess(config);
  try {
    return await body(server);
  } finally {
    await server.stop();
  }
}

/** Rate limits high enough that only a test about the rate limit meets them. */
export const noRateLimit: Partial<ServerConfig> = { messageRate: 1_000_000, messageBurst: 1_000_000 };
