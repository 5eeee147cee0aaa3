// The runtime matrix: server.ts runs unchanged under Node 22 (with
// --experimental-strip-types), Node 24, Deno and Bun. Each runtime gets its
// own server, and clients nobody here wrote talk to it: Node 24's standard
// WebSocket (test/interop/ws-client.ts) for echo, the chat welcome and the
// close; Python's websockets for permessage-deflate in both directions (Node's
// WebSocket only decompresses, so this is what exercises each runtime's
// node:zlib inflating). RawClient stays connected while the server is sent
// SIGTERM, to see the 1001 it promises on shutdown.
//
// A missing runtime binary, or one that cannot run, fails its tests with a
// message saying how to install it: never a skip.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { RawClient } from "./support/raw-client.ts";
import { ChatClient } from "./support/chat-client.ts";
import { TestRedis, waitForHealth } from "./support/redis.ts";
import { waitUntil } from "./support/wait.ts";
import { Opcode, encodeClosePayload } from "../server.ts";
import type { MessageSpec } from "./interop/ws-client.ts";
import {
  assertEchoes,
  assertServerCompressed,
  binaries,
  requireBinary,
  runNodeClient,
  runPythonClient,
  runtimeInstallHint,
  type PythonStep,
} from "./interop/tools.ts";

interface Runtime {
  name: string;
  binary: string;
  /** How the runtime runs a TypeScript file (server.ts is appended by startServer). */
  command: string[];
  /** What `binary --version` prints first. */
  version: RegExp;
}

const runtimes: Runtime[] = [
  {
    name: "Node 22",
    binary: binaries.node22,
    command: [binaries.node22, "--experimental-strip-types"],
    version: /^v22\./,
  },
  { name: "Node 24", binary: binaries.node24, command: [binaries.node24], version: /^v24\./ },
  {
    name: "Deno",
    binary: binaries.deno,
    command: [binaries.deno, "run", "--allow-net", "--allow-read", "--allow-env"],
    version: /^deno 2\./,
  },
  { name: "Bun", binary: binaries.bun, command: [binaries.bun], version: /^1\./ },
];

/** Short, so that the slowloris test is quick; every other test finishes its handshake well within it. */
const handshakeTimeoutMs = 1500;

const echoMessages: MessageSpec[] = [
  { label: "text 125 B", kind: "text", size: 125, content: "mixed" },
  { label: "text 126 B", kind: "text", size: 126, content: "mixed" },
  { label: "binary 0 B", kind: "binary", size: 0, content: "random" },
  { label: "binary 65,536 B", kind: "binary", size: 65_536, content: "random" },
  { label: "compressible text 200,000 B", kind: "text", size: 200_000, content: "repeat" },
];

