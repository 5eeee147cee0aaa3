// Interoperability: clients that nobody here wrote talk to /echo.
//
//   - Node's standard WebSocket (undici), run under Node 24's binary;
//   - Python's `websockets` library (Debian's python3-websockets);
//   - Deno's standard WebSocket.
//
// The Node and Deno clients are the same script (test/interop/ws-client.ts)
// on two runtimes; Python's is test/interop/echo_client.py. Each client
// makes its payloads, sends them one at a time, hashes what it sent and what
// came back, and prints a JSON report that is checked here. Neither the Node
// nor the Deno WebSocket API can send a fragmented message or a ping, so
// those are sent with RawClient in the "§5.4" and "§5.5.2" tests below.
//
// One server for the whole file, in this process (the clients are the
// processes here), with --verbose so that it reports what it saw of each
// connection (negotiated deflate, close, violations). Python's client also
// reports whether each echo came compressed (RSV1), which the WHATWG API
// cannot tell.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { useServer } from "./support/in-process.ts";
import { waitUntil } from "./support/wait.ts";
import { RawClient } from "./support/raw-client.ts";
import { Opcode, encodeClosePayload } from "../server.ts";
import type { MessageSpec, Report } from "./interop/ws-client.ts";
import {
  assertEchoes,
  assertServerCompressed,
  runDenoClient,
  runNodeClient,
  runPythonClient,
  type PythonReport,
  type PythonStep,
  type PythonStepResult,
} from "./interop/tools.ts";

const MiB = 1024 * 1024;
/** The sizes where the length encoding changes (§5.2), and the server's default maximum, exactly. */
const sizes = [0, 125, 126, 65_535, 65_536, MiB];
const label = (kind: "text" | "binary", size: number) => `${kind} ${size} B`;
/** The Sec-WebSocket-Extensions the server answers a default offer with (RFC 7692 §7). */
const EXPECTED_DEFLATE = "permessage-deflate; server_no_context_takeover; client_max_window_bits=12";

/** Text mixes 1- to 4-byte UTF-8 characters; binary is random, so incompressible. */
const matrix: MessageSpec[] = sizes.flatMap((size) => [
  { label: label("text", size), kind: "text" as const, size, content: "mixed" as const },
  { label: label("binary", size), kind: "binary" as const, size, content: "random" as const },
]);

const live = useServer({ verbose: true });
/** What the server logged. */
const server = { output: () => live().output() };
const echoUrl = () => `${live().wsUrl}/echo`;

// ── What the server reports ────────────────────────────────────────────────

interface ServerView {
  opened: Array<{ id: number; path: string; deflate: boolean }>;
  closed: number[];
  violations: Array<{ id: number; code: number; reason: string }>;
}

function serverViewSince(mark: number): ServerView {
  const text = server.output().slice(mark);
  const view: ServerView = { opened: [], closed: [], violations: [] };
  for (const match of text.matchAll(/^connection (\d+) opened from \S+ on (\S+)( \(permessage-deflate\))?$/gm)) {
    view.opened.push({ id: Number(match[1]), path: match[2]!, deflate: match[3] !== undefined });
  }
  for (const match of text.matchAll(/^connection (\d+) closed(?: \(\d+\))?$/gm)) view.closed.push(Number(match[1]));
  for (const match of text.matchAll(/^connection (\d+): closing with (\d+)(?: \(\w+\))?: (.*)$/gm)) {
    view.violations.push({ id: Number(match[1]), code: Number(match[2]), reason: match[3]! });
  }
  return view;
}

/** Waits until the server has logged the end of every connection opened since `mark`, and returns what it logged. */
async function serverSawAllClosed(mark: number, expectedConnections: number): Promise<ServerView> {
  await waitUntil(
    () => {
      const view = serverViewSince(mark);
      return view.opened.length >= expectedConnections && view.opened.every(({ id }) => view.closed.includes(id));
    },
    5000,
    `the server to log ${expectedConnections} connection(s) opened and closed; its ` +
      `output:\n${server.output().slice(mark)}`,
  );
  return serverViewSince(mark);
}

// ── Checking the reports ───────────────────────────────────────────────────

/** §7.1.2 and §5.5.1: the server answers a close with the same code. It may
 * echo the reason or not (the RFC asks only for the code); both are accepted. */
