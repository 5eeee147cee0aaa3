// bench/ws-server.ts — the reference server of the benchmark, written on `ws`
// the way its documentation shows: a WebSocketServer on a node:http server,
// with `bufferutil` installed (a devDependency), as ws's documentation tells
// users who want speed: ws then masks and unmasks in native code.
//
//   /echo  every message comes back as the same type (text stays text)
//   /      a chat room, the part of server.ts's wire contract that fan-out
//          needs: {"type":"say","id","text"} → one JSON.stringify per
//          broadcast, {"type":"message","seq","id","from","text","time"},
//          the same string sent to every member, sender included.
//
// permessage-deflate is off unless --deflate; then it is on with the same
// choices as server.ts: threshold 1024, server_no_context_takeover, and
// client_no_context_takeover accepted when offered. Messages up to 1 MiB,
// like server.ts.
//
//   node --import tsx bench/ws-server.ts [--port 0] [--deflate]
import { createServer } from "node:http";
import process from "node:process";
import { parseArgs } from "node:util";
import { WebSocket, WebSocketServer } from "ws";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    deflate: { type: "boolean", default: false },
  },
});

const server = createServer((_request, response) => {
  response.writeHead(404, { "Content-Type": "text/plain" });
  response.end("WebSocket only: /echo and /\n");
});

const wss = new WebSocketServer({
  server,
  maxPayload: 1024 * 1024,
  perMessageDeflate: values.deflate ? { threshold: 1024, serverNoContextTakeover: true } : false,
});

const room = new Set<WebSocket>();
let seq = 0;
let guests = 0;

function echo(ws: WebSocket): void {
  ws.on("message", (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
}

function join(ws: WebSocket): void {
  const name = `访客${++guests}`;
  room.add(ws);
  ws.on("close", () => room.delete(ws));
  ws.on("message", (data, isBinary) => {
    if (isBinary) return ws.close(1003, "this room speaks JSON in text frames");
    let message: { type?: unknown; id?: unknown; text?: unknown };
    try {
      message = JSON.parse((data as Buffer).toString("utf8")) as typeof message;
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null || message.type !== "say") return;
    const { id, text } = message;
    if (typeof id !== "string" || typeof text !== "string" || id === "" || text.trim() === "") return;
    const out = JSON.stringify({ type: "message", seq: ++seq, id, from: name, text, time: Date.now() });
    for (const member of room) if (member.readyState === WebSocket.OPEN) member.send(out);
  });
}

wss.on("connection", (ws, request) => {
  ws.on("error", () => ws.terminate());
  const url = request.url ?? "/";
  const mark = url.indexOf("?");
  const path = mark === -1 ? url : url.slice(0, mark);
  if (path === "/echo") echo(ws);
  else if (path === "/") join(ws);
  else ws.close(1008, "no such endpoint");
});

server.listen(Number(values.port), values.host, () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : Number(values.port);
  console.log(`ws reference server listening on http://${values.host}:${port}/`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const ws of room) ws.terminate();
    wss.close();
    server.close();
    process.exit(0);
  });
}