// The runtimes side by side (each its own process and port); within one, the tests go in order.
describe("the runtime matrix", { concurrency: true }, () => {
  for (const runtime of runtimes) {
    describe(`server.ts under ${runtime.name}`, { concurrency: 1 }, () => {
      let server: SpawnedServer | undefined;

      /** The running server, or a loud failure if it could not start. */
      const running = (): SpawnedServer => {
        if (server === undefined)
          throw new Error(`the ${runtime.name} server did not start (see the before hook's failure)`);
        return server;
      };

      before(async () => {
        const version = requireBinary(runtime.name, runtime.binary, runtimeInstallHint);
        assert.match(version, runtime.version, `${runtime.binary} --version printed ${JSON.stringify(version)}`);
        server = await spawnServer(["--handshake-timeout", String(handshakeTimeoutMs)], {
          command: runtime.command,
          timeoutMs: 30_000,
        });
      });

      after(async () => {
        if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) {
          // Normally the SIGTERM test has stopped it already; otherwise do it now, and never wait unbounded.
          const stopped = server.stop("SIGTERM");
          const timer = setTimeout(() => server?.child.kill("SIGKILL"), 5000);
          await stopped;
          clearTimeout(timer);
        }
      });

      test("§4.1 GET / serves the chat page (HTML), and GET /client.js its script", async () => {
        const page = await fetch(`${running().httpUrl}/`, { signal: AbortSignal.timeout(10_000) });
        assert.equal(page.status, 200);
        assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
        assert.match(await page.text(), /^<!doctype html>/i);
        const script = await fetch(`${running().httpUrl}/client.js`, { signal: AbortSignal.timeout(10_000) });
        assert.equal(script.status, 200);
        assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
        assert.ok((await script.text()).length > 0);
      });

      test(
        "§5.6 /echo echoes text and binary byte for byte (Node 24's WebSocket), and §7.1.2 a close with 1000 is " +
          "answered with 1000",
        async () => {
          const report = await runNodeClient({
            url: `${running().wsUrl}/echo`,
            messages: echoMessages,
            close: { code: 1000, reason: "bye" },
          });
          assertEchoes(report.results, echoMessages);
          assert.equal(report.close.code, 1000);
          assert.ok(
            report.close.reason === "" || report.close.reason === "bye",
            `close reason ${JSON.stringify(report.close.reason)}`,
          );
          assert.equal(report.close.wasClean, true);
        },
      );

      test(
        "RFC 7692 permessage-deflate works in both directions (python websockets): compressed messages echo " +
          "exactly, and the server's come compressed",
        async () => {
          const messages = [
            { op: "message", label: "compressible text 300,000 B", kind: "text", size: 300_000, content: "repeat" },
            {
              op: "message",
              label: "mixed text 70,000 B in 3 frames",
              kind: "text",
              size: 70_000,
              content: "mixed",
              fragments: 3,
            },
            { op: "message", label: "random binary 100,000 B", kind: "binary", size: 100_000, content: "random" },
            {
              op: "message",
              label: "compressible text again (context takeover)",
              kind: "text",
              size: 5000,
              content: "repeat",
            },
            { op: "message", label: "short text 100 B", kind: "text", size: 100, content: "repeat" },
          ] as const satisfies readonly PythonStep[];
          const report = await runPythonClient({
            url: `${running().wsUrl}/echo`,
            compression: "deflate",
            steps: [...messages, { op: "ping", label: "ping", size: 16 }],
            close: { code: 1000, reason: "bye" },
          });
          assert.equal(report.extensions, "permessage-deflate; server_no_context_takeover; client_max_window_bits=12");
          assertEchoes(
            report.steps.filter((step) => step.sentSha256 !== undefined),
            messages,
          );
          // The client compresses what it sends; the server's echoes must be compressed too (RSV1).
          assertServerCompressed(report.steps, messages);
          assert.equal(report.steps.at(-1)?.pong, true, "the ping got its pong");
          assert.equal(report.close.code, 1000);
        },
      );

      test(
        "§4.2.2 the chat room on / answers the handshake " + "and welcomes a newcomer by the name it asked for",
        async () => {
          const report = await runNodeClient({
            url: `${running().wsUrl}/?name=${encodeURIComponent(`tester ${runtime.name}`)}`,
            protocols: ["chat"],
            collectFirst: true,
            messages: [],
            close: { code: 1000, reason: "" },
          });
          assert.equal(report.protocol, "chat", "the server chose the subprotocol offered");
          const welcome = JSON.parse(report.first ?? "null") as {
            type?: unknown;
            name?: unknown;
            users?: unknown;
            seq?: unknown;
            epoch?: unknown;
          };
          assert.equal(welcome.type, "welcome");
          assert.equal(welcome.name, `tester ${runtime.name}`);
          assert.ok(
            Array.isArray(welcome.users) && welcome.users.includes(`tester ${runtime.name}`),
            "the newcomer is among the users",
          );
          assert.equal(typeof welcome.seq, "number");
          assert.equal(typeof welcome.epoch, "string");
          assert.equal(report.close.code, 1000);
        },
      );

      test(
        "§10.4 slowloris: two requests that stop half-way, 500 ms apart, are each answered 408 no sooner than " +
          "the handshake timeout after their own connection (node:http's headersTimeout, which server.ts relies on)",
        async () => {
          const open = async () => {
            const connectedAt = Date.now();
            const raw = await RawClient.open(running().port, {
              request: "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n",
              awaitAnswer: false,
            });
            return { raw, connectedAt };
          };
          const first = await open();
          await first.raw.waitFor(() => first.raw.closed, 500).catch(() => undefined); // the stagger: 500 ms
          const second = await open();
          for (const { raw, connectedAt } of [first, second]) {
            await raw.waitForClose(handshakeTimeoutMs + 5000);
            const waited = Date.now() - connectedAt;
            assert.ok(
              waited >= handshakeTimeoutMs - 20,
              `dropped after ${waited} ms, before the ${handshakeTimeoutMs} ms`,
            );
            assert.equal(raw.handshake?.status, 408, `got ${JSON.stringify(raw.handshake)}`);
          }
        },
      );

      test("§7.4.1 on SIGTERM the server closes open connections with 1001 (going away) and exits 0", async () => {
        const current = running();
        const client = await RawClient.open(current.port, { path: "/echo" });
        try {
          assert.equal(client.handshake?.status, 101);
          client.sendText("still here");
          assert.equal((await client.next("text")).text, "still here");
          current.child.kill("SIGTERM");
          const close = await client.next("close", 10_000);
          assert.equal(close.code, 1001);
          assert.equal(close.reason, "server shutting down");
          client.sendFrame(Opcode.Close, encodeClosePayload(1001)); // complete the closing handshake
          await client.waitForClose(10_000);
        } finally {
          client.destroy();
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const exitCode = await Promise.race([
          current.exited,
          new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still running after 10 s"), 10_000))),
        ]);
        clearTimeout(timer);
        assert.equal(exitCode, 0, `the ${runtime.name} server's exit; its output:\n${current.output()}`);
        assert.match(current.output(), /SIGTERM: closing every connection with 1001/);
      });
    });
  }
});