function assertCleanClose(close: { code: number; reason: string; wasClean?: boolean }, sentReason: string): void {
  assert.equal(close.code, 1000, "the server's close frame carries 1000");
  assert.ok(
    close.reason === "" || close.reason === sentReason,
    `the close reason is empty or the one sent, not ${JSON.stringify(close.reason)}`,
  );
  if (close.wasClean !== undefined) assert.equal(close.wasClean, true, "the closing handshake completed (wasClean)");
}

function pythonSteps(specs: readonly MessageSpec[], fragments = 1): PythonStep[] {
  return specs.map((spec) => ({
    op: "message",
    label: spec.label,
    kind: spec.kind,
    size: spec.size,
    content: spec.content,
    fragments,
  }));
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

// ── Node's WebSocket (undici) ──────────────────────────────────────────────

describe("Node 24's WebSocket (undici) against /echo", () => {
  let report: Report;
  let view: ServerView;

  before(async () => {
    const mark = server.output().length;
    const extra: MessageSpec[] = [
      { label: "compressible text 1 MiB", kind: "text", size: MiB, content: "repeat" },
      { label: "compressible binary 1 MiB", kind: "binary", size: MiB, content: "repeat" },
    ];
    report = await runNodeClient({
      url: echoUrl(),
      messages: [...matrix, ...extra],
      close: { code: 1000, reason: "bye from node" },
    });
    view = await serverSawAllClosed(mark, 1);
  });

  test("§5.2 text and binary of 0 B, 125 B, 126 B, 65,535 B, 65,536 B and 1 MiB echo back byte for byte", () => {
    assertEchoes(report.results.slice(0, matrix.length), matrix);
  });

  test(
    "RFC 7692 §5 permessage-deflate is negotiated (ws.extensions), and compressible and incompressible 1 MiB " +
      "messages echo exactly",
    () => {
      assert.equal(report.extensions, EXPECTED_DEFLATE);
      assert.equal(view.opened[0]?.deflate, true, "the server logged the connection as permessage-deflate");
      assertEchoes(report.results.slice(matrix.length), [
        { label: "compressible text 1 MiB", kind: "text", size: MiB },
        { label: "compressible binary 1 MiB", kind: "binary", size: MiB },
      ]);
      // The incompressible case is the random binary of the matrix.
      assertEchoes(
        [report.results.find((result) => result.label === label("binary", MiB))!],
        [{ label: label("binary", MiB), kind: "binary", size: MiB }],
      );
    },
  );

  test(
    "§7.1.2 close(1000, reason) is answered with 1000: " + "wasClean on the client, the connection ended on the server",
    () => {
      assertCleanClose(report.close, "bye from node");
      assert.deepEqual(
        view.closed,
        view.opened.map(({ id }) => id),
      );
      assert.deepEqual(view.violations, [], "the server saw no protocol violation");
    },
  );
});

// ── Deno's WebSocket ───────────────────────────────────────────────────────

describe("Deno's WebSocket against /echo", () => {
  let report: Report;
  let view: ServerView;

  before(async () => {
    const mark = server.output().length;
    report = await runDenoClient({ url: echoUrl(), messages: matrix, close: { code: 1000, reason: "bye from deno" } });
    view = await serverSawAllClosed(mark, 1);
  });

  test("§5.2 text and binary of 0 B, 125 B, 126 B, 65,535 B, 65,536 B and 1 MiB echo back byte for byte", () => {
    assert.match(report.runtime, /^deno /);
    assertEchoes(report.results, matrix);
  });

  test("RFC 7692 §5 Deno offers no extension, and the server agrees to none", () => {
    assert.equal(report.extensions, "");
    assert.equal(view.opened[0]?.deflate, false);
  });

  test(
    "§7.1.2 close(1000, reason) is answered with 1000: " + "wasClean on the client, the connection ended on the server",
    () => {
      assertCleanClose(report.close, "bye from deno");
      assert.deepEqual(
        view.closed,
        view.opened.map(({ id }) => id),
      );
      assert.deepEqual(view.violations, []);
    },
  );
});

// ── Python's websockets ────────────────────────────────────────────────────

describe("Python's websockets against /echo", () => {
  const deflateMatrix = matrix;
  const compressible: MessageSpec[] = [
    { label: "compressible text 1 MiB", kind: "text", size: MiB, content: "repeat" },
    { label: "compressible binary 1 MiB", kind: "binary", size: MiB, content: "repeat" },
  ];
  const fragmented = (specs: readonly MessageSpec[]) =>
    specs.map((spec) => ({ ...spec, label: `${spec.label} in 3 frames` }));
  let plain: PythonReport;
  let deflate: PythonReport;
  let plainView: ServerView;
  let deflateView: ServerView;

  before(async () => {
    let mark = server.output().length;
    plain = await runPythonClient({
      url: echoUrl(),
      compression: null,
      steps: [
        ...pythonSteps(matrix),
        ...pythonSteps(fragmented(matrix), 3),
        { op: "ping", label: "ping 0 B", size: 0 },
        { op: "ping", label: "ping 125 B", size: 125 },
      ],
      close: { code: 1000, reason: "bye from python" },
    });
    plainView = await serverSawAllClosed(mark, 1);
    mark = server.output().length;
    deflate = await runPythonClient({
      url: echoUrl(),
      compression: "deflate",
      steps: [
        ...pythonSteps(deflateMatrix),
        ...pythonSteps(compressible),
        ...pythonSteps(fragmented([...deflateMatrix, ...compressible]), 3),
        { op: "ping", label: "ping 0 B", size: 0 },
        { op: "ping", label: "ping 125 B", size: 125 },
      ],
      close: { code: 1000, reason: "bye from python" },
    });
    deflateView = await serverSawAllClosed(mark, 1);
  });

  const byPrefix = (report: PythonReport, predicate: (step: PythonStepResult) => boolean) =>
    report.steps.filter(predicate);
  const unfragmented = (step: PythonStepResult) => step.fragments === 1;
  const inFrames = (step: PythonStepResult) => (step.fragments ?? 0) > 1;

  test(
    "§5.2 text and binary of 0 B, 125 B, 126 B, 65,535 B, 65,536 B and 1 MiB echo back byte for byte (no " +
      "extension)",
    () => {
      assert.equal(plain.extensions, null, "compression=None offers no extension and gets none");
      assert.equal(plainView.opened[0]?.deflate, false);
      assertEchoes(byPrefix(plain, unfragmented), matrix);
    },
  );

  test("§5.4 the same messages sent in 3 frames each (send() of an iterable) echo back whole (no extension)", () => {
    assertEchoes(byPrefix(plain, inFrames), fragmented(matrix));
  });

  test(
    "RFC 7692 §5 permessage-deflate is negotiated (response Sec-WebSocket-Extensions), " + "and the server logs it",
    () => {
      assert.equal(deflate.extensions, EXPECTED_DEFLATE);
      assert.equal(deflateView.opened[0]?.deflate, true);
    },
  );

  test("RFC 7692 §7.2 compressed messages, 0 B to 1 MiB, compressible and not, echo back byte for byte", () => {
    assertEchoes(byPrefix(deflate, unfragmented), [...deflateMatrix, ...compressible]);
  });

  test(
    "RFC 7692 §6 in the other direction: the server's echoes from 1 KiB up come compressed (RSV1), shorter ones " +
      "not",
    () => {
      assertServerCompressed(deflate.steps, [
        ...deflateMatrix,
        ...compressible,
        ...fragmented([...deflateMatrix, ...compressible]),
      ]);
      assert.ok(
        deflate.steps.filter((step) => step.receivedCompressed === true).length >= 10,
        "compressed echoes were seen",
      );
      assert.ok(plain.steps.every((step) => step.receivedCompressed === undefined || step.receivedCompressed === null));
    },
  );

  test("RFC 7692 §6.1 compressed messages sent in 3 frames (RSV1 on the first only) echo back whole", () => {
    assertEchoes(byPrefix(deflate, inFrames), fragmented([...deflateMatrix, ...compressible]));
  });

  test("§5.5.2 pings of 0 and 125 bytes are answered with their pongs (await ws.ping())", () => {
    for (const report of [plain, deflate]) {
      const pings = report.steps.filter((step) => step.pong !== undefined);
      assert.deepEqual(pings, [
        { label: "ping 0 B", pong: true, size: 0 },
        { label: "ping 125 B", pong: true, size: 125 },
      ]);
    }
  });

  test("§7.1.2 close(1000, reason) is answered with 1000 and the server ends the connection", () => {
    for (const [report, view] of [
      [plain, plainView],
      [deflate, deflateView],
    ] as const) {
      assertCleanClose(report.close, "bye from python");
      assert.deepEqual(
        view.closed,
        view.opened.map(({ id }) => id),
      );
      assert.deepEqual(view.violations, [], "the server saw no protocol violation");
    }
  });

  test("§7.4.1 1 MiB + 1 byte (uncompressed) is refused with 1009, on both sides", async () => {
    const mark = server.output().length;
    const report = await runPythonClient({
      url: echoUrl(),
      compression: null,
      steps: [{ op: "too_big", label: "binary 1 MiB + 1", kind: "binary", size: MiB + 1, content: "random" }],
    });
    const view = await serverSawAllClosed(mark, 1);
    assert.equal(report.steps[0]?.closedByServer, true, "the server closed the connection instead of echoing");
    assert.equal(report.close.code, 1009);
    assert.deepEqual(
      view.violations.map(({ code }) => code),
      [1009],
      `the server logged the violation as 1009; it logged:\n${server.output().slice(mark)}`,
    );
  });

  test(
    "RFC 7692 §8.1 / §7.4.1 1 MiB + 1 byte that deflates to almost nothing is refused with 1009 (the limit is " +
      "after decompression)",
    async () => {
      const mark = server.output().length;
      const report = await runPythonClient({
        url: echoUrl(),
        compression: "deflate",
        steps: [{ op: "too_big", label: "text 1 MiB + 1", kind: "text", size: MiB + 1, content: "repeat" }],
      });
      const view = await serverSawAllClosed(mark, 1);
      assert.equal(report.extensions, EXPECTED_DEFLATE);
      assert.equal(report.steps[0]?.closedByServer, true);
      assert.equal(report.close.code, 1009);
      // The server found it while inflating, said why, and ended the connection.
      assert.deepEqual(
        view.violations.map(({ code }) => code),
        [1009],
      );
      assert.deepEqual(
        view.closed,
        view.opened.map(({ id }) => id),
      );
    },
  );

  test(
    "RFC 7692 §7.2 an incompressible 1 MiB binary message, sent compressed, echoes back (the limit is after " +
      "decompression)",
    async () => {
      const mark = server.output().length;
      const report = await runPythonClient({
        url: echoUrl(),
        compression: "deflate",
        steps: pythonSteps([{ label: label("binary", MiB), kind: "binary", size: MiB, content: "random" }]),
        close: { code: 1000, reason: "" },
      }).finally(() => serverSawAllClosed(mark, 1).catch(() => undefined));
      assertEchoes(report.steps, [{ label: label("binary", MiB), kind: "binary", size: MiB }]);
    },
  );
});

// ── What the Node and Deno APIs cannot send: fragments and pings (RawClient) ──

/** Sends `payload` as one message cut at `cuts` (byte offsets), so every
 * piece is a frame: the first with `opcode`, the rest continuations. */
function sendInFrames(
  client: RawClient,
  opcode: number,
  payload: Buffer,
  cuts: number[],
  between?: (index: number) => void,
): number {
  const bounds = [0, ...cuts, payload.length];
  for (let index = 0; index + 1 < bounds.length; index++) {
    if (index > 0) between?.(index);
    const last = index + 2 === bounds.length;
    client.sendFrame(index === 0 ? opcode : Opcode.Continuation, payload.subarray(bounds[index]!, bounds[index + 1]!), {
      fin: last,
    });
  }
  return bounds.length - 1;
}

/** The same mixed 1- to 4-byte UTF-8 text the clients send: "aé€😀" repeated (10 bytes), "x" to fill. */
function mixedText(size: number): Buffer {
  const whole = Math.floor(size / 10);
  return Buffer.from("aé€😀".repeat(whole) + "x".repeat(size - whole * 10), "utf8");
}

/** Offsets that fall inside characters of mixedText: 2 is inside "é", 10k + 8 inside "😀". */
function cutsInsideCharacters(size: number): number[] {
  if (size < 10) return [0, 0, size]; // empty fragments are allowed too
  const cuts = [2];
  for (const quarter of [1, 2, 3]) {
    const cut = Math.floor((size * quarter) / 4 / 10) * 10 + 8;
    if (cut > cuts.at(-1)! && cut < size && mixedText(size)[cut - 1]! >= 0x80) cuts.push(cut);
  }
  return cuts;
}

async function withRawClient<T>(use: (client: RawClient) => Promise<T>): Promise<T> {
  const client = await RawClient.open(live().port, { path: "/echo" });
  try {
    assert.equal(client.handshake?.status, 101);
    return await use(client);
  } finally {
    client.destroy();
  }
}

describe("RawClient: fragments and pings, which the Node and Deno WebSocket APIs cannot send", () => {
  test("§5.4 fragmented text cut inside UTF-8 characters echoes back whole, 0 B to 1 MiB", async () => {
    await withRawClient(async (client) => {
      for (const size of sizes) {
        const payload = mixedText(size);
        const cuts = cutsInsideCharacters(size);
        sendInFrames(client, Opcode.Text, payload, cuts);
        const echo = await client.next("text");
        assert.equal(Buffer.byteLength(echo.text), size, `text ${size} B in ${cuts.length + 1} frames: length`);
        assert.equal(
          sha256(Buffer.from(echo.text, "utf8")),
          sha256(payload),
          `text ${size} B in ${cuts.length + 1} frames: bytes`,
        );
      }
    });
  });

  test("§5.4 fragmented binary echoes back whole, 0 B to 1 MiB, up to 1 MiB in 64 frames", async () => {
    await withRawClient(async (client) => {
      for (const size of sizes) {
        const payload = randomBytes(size);
        const frames = size >= 64 * 1024 ? 64 : 3;
        const cuts = Array.from({ length: frames - 1 }, (_, index) => Math.floor((size * (index + 1)) / frames));
        sendInFrames(client, Opcode.Binary, payload, cuts);
        const echo = await client.next("binary");
        assert.equal(echo.data.length, size, `binary ${size} B in ${frames} frames: length`);
        assert.equal(sha256(echo.data), sha256(payload), `binary ${size} B in ${frames} frames: bytes`);
      }
    });
  });

  test("§5.5.2 pings of 0 and 125 bytes are answered with pongs carrying the same bytes", async () => {
    await withRawClient(async (client) => {
      for (const size of [0, 125]) {
        const payload = randomBytes(size);
        client.sendFrame(Opcode.Ping, payload);
        const pong = await client.next("pong");
        assert.deepEqual(pong.data, payload, `pong for a ${size}-byte ping`);
      }
    });
  });

  test(
    "§5.4 §5.5.2 pings between the fragments of a message are answered at once, and the message still echoes " +
      "whole",
    async () => {
      await withRawClient(async (client) => {
        const payload = mixedText(200_000);
        const pings: Buffer[] = [];
        const frames = sendInFrames(client, Opcode.Text, payload, [2, 50_008, 120_008], (index) => {
          const ping = Buffer.from(`ping ${index}`);
          pings.push(ping);
          client.sendFrame(Opcode.Ping, ping);
        });
        assert.equal(frames, 4);
        for (const ping of pings) assert.deepEqual((await client.next("pong")).data, ping);
        const echo = await client.next("text");
        assert.equal(sha256(Buffer.from(echo.text, "utf8")), sha256(payload));
        // Each pong was sent before the message could be echoed: it came first.
        const order = client.events
          .filter((event) => event.type === "pong" || event.type === "text")
          .map((event) => event.type);
        assert.deepEqual(order, ["pong", "pong", "pong", "text"]);
      });
    },
  );

  test(
    "§5.5.1 a close with 1000 and a reason is answered with 1000, " + "and the server ends the TCP connection",
    async () => {
      const mark = server.output().length;
      await withRawClient(async (client) => {
        client.sendFrame(Opcode.Close, encodeClosePayload(1000, "bye from raw"));
        const close = await client.next("close");
        assertCleanClose(close, "bye from raw");
        await client.waitForClose();
      });
      const view = await serverSawAllClosed(mark, 1);
      assert.deepEqual(view.violations, []);
    },
  );
});
