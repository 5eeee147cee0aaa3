// bench/tcp-floor.ts — the floors: the least node:net itself spends on what
// the chat servers do, with no WebSocket, no HTTP and no JSON, so that a
// figure per delivery or per connection can be set against what Node costs
// before any protocol is spoken.
//
//   --broadcast  every chunk read from any socket is written to every socket
//                in the room, the sender included: a chat room's fan-out,
//                one write call per member and nothing else. Each socket is
//                sent one byte, "*", when it joins: the client's sign that it
//                is in the room (the chat servers' welcome), so that nothing
//                is said before everyone can hear it.
//   --idle       accepted sockets are kept in a Set with a 'close' and an
//                'error' listener each, and nothing else: RSS per idle
//                connection, as little as a server that holds them can pay.
//
//   node --import tsx bench/tcp-floor.ts --broadcast|--idle [--port 0]
import { createServer, type Socket } from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    broadcast: { type: "boolean", default: false },
    idle: { type: "boolean", default: false },
  },
});
if (values.broadcast === values.idle) throw new Error("say --broadcast or --idle");

const WELCOME = Buffer.from("*");
const room = new Set<Socket>();

const server = createServer((socket) => {
  room.add(socket);
  socket.on("close", () => room.delete(socket));
  socket.on("error", () => socket.destroy());
  if (values.broadcast) {
    socket.setNoDelay(true); // as both chat servers do: each message leaves at once
    socket.on("data", (chunk: Buffer) => {
      for (const member of room) member.write(chunk);
    });
    socket.write(WELCOME);
  }
});

server.listen(Number(values.port), values.host, () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : Number(values.port);
  console.log(`tcp floor (${values.broadcast ? "broadcast" : "idle"}) listening on http://${values.host}:${port}/`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(0));