// The Redis client (RESP2 on node:net) under every runtime: one room, a server
// on each runtime, each with a client that speaks; everyone hears everyone,
// in one order.
describe("one room on Redis, a server on each runtime", { timeout: 90_000 }, () => {
  let redis: TestRedis;
  const servers: SpawnedServer[] = [];
  const clients: ChatClient[] = [];
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    for (const client of clients) client.destroy();
    await Promise.all(servers.map((server) => server.stop("SIGKILL")));
    await redis.destroy();
  });

  test("Node 22, Node 24, Deno and Bun serve one room: every message reaches every client once, in one order", async () => {
    for (const runtime of runtimes) requireBinary(runtime.name, runtime.binary, runtimeInstallHint);
    servers.push(
      ...(await Promise.all(
        runtimes.map((runtime) =>
          spawnServer(["--redis", redis.url, "--redis-timeout", "1000"], {
            command: runtime.command,
            timeoutMs: 30_000,
          }),
        ),
      )),
    );
    for (const server of servers) await waitForHealth(server, 200, 20_000);
    clients.push(
      ...(await Promise.all(servers.map((server) => ChatClient.join(server.port, "", { ignorePresence: true })))),
    );
    clients.forEach((client, index) => client.say(`runtime-${index}`, `from ${runtimes[index]!.name}`));
    await waitUntil(
      () => clients.every((client) => client.messages().length >= runtimes.length),
      20_000,
      "every message everywhere",
    );
    const order = clients[0]!.messages().map((message) => message.id);
    assert.deepEqual([...order].sort(), runtimes.map((_, index) => `runtime-${index}`).sort());
    for (const client of clients)
      assert.deepEqual(
        client.messages().map((message) => message.id),
        order,
      );
  });
});
