// A WebSocket client built on the runtime's own standard `WebSocket` (the
// WHATWG API): Node 22+'s (undici) and Deno's. Nobody here wrote those
// clients, which is the point: test/interop.test.ts and test/runtimes.test.ts
// run this script to see the server through someone else's eyes.
//
//   node24 test/interop/ws-client.ts '<plan as JSON>'
//   deno run --allow-net=127.0.0.1 test/interop/ws-client.ts '<plan as JSON>'
//
// The plan (see `Plan`) names a URL, the messages to send one at a time
// (each waits for its echo), and how to close. The script prints one JSON
// object (`Report`) on stdout and exits 0, or prints the error on stderr and
// exits 1. Payloads are made here and the sent and received bytes are
// hashed here, so the report says exactly whether every byte came back.
// Only standard WebSocket API and node: built-ins (which Deno has too).
import { createHash, randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import process from "node:process";

export type Content =
  /** UTF-8 text mixing 1-, 2-, 3- and 4-byte characters (or bytes of it). */
  | "mixed"
  /** Random bytes: incompressible. Binary only. */
  | "random"
  /** A short line repeated: very compressible. */
  | "repeat";

export interface MessageSpec {
  label: string;
  kind: "text" | "binary";
  /** Exact size in bytes (UTF-8 bytes for text). */
  size: number;
  content: Content;
}

export interface Plan {
  url: string;
  protocols?: string[];
  /** Wait for the first message the server sends unprompted (the chat welcome). */
  collectFirst?: boolean;
  messages: MessageSpec[];
  close: { code: number; reason: string };
  timeoutMs?: number;
}

export interface MessageResult {
  label: string;
  sentKind: "text" | "binary";
  sentBytes: number;
  sentSha256: string;
  receivedKind: "text" | "binary";
  receivedBytes: number;
  receivedSha256: string;
}

export interface Report {
  runtime: string;
  extensions: string;
  protocol: string;
  first?: string;
  results: MessageResult[];
  close: { code: number; reason: string; wasClean: boolean };
}

const PATTERN = "aé€😀"; // 1 + 2 + 3 + 4 = 10 bytes of UTF-8

/** A string of exactly `size` UTF-8 bytes. */
export function makeText(size: number, content: Content): string {
  const unit = content === "repeat" ? "the quick brown fox jumps over the lazy dog\n" : PATTERN;
  const unitBytes = Buffer.byteLength(unit);
  const whole = Math.floor(size / unitBytes);
  return unit.repeat(whole) + "x".repeat(size - whole * unitBytes);
}

export function makeBinary(size: number, content: Content): Buffer {
  if (content === "random") return randomBytes(size);
  return Buffer.from(makeText(size, content), "utf8");
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function runtimeName(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions.deno !== undefined) return `deno ${versions.deno}`;
  if (versions.bun !== undefined) return `bun ${versions.bun}`;
  return `node ${process.versions.node}`;
}

async function run(plan: Plan): Promise<Report> {
  const incoming: Array<string | ArrayBuffer> = [];
  let opened = false;
  let closeEvent: Report["close"] | undefined;
  let failure: string | undefined;
  let wake: (() => void) | undefined;
  const notify = () => wake?.();

  const socket = new WebSocket(plan.url, plan.protocols ?? []);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    opened = true;
    notify();
  };
  socket.onmessage = (event: MessageEvent) => {
    incoming.push(event.data as string | ArrayBuffer);
    notify();
  };
  socket.onerror = () => {
    failure ??= "the WebSocket reported an error";
    notify();
  };
  socket.onclose = (event: CloseEvent) => {
    closeEvent = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    notify();
  };

  /** Resolves when `ready` holds; throws if the socket closed or failed first. */
  const until = async (ready: () => boolean, what: string): Promise<void> => {
    while (!ready()) {
      if (closeEvent !== undefined)
        throw new Error(`closed (${closeEvent.code} ${closeEvent.reason}) while waiting for ${what}`);
      if (failure !== undefined) throw new Error(`${failure} while waiting for ${what}`);
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  };

  await until(() => opened, "the connection to open");
  const extensions = socket.extensions;
  const protocol = socket.protocol;

  let first: string | undefined;
  if (plan.collectFirst) {
    await until(() => incoming.length > 0, "the first message");
    const message = incoming.shift()!;
    first = typeof message === "string" ? message : Buffer.from(message).toString("base64");
  }

  const results: MessageResult[] = [];
  for (const spec of plan.messages) {
    const text = spec.kind === "text" ? makeText(spec.size, spec.content) : undefined;
    const sent = text !== undefined ? Buffer.from(text, "utf8") : makeBinary(spec.size, spec.content);
    // WebSocket.send takes a view of an ArrayBuffer (not a SharedArrayBuffer): a copy in its own buffer.
    socket.send(text ?? new Uint8Array(sent));
    await until(() => incoming.length > 0, `the echo of ${spec.label}`);
    const echo = incoming.shift()!;
    const received = typeof echo === "string" ? Buffer.from(echo, "utf8") : Buffer.from(echo);
    results.push({
      label: spec.label,
      sentKind: spec.kind,
      sentBytes: sent.length,
      sentSha256: sha256(sent),
      receivedKind: typeof echo === "string" ? "text" : "binary",
      receivedBytes: received.length,
      receivedSha256: sha256(received),
    });
  }

  // The closing handshake: only a close event ends it (the plan's timeout bounds it).
  socket.close(plan.close.code, plan.close.reason);
  while (closeEvent === undefined) {
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  }
  const report: Report = { runtime: runtimeName(), extensions, protocol, results, close: closeEvent };
  if (first !== undefined) report.first = first;
  return report;
}

const isMain =
  (import.meta as ImportMeta & { main?: boolean }).main ?? process.argv[1]?.endsWith("ws-client.ts") ?? false;
if (isMain) {
  const argument = process.argv[2];
  if (argument === undefined) {
    process.stderr.write("usage: ws-client.ts '<plan as JSON>'\n");
    process.exit(2);
  }
  const plan = JSON.parse(argument) as Plan;
  const timer = setTimeout(() => {
    process.stderr.write(`ws-client: gave up after ${plan.timeoutMs ?? 30_000} ms\n`);
    process.exit(1);
  }, plan.timeoutMs ?? 30_000);
  try {
    const report = await run(plan);
    clearTimeout(timer);
    process.stdout.write(JSON.stringify(report) + "\n");
    process.exit(0);
  } catch (error) {
    process.stderr.write(`ws-client: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
