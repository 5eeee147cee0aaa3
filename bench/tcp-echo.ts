// bench/tcp-echo.ts — the ceiling: a plain node:net echo server. Bytes in,
// the same bytes out, with backpressure (pipe), no WebSocket at all. The
// benchmark drives it with the very same frames, windows and connections as
// the WebSocket servers, so it shows what Node's TCP path alone costs.
//
//   node --import tsx bench/tcp-echo.ts [--port 0]
import { createServer } from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } },
});

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
});

server.listen(Number(values.port), values.host, () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : Number(values.port);
  console.log(`tcp echo listening on http://${values.host}:${port}/`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(0));
