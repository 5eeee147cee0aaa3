// The live fuzz: the fuzzer's streams (scripts/lib/fuzzer.ts), sent to a
// running server on /echo over TCP, one connection per case, one case after
// the other. For each case the reference decoder says what the server must
// have read, and so what it must answer (RFC 6455): every message echoed
// (§7 of the README: /echo), every ping answered by a pong with the same
// payload (§5.5.2), a close frame answered with the same code (§5.5.1), a
// violation answered by a close frame with the violation's code (§7.1.7,
// §7.4.1), and nothing after the close. Cases that offer permessage-deflate
// (RFC 7692) are checked the same way; where a corrupted compressed message
// could mean something only with the server's LZ77 window, the comparison
// stops there and only the frames' validity is checked.
import { Buffer, isUtf8 } from "node:buffer";
import { constants as zlibConstants, inflateRawSync } from "node:zlib";
import { Opcode, encodeFrame } from "../../server.ts";
import {
  describeEvent,
  makeCase,
  normalize,
  referenceDecode,
  sameEvents,
  type FuzzCase,
  type NormalEvent,
} from "./fuzzer.ts";
import { megabytes, readProcessMemory } from "../../test/support/memory.ts";
import { RawClient } from "../../test/support/raw-client.ts";

const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** RFC 7692 §7.2.2: append the tail and inflate. undefined when it is not valid deflate data on its own. */
function inflateAlone(data: Buffer, maxPayload: number): Buffer | "too-big" | undefined {
  try {
    return inflateRawSync(Buffer.concat([data, DEFLATE_TAIL]), {
      finishFlush: zlibConstants.Z_SYNC_FLUSH,
      maxOutputLength: maxPayload + 1,
    });
  } catch (error) {
    return (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? "too-big" : undefined;
  }
}

/** What the echo server must send back, given what the reference decoder read.
 * `certain` is false when the rest cannot be predicted without the server's window. */
export function expectedEcho(
  reference: readonly NormalEvent[],
  maxPayload: number,
): { events: NormalEvent[]; certain: boolean } {
  const events: NormalEvent[] = [];
  const pings = reference.filter((event) => event.type === "ping").length;
  // A peer gets 100 pings at once before the server stops answering (its control-frame budget).
  if (pings > 100) return { events, certain: false };
  for (const event of reference) {
    switch (event.type) {
      case "text":
      case "binary":
        events.push({ type: event.type, data: event.data });
        break;
      case "compressed": {
        const inflated = inflateAlone(event.data, maxPayload);
        if (inflated === undefined) return { events, certain: false };
        if (inflated === "too-big" || inflated.length > maxPayload) {
          events.push({ type: "violation", violation: "message_too_big", closeCode: 1009 });
          return { events, certain: true };
        }
        if (!event.binary && !isUtf8(inflated)) {
          events.push({ type: "violation", violation: "invalid_utf8", closeCode: 1007 });
          return { events, certain: true };
        }
        events.push({ type: event.binary ? "binary" : "text", data: inflated });
        break;
      }
      case "ping":
        events.push({ type: "pong", data: event.data });
        break;
      case "pong":
        break;
      case "close":
        events.push({ type: "close", code: event.code === 1005 ? 1000 : event.code, reason: "" });
        return { events, certain: true };
      case "violation":
        events.push(event);
        return { events, certain: true };
    }
  }
  return { events, certain: true };
}

export interface LiveCaseResult {
  /** What the server sent, as comparable events: a close frame is `close`, compressed messages are inflated. */
  received: NormalEvent[];
  /** Problems with the server's own frames. */
  problems: string[];
  timedOut: boolean;
  deflate: boolean;
}

/** Sends one case on a fresh connection to /echo and collects the answer until the server closes. */
export async function sendLiveCase(port: number, fuzzCase: FuzzCase, timeoutMs = 5000): Promise<LiveCaseResult> {
  const offerDeflate = fuzzCase.options.allowCompression;
  const client = await RawClient.connect(port, { path: "/echo", offerDeflate, timeoutMs, respond: true });
  const deflate = client.deflate;
  const received: NormalEvent[] = [];
  const problems: string[] = [];
  if (deflate !== offerDeflate) problems.push(`permessage-deflate offered: ${offerDeflate}, agreed: ${deflate}`);
  client.onEvent = (event) => {
    if (event.type === "ping") return; // the server's keepalive, not an answer
    if (event.type === "violation") {
      problems.push(`the server sent an invalid frame: ${event.violation}`);
      return;
    }
    if (event.type === "compressed") {
      const inflated = inflateAlone(event.data, 64 * 1024 * 1024);
      if (inflated === undefined || inflated === "too-big")
        problems.push("the server sent a compressed message that does not inflate");
      else received.push({ type: event.binary ? "binary" : "text", data: inflated });
      return;
    }
    const normal = normalize(event);
    if (normal?.type === "close") received.push({ type: "close", code: normal.code, reason: "" });
    else if (normal !== undefined) received.push(normal);
  };
  // The stream, in the case's random chunks: a few writes with a turn of the
  // event loop between them, so that the server reads them apart.
  const chunking = fuzzCase.chunkings[1]!;
  let offset = 0;
  for (const [index, size] of chunking.entries()) {
    if (client.socket.destroyed) break;
    client.socket.write(Buffer.from(fuzzCase.stream.subarray(offset, offset + size)));
    offset += size;
    if (chunking.length <= 16 && index < chunking.length - 1) await new Promise((resolve) => setImmediate(resolve));
  }
  // Half-close: the server must then finish its side (§7.1.1) whatever state the stream left it in.
  if (!client.socket.destroyed) client.socket.end();
  const timedOut = await client.waitForClose(timeoutMs).then(
    () => false,
    () => true,
  );
  if (timedOut) client.destroy();
  return { received, problems, timedOut, deflate };
}

/** undefined when the server answered as the RFC requires. */
export function checkLiveCase(fuzzCase: FuzzCase, result: LiveCaseResult): string | undefined {
  if (result.timedOut) return "the server did not close the connection after the client half-closed it";
  if (result.problems.length > 0) return result.problems.join("; ");
  const reference = referenceDecode(fuzzCase.stream, { ...fuzzCase.options, allowCompression: result.deflate });
  const { events, certain } = expectedEcho(reference, fuzzCase.options.maxPayload);
  // A close frame from the server is what the expected violation becomes on the wire.
  const expected = events.map((event): NormalEvent =>
    event.type === "violation" ? { type: "close", code: event.closeCode, reason: "" } : event,
  );
  const got = result.received;
  const comparable = certain ? got : got.slice(0, expected.length);
  if (!sameEvents(expected, comparable)) {
    return (
      `the server's answer differs from what the reference decoder predicts${certain ? "" : " (prefix)"}:\n  ` +
      `expected: ${expected.map(describeEvent).join(", ")}\n  received: ${got.map(describeEvent).join(", ")}`
    );
  }
  if (!certain) {
    // Past the unpredictable point: at most one close frame, last, with a legitimate code.
    const closes = got.filter((event) => event.type === "close");
    const last = got[got.length - 1];
    if (closes.length > 1 || (closes.length === 1 && last?.type !== "close"))
      return "something came after the server's close frame";
    if (
      last?.type === "close" &&
      ![1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014].includes(last.code) &&
      (last.code < 3000 || last.code > 4999)
    ) {
      return `the server closed with ${last.code}`;
    }
  }
  return undefined;
}

export interface LiveFuzzSummary {
  cases: number;
  failures: Array<{ fuzzCase: FuzzCase; message: string }>;
  uncertain: number;
  baselineRss: number | undefined;
  peakRss: number | undefined;
  finalRss: number | undefined;
}

/** Runs cases [from, from + count) against a live server, one at a time.
 * The RSS baseline is taken after `warmup` cases (the JIT and buffers settle). */
export async function runLiveFuzz(options: {
  port: number;
  pid: number | undefined;
  seed: number;
  cases: number;
  from?: number;
  maxPayload: number;
  warmup?: number;
  deadline?: number;
  maxFailures?: number;
  onProgress?: (done: number) => void;
}): Promise<LiveFuzzSummary> {
  const summary: LiveFuzzSummary = {
    cases: 0,
    failures: [],
    uncertain: 0,
    baselineRss: undefined,
    peakRss: undefined,
    finalRss: undefined,
  };
  const from = options.from ?? 0;
  const warmup = options.warmup ?? 100;
  let peak = 0;
  for (let index = from; index < from + options.cases; index++) {
    if (options.deadline !== undefined && Date.now() > options.deadline) break;
    const fuzzCase = makeCase(options.seed, index, { maxPayload: options.maxPayload, maxFragments: 131_072 });
    let message: string | undefined;
    try {
      const result = await sendLiveCase(options.port, fuzzCase);
      message = checkLiveCase(fuzzCase, result);
      const reference = referenceDecode(fuzzCase.stream, { ...fuzzCase.options, allowCompression: result.deflate });
      if (!expectedEcho(reference, options.maxPayload).certain) summary.uncertain++;
    } catch (error) {
      message = `the connection failed: ${error instanceof Error ? error.message : String(error)}`;
    }
    summary.cases++;
    if (message !== undefined) {
      summary.failures.push({ fuzzCase, message });
      if (summary.failures.length >= (options.maxFailures ?? 5)) break;
    }
    if (summary.cases % 50 === 0) {
      const memory = readProcessMemory(options.pid);
      if (memory !== undefined) {
        peak = Math.max(peak, memory.rss);
        if (summary.cases === Math.ceil(warmup / 50) * 50) summary.baselineRss = memory.rss;
      }
    }
    if (options.onProgress !== undefined && summary.cases % 500 === 0) options.onProgress(summary.cases);
  }
  summary.peakRss = peak || undefined;
  return summary;
}

/** A well-formed client after the storm: does /echo still echo? */
export async function echoStillWorks(port: number): Promise<boolean> {
  const client = await RawClient.connect(port, { path: "/echo", respond: true });
  const text = `still here ${"é".repeat(100)}`;
  client.socket.write(encodeFrame(Opcode.Text, text, { maskKey: Buffer.from([1, 2, 3, 4]) }));
  const echoed = await client.next("text").then(
    (event) => event.text,
    () => undefined,
  );
  client.close();
  await client.waitForClose(2000).catch(() => undefined);
  client.destroy();
  return echoed === text;
}

export function describeLiveFailure(failure: { fuzzCase: FuzzCase; message: string }, maxHexBytes = Infinity): string {
  const { fuzzCase } = failure;
  const shown = fuzzCase.stream.subarray(0, maxHexBytes);
  const cut =
    shown.length < fuzzCase.stream.length
      ? ` … (${fuzzCase.stream.length - shown.length} more bytes: run the replay command)`
      : "";
  return [
    `LIVE FAILURE in case ${fuzzCase.index} of seed ${fuzzCase.seed}: ${failure.message}`,
    `  replay: npm run fuzz -- --live --seed ${fuzzCase.seed} --case ${fuzzCase.index}`,
    `  options: ${JSON.stringify(fuzzCase.options)}  mutations: ${fuzzCase.mutations.join(" ") || "(none)"}`,
    `  stream (${fuzzCase.stream.length} bytes): ${shown.toString("hex")}${cut}`,
    `  chunking: ${JSON.stringify(fuzzCase.chunkings[1])}`,
  ].join("\n");
}

export { megabytes };
