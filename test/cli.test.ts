// The command line: --help, bad options, a port already in use, $PORT, and
// the start-up line that tells you where to point the browser.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { repositoryRoot, serverPath, spawnServer, type SpawnedServer } from "./support/spawn.ts";
import { binaries, requirePythonWebsockets } from "./interop/tools.ts";
import { join } from "node:path";

/** Runs server.ts to completion (it must exit by itself) and returns what it printed. */
function run(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", serverPath, ...args], { cwd: repositoryRoot, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server.ts ${args.join(" ")} did not exit; output:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

describe("command line", () => {
  const servers: SpawnedServer[] = [];
  after(async () => {
    for (const server of servers) await server.stop();
  });

  test("--help prints every option and exits 0", async () => {
    const { code, stdout } = await run(["--help"]);
    assert.equal(code, 0);
    for (const option of ["--port", "--host", "--allow-origin", "--max-payload", "--keepalive-interval", "--keepalive-timeout", "--history", "--history-size", "--no-deflate", "--trace", "--max-connections", "--max-connections-per-ip"]) {
      assert.ok(stdout.includes(option), `--help mentions ${option}`);
    }
  });

  test("an unknown option or a bad number is one clear line on stderr and exit 2, no stack trace", async () => {
    for (const args of [["--nope"], ["--port", "seventy"], ["--max-payload", "-5"], ["--port", "70000"]]) {
      const { code, stderr } = await run(args);
      assert.equal(code, 2, args.join(" "));
      assert.equal(stderr.trim().split("\n").length, 1, `one line for ${args.join(" ")}: ${stderr}`);
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    }
  });

  test("a port already in use is one clear line and exit 1, no stack trace", async () => {
    const first = await spawnServer([]);
    servers.push(first);
    const { code, stdout, stderr } = await run(["--port", String(first.port)]);
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.match(stderr.trim(), new RegExp(`^Port ${first.port} is already in use: .*--port ${first.port + 1}\\.$`));
    assert.doesNotMatch(stderr, /\n\s+at /);
  });

  test("start-up prints the URL to open; $PORT chooses the port", async () => {
    const port = await freePort();
    const server = await spawnServer(["--port", String(port)]);
    servers.push(server);
    assert.match(server.output(), new RegExp(`^Chat room listening on http://127\\.0\\.0\\.1:${port}/$`, "m"));
    const viaEnvironment = await freePort();
    const child = await new Promise<{ output: string }>((resolve, reject) => {
      const process_ = spawn(process.execPath, ["--import", "tsx", serverPath], { cwd: repositoryRoot, env: { ...process.env, PORT: String(viaEnvironment) } });
      let output = "";
      const timer = setTimeout(() => reject(new Error(`no start-up line: ${output}`)), 20_000);
      process_.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("listening on")) {
          clearTimeout(timer);
          process_.kill("SIGTERM");
          resolve({ output });
        }
      });
    });
    assert.match(child.output, new RegExp(`listening on http://127\\.0\\.0\\.1:${viaEnvironment}/`));
  });
});

describe("the chat with a real compressing client", () => {
  test("RFC 7692 Python's websockets negotiates permessage-deflate on / and a 2000-character message arrives intact at another member", async () => {
    requirePythonWebsockets();
    const server = await spawnServer([]);
    try {
      const report = await new Promise<string>((resolve, reject) => {
        const child = spawn(binaries.python, [join(repositoryRoot, "test", "interop", "chat_clients.py"), `${server.wsUrl}/`, "2000"]);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        child.on("exit", (code) => {
          clearTimeout(timer);
          if (code === 0) resolve(stdout);
          else reject(new Error(`chat_clients.py exited ${code}: ${stderr}`));
        });
      });
      const result = JSON.parse(report) as { extensions: string[]; names: string[]; sentLength: number; echoIntact: boolean; receivedIntact: boolean };
      for (const extensions of result.extensions) assert.match(extensions, /^permessage-deflate; server_no_context_takeover/);
      assert.deepEqual(result.names, ["py-a", "py-b"]);
      assert.equal(result.sentLength, 2000);
      assert.equal(result.echoIntact, true);
      assert.equal(result.receivedIntact, true);
    } finally {
      await server.stop();
    }
  });
});
