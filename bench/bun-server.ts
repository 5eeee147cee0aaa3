// bench/bun-server.ts — the second reference of the benchmark: an echo server
// on `Bun.serve`, whose WebSocket is uWebSockets in native code, written the
// way Bun's documentation shows (`websocket: { message(ws, m) { ws.send(m) } }`).
// It is what a user who wants speed would deploy on Bun, so it is the bar
// that server.ts on Node, and server.ts on Bun, are measured against for echo.
// Bun has no chat room of its own here: the fan-out is compared with ws only.
//
//   /echo  every message comes back as the same type: Bun hands a text
//          message over as a string and a binary one as a Buffer, and
//          send() sends a string as text and bytes as binary.
//
// permessage-deflate is off unless --deflate; then it is on with the same
// choices as server.ts and bench/ws-server.ts: messages of 1024 bytes and more
// are compressed (Bun compresses a message only when send() is told to, so the
// threshold is the second argument), a shared compressor (no context kept
// between messages: server_no_context_takeover, as the others), and the
// client's compressed messages inflated. Messages up to 1 MiB, like server.ts;
// as much may wait for the peer as server.ts is given in the benchmark
// (--max-buffered 32 MiB), so that uWebSockets never drops an echo.
//
//   bun bench/bun-server.ts [--port 0] [--deflate]
import process from "node:process";
import { parseArgs } from "node:util";

/** The few parts of Bun's API used here. Bun's own types (bun-types) are not a
 * dependency of this project, and this file is type-checked by Node's tsc. */
interface BunWebSocket {
  send(data: string | Uint8Array, compress?: boolean): number;
}
interface BunServer {
  readonly port: number;
  upgrade(request: Request): boolean;
  stop(closeActiveConnections?: boolean): void;
}
interface BunServeOptions {
  hostname: string;
  port: number;
  fetch(request: Request, server: BunServer): Response | undefined;
  websocket: {
    maxPayloadLength: number;
    backpressureLimit: number;
    idleTimeout: number;
    perMessageDeflate: false | { compress: "shared"; decompress: true };
    message(ws: BunWebSocket, message: string | Uint8Array): void;
  };
}
interface BunApi {
  serve(options: BunServeOptions): BunServer;
}

const bun = (globalThis as { Bun?: BunApi }).Bun;
if (bun === undefined) {
  console.error("bench/bun-server.ts runs under Bun: test/runtimes/node_modules/.bin/bun bench/bun-server.ts");
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    deflate: { type: "boolean", default: false },
  },
});

const DEFLATE_THRESHOLD = 1024;
const deflate = values.deflate;

const server = bun.serve({
  hostname: values.host,
  port: Number(values.port),
  fetch(request, bunServer) {
    if (new URL(request.url).pathname === "/echo" && bunServer.upgrade(request)) return undefined;
    return new Response("WebSocket only: /echo\n", { status: 404, headers: { "Content-Type": "text/plain" } });
  },
  websocket: {
    maxPayloadLength: 1024 * 1024,
    backpressureLimit: 32 * 1024 * 1024,
    idleTimeout: 0, // the benchmark's connections are never idle long; server.ts runs with --keepalive-interval 0
    perMessageDeflate: deflate ? { compress: "shared", decompress: true } : false,
    message: deflate
      ? (ws, message) =>
          ws.send(
            message,
            (typeof message === "string" ? Buffer.byteLength(message) : message.byteLength) >= DEFLATE_THRESHOLD,
          )
      : (ws, message) => {
          ws.send(message);
        },
  },
});

console.log(`Bun.serve reference server listening on http://${values.host}:${server.port}/`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    server.stop(true);
    process.exit(0);
  });
}
