// The command line, where the process is the point: --help, bad options, a
// port already in use, $PORT, and the start-up line that tells you where to
// point the browser. Each is server.ts run as a program, the way `npm start`
// runs it (`node --import tsx server.ts`, not the precompiled copy the other
// tests spawn: see test/support/spawn.ts), except three of the bad numbers,
// which need only the same code; the option table itself is tested
// in-process by test/options.test.ts.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { commandsForPort, helpText, optionTable, parseCommandLine } from "../server.ts";
import { binaries, requirePythonWebsockets } from "./interop/tools.ts";
import { serveInProcess, withServer } from "./support/in-process.ts";
import {
  freePort,
  repositoryRoot,
  runServerToExit,
  serverPath,
  spawnServer,
  spawnTypeScript,
} from "./support/spawn.ts";

/** How `npm start` runs it: these tests are about how the server is started. */
const asStarted = { viaTsx: true };
const runToExit = (args: string[]) => runServerToExit(args, {}, undefined, asStarted);

/** A value of the kind a --help line names, for trying each flag. */
const sampleValues: Record<string, string> = {
  N: "9",
  MS: "1000",
  BYTES: "4096",
  FILE: "history.jsonl",
  ADDRESS: "127.0.0.1",
  ORIGIN: "http://a.example",
  URL: "redis://127.0.0.1:6379",
  HEX: "81 80 37 fa 21 3d",
};

/** Every flag --help shows, as the argument lists that use it: "--port N" → ["--port", "9"]. */
function flagsShownIn(help: string): Map<string, string[]> {
  const shown = new Map<string, string[]>();
  for (const line of help.split("\n")) {
    if (!line.startsWith("  --")) continue;
    const syntax = line.trim().split(/\s{2,}/)[0]!;
    for (const alternative of syntax.split(" / ")) {
      const [flag, value] = alternative.split(" ") as [string, string | undefined];
      if (value !== undefined) assert.ok(value in sampleValues, `no sample value for ${value} (${line.trim()})`);
      shown.set(flag, value === undefined ? [flag] : [flag, sampleValues[value]!]);
    }
  }
  return shown;
}

describe("command line", () => {
  test("--help prints the help text and exits 0; it names every flag the parser accepts, and only those", async () => {
    const { code, stdout, stderr } = await runToExit(["--help"]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, helpText, "the process prints helpText, whole");
    const shown = flagsShownIn(stdout);
    // Every flag shown is accepted, and does something.
    for (const [flag, argv] of shown) {
      let parsed: object | undefined;
      assert.doesNotThrow(() => (parsed = parseCommandLine(argv)), `${argv.join(" ")} is accepted`);
      assert.ok(Object.keys(parsed!).length > 0, `${flag}: ${argv.join(" ")} sets something`);
    }
    // Every flag of the table the parser is made from is shown.
    for (const row of optionTable) assert.ok(shown.has(`--${row.flag}`), `--help shows --${row.flag}`);
    assert.ok(shown.has("--trace=full"));
    assert.equal(shown.size, optionTable.length + 1, "nothing else (--trace=full is the one extra spelling)");
  });

  test("an unknown option or a bad number is one clear line on stderr and exit 2, no stack trace", async () => {
    const cases = [["--nope"], ["--port", "seventy"], ["--max-payload", "-5"], ["--port", "70000"]];
    // The first as npm start runs it; the bad numbers in the precompiled copy, the same code at a fifth of the CPU.
    const runs = await Promise.all(cases.map((args, index) => (index === 0 ? runToExit(args) : runServerToExit(args))));
    for (const [index, { code, stderr }] of runs.entries()) {
      const args = cases[index]!.join(" ");
      assert.equal(code, 2, args);
      assert.equal(stderr.trim().split("\n").length, 1, `one line for ${args}: ${stderr}`);
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    }
  });

  test("a port already in use is one clear line and exit 1, no stack trace", async () => {
    await withServer({}, async (first) => {
      const { code, stdout, stderr } = await runToExit(["--port", String(first.port)]);
      assert.equal(code, 1);
      assert.equal(stdout, "");
      const next = first.port + 1;
      assert.match(
        stderr.trim(),
        new RegExp(`^Port ${first.port} is already in use: .*--port ${next} {2}or {2}PORT=${next} `),
      );
      assert.match(stderr, /node --import tsx server\.ts --port/, "the command this process was started with");
      assert.doesNotMatch(stderr, /\n\s+at /);
    });
  });

  test("the hint for another port works for how the server was started: npm eats a bare --port", () => {
    assert.deepEqual(commandsForPort(5501, { kind: "npm" }), ["PORT=5501 npm start", "npm start -- --port 5501"]);
    assert.deepEqual(commandsForPort(5501, { kind: "command", command: "node server.ts" }), [
      "node server.ts --port 5501",
      "PORT=5501 node server.ts",
    ]);
  });

  test("--help's usage lines are commands that run on each runtime (Node 20 has no type stripping)", () => {
    const usage = helpText.split("\n\n")[0]!;
    assert.match(usage, /^Usage: npm start -- \[options\]/);
    for (const form of [
      "node server.ts",
      "node --experimental-strip-types server.ts",
      "deno run --allow-net --allow-read --allow-env server.ts",
      "bun server.ts",
    ])
      assert.ok(usage.includes(form), form);
  });

  test("start-up prints the URL to open; --port and $PORT choose the port", async () => {
    const [byFlag, byEnvironment] = await Promise.all([freePort(), freePort()]);
    const [flagged, environed] = await Promise.all([
      spawnServer(["--port", String(byFlag)], asStarted),
      spawnTypeScript(serverPath, [], { ...asStarted, env: { PORT: String(byEnvironment) } }),
    ]);
    try {
      assert.match(flagged.output(), new RegExp(`^Chat room listening on http://127\\.0\\.0\\.1:${byFlag}/$`, "m"));
      assert.match(
        environed.output(),
        new RegExp(`^Chat room listening on http://127\\.0\\.0\\.1:${byEnvironment}/$`, "m"),
      );
    } finally {
      await Promise.all([flagged.stop(), environed.stop()]);
    }
  });
});

describe("the chat with a real compressing client", () => {
  test(
    "RFC 7692 Python's websockets negotiates permessage-deflate on / and a 2000-character message arrives intact " +
      "at another member",
    async () => {
      requirePythonWebsockets();
      const server = await serveInProcess();
      try {
        const report = await new Promise<string>((resolve, reject) => {
          const script = join(repositoryRoot, "test", "interop", "chat_clients.py");
          const child = spawn(binaries.python, [script, `${server.wsUrl}/`, "2000"]);
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
        const result = JSON.parse(report) as {
          extensions: string[];
          names: string[];
          sentLength: number;
          echoIntact: boolean;
          receivedIntact: boolean;
        };
        for (const extensions of result.extensions)
          assert.match(extensions, /^permessage-deflate; server_no_context_takeover/);
        assert.deepEqual(result.names, ["py-a", "py-b"]);
        assert.equal(result.sentLength, 2000);
        assert.equal(result.echoIntact, true);
        assert.equal(result.receivedIntact, true);
      } finally {
        await server.stop();
      }
    },
  );
});
