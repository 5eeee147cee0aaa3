// bench/heap.ts — JavaScript heap per idle WebSocket connection, ours and ws,
// measured in one process with a forced garbage collection before and after,
// which RSS growth (what bench.ts reports) cannot give at small counts.
//
//   node --expose-gc --import tsx bench/heap.ts [connections, default 3000]
//
// The client sockets live in the same process, so both figures include the
// same client cost; the difference between them is the servers'.
import process from "node:process";
import { createServer } from "node:http";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { WebSocketServer } from "ws";
import { startServer } from "../server.ts";

const collect = (globalThis as { gc?: () => void }).gc;
if (collect === undefined) {
  console.error("run with node --expose-gc --import tsx bench/heap.ts");
  process.exit(2);
}
const count = Number(process.argv[2] ?? 3000);

async function startOurs(): Promise<{ port: number; close: () => Promise<void> }> {
  const running = await startServer({
    port: 0,
    keepaliveIntervalMs: 0,
    maxConnectionsPerIp: 1_000_000,
    maxConnections: 1_000_000,
    log: () => {},
  });
  return { port: running.port, close: () => running.shutdown(100) };
}

async function startWs(): Promise<{ port: number; close: () => Promise<void> }> {
  const http = createServer();
  const server = new WebSocketServer({ server: http }); // ws keeps its own set of clients (clientTracking)
  server.on("connection", (socket) => {
    socket.on("message", (data, binary) =>
      socket.send(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), { binary }),
    );
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const address = http.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    port,
    close: async () => {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

function openIdle(port: number, sockets: Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      const key = randomBytes(16).toString("base64");
      socket.write(
        `GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.once("data", (chunk: Buffer) =>
      chunk.toString("latin1").startsWith("HTTP/1.1 101") ? resolve() : reject(new Error("no 101")),
    );
    socket.once("error", reject);
    sockets.push(socket);
  });
}

async function measure(
  name: string,
  start: () => Promise<{ port: number; close: () => Promise<void> }>,
): Promise<number> {
  const server = await start();
  const sockets: Socket[] = [];
  for (let index = 0; index < 200; index++) await openIdle(server.port, sockets); // warm up
  collect!();
  collect!();
  const before = process.memoryUsage().heapUsed;
  for (let index = 0; index < count; index++) await openIdle(server.port, sockets);
  await new Promise((resolve) => setTimeout(resolve, 500));
  collect!();
  collect!();
  const perConnection = (process.memoryUsage().heapUsed - before) / count;
  console.log(
    `${name.padEnd(5)} ${perConnection.toFixed(0)} bytes of heap per idle connection (server and client together)`,
  );
  for (const socket of sockets) socket.destroy();
  await server.close();
  return perConnection;
}

const ours = await measure("ours", startOurs);
const theirs = await measure("ws", startWs);
console.log(`ours/ws ${(ours / theirs).toFixed(2)}`);
process.exit(0);
