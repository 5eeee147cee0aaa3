// Fuzzing the frame decoder (RFC 6455 §5), offline and live.
// The fuzzer itself is scripts/lib/fuzzer.ts (npm run fuzz runs long ones);
// this file runs a fixed-seed pass, so a failure here replays exactly with
//   npm run fuzz -- --seed <seed> --case <index>
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { hex } from "./support/bytes.ts";
import { useServer } from "./support/in-process.ts";
import { waitUntil } from "./support/wait.ts";
import {
  describeEvent,
  formatReproducer,
  makeCase,
  referenceDecode,
  runDecoder,
  runFuzz,
  sameEvents,
  type FuzzOptions,
  type NormalEvent,
} from "../scripts/lib/fuzzer.ts";
import { describeLiveFailure, echoStillWorks, runLiveFuzz } from "../scripts/lib/live-fuzz.ts";
import { MB, megabytes, retainedBytes, rssOf } from "./support/memory.ts";

const DECODER_SEED = 0x5eed;
const DECODER_CASES = 20_000;
const LIVE_SEED = 6455;
const LIVE_CASES = 1_500;
const MAX_PAYLOAD = 64 * 1024;

const options: FuzzOptions = { maxPayload: MAX_PAYLOAD, maxFragments: 131_072, allowCompression: false };

/** Frames as the RFC writes them. */
const frames = hex;

describe("the fuzzer's oracle", () => {
  // The reference decoder is the yardstick for 20,000 cases: first it must
  // itself read the RFC's examples right, and refuse what the RFC forbids.
  const hello = Buffer.from("Hello");
  const cases: Array<{ name: string; bytes: Buffer; expected: NormalEvent[]; options?: Partial<FuzzOptions> }> = [
    {
      name: "§5.7: a single-frame masked text message",
      bytes: frames("81 85 37fa213d 7f9f4d5158"),
      expected: [{ type: "text", data: hello }],
    },
    {
      name: "§5.7: a masked ping, and §5.4: a masked text message in two fragments",
      bytes: frames("89 85 37fa213d 7f9f4d5158  01 83 00000000 48656c  80 82 00000000 6c6f"),
      expected: [
        { type: "ping", data: hello },
        { type: "text", data: hello },
      ],
    },
    {
      name: "§5.7's unmasked text frame is a violation from a client (§5.1)",
      bytes: frames("81 05 48656c6c6f"),
      expected: [{ type: "violation", violation: "unmasked_frame", closeCode: 1002 }],
    },
    {
      name: "§5.2: reserved opcode 0x3",
      bytes: frames("83 80 00000000"),
      expected: [{ type: "violation", violation: "reserved_opcode", closeCode: 1002 }],
    },
    {
      name: "§8.1: invalid UTF-8 is found before the frame ends",
      bytes: frames("81 85 00000000 48ff"),
      expected: [{ type: "violation", violation: "invalid_utf8", closeCode: 1007 }],
    },
    {
      name: "§5.2: a 64-bit length with its most significant bit set",
      bytes: frames("82 ff 8000000000000000"),
      expected: [{ type: "violation", violation: "length_too_large", closeCode: 1002 }],
    },
    {
      name: "a length above maxPayload is refused from the header alone (1009)",
      bytes: frames("82 fe ffff"),
      expected: [{ type: "violation", violation: "message_too_big", closeCode: 1009 }],
      options: { maxPayload: 1000 },
    },
    {
      name: "§5.5.1: a close frame ends the stream; what follows is not read",
      bytes: frames("88 82 00000000 03e8  89 80 00000000"),
      expected: [{ type: "close", code: 1000, reason: "" }],
    },
    {
      name: "§7.4: close code 1005 may not be sent",
      bytes: frames("88 82 00000000 03ed"),
      expected: [{ type: "violation", violation: "close_invalid_code", closeCode: 1002 }],
    },
    {
      name: "a stream cut inside a frame gives nothing for that frame",
      bytes: frames("81 85 37fa213d 7f9f"),
      expected: [],
    },
  ];
  for (const { name, bytes, expected, options: extra } of cases) {
    test(name, () => {
      const fuzzOptions = { ...options, ...extra };
      const reference = referenceDecode(bytes, fuzzOptions);
      assert.ok(sameEvents(reference, expected), `reference: ${reference.map(describeEvent).join(", ")}`);
      // And the decoder agrees, byte by byte too.
      for (const chunking of [[bytes.length], new Array<number>(bytes.length).fill(1)]) {
        const run = runDecoder(bytes, chunking, fuzzOptions);
        assert.equal(run.thrown, undefined);
        assert.ok(sameEvents(run.events, expected), `decoder: ${run.events.map(describeEvent).join(", ")}`);
      }
    });
  }

  test("a case is rebuilt from its seed and index alone (the reproducer needs nothing else)", () => {
    const first = makeCase(DECODER_SEED, 1234);
    const again = makeCase(DECODER_SEED, 1234);
    assert.ok(first.stream.equals(again.stream));
    assert.deepEqual(first.chunkings, again.chunkings);
    assert.deepEqual(first.options, again.options);
    assert.ok(!makeCase(DECODER_SEED, 1235).stream.equals(first.stream));
  });
});

describe("fuzzing FrameDecoder (RFC 6455 §5.2-§5.7, §7.4.1, §8.1; RFC 7692 §6.1)", () => {
  test(
    `${DECODER_CASES.toLocaleString("en")} mutated streams: no throw, one violation at most and last ` +
      `(1002/1007/1009), silence after close or violation, the same events for every chunking, agreement with the ` +
      `reference decoder`,
    () => {
      const summary = runFuzz(DECODER_SEED, DECODER_CASES, 0, 3);
      console.log(
        `fuzz: ${summary.cases} cases, ${megabytes(summary.bytes)} of frames; endings ` +
          `${JSON.stringify(summary.endings)}`,
      );
      console.log(`fuzz: violations ${JSON.stringify(summary.violations)}`);
      assert.equal(
        summary.failures.length,
        0,
        summary.failures.map((failure) => formatReproducer(failure, 512)).join("\n\n"),
      );
      assert.equal(summary.cases, DECODER_CASES);
      // The pass means something only if it reached every rule: each violation
      // the decoder knows (inflate_failed is not the decoder's) was provoked.
      for (const violation of [
        "reserved_bits",
        "reserved_opcode",
        "unmasked_frame",
        "control_too_long",
        "control_fragmented",
        "compressed_control",
        "unexpected_continuation",
        "expected_continuation",
        "length_too_large",
        "close_one_byte",
        "close_invalid_code",
        "close_invalid_reason",
        "invalid_utf8",
        "message_too_big",
        "too_many_fragments",
      ]) {
        assert.ok((summary.violations[violation] ?? 0) > 0, `no case provoked ${violation}`);
      }
      assert.ok(
        (summary.endings["close"] ?? 0) > 0 && (summary.endings["incomplete-or-clean"] ?? 0) > 0,
        "valid streams are fuzzed too",
      );
    },
  );
});

describe("live fuzz: the same streams on /echo over TCP (§5, §5.5.1-§5.5.3, §7.1.7, §7.4.1)", () => {
  const live = useServer({ maxPayload: MAX_PAYLOAD });

  test(
    `${LIVE_CASES.toLocaleString("en")} connections, one mutated stream each: every answer is what the RFC asks, ` +
      "the server stays up, echo works, every connection is let go and memory returns near its baseline",
    { timeout: 180_000 },
    async () => {
      const server = live();
      const common = { port: server.port, pid: process.pid, seed: LIVE_SEED, maxPayload: MAX_PAYLOAD, maxFailures: 3 };
      // The first 100 cases warm up the JIT and the buffers; memory is compared from there on.
      const warmup = await runLiveFuzz({ ...common, cases: 100, from: 0 });
      await waitUntil(() => server.running.connections.size === 0, 10_000, "the warm-up connections to be let go");
      const baseline = { rss: rssOf(process.pid), retained: retainedBytes() };
      const started = Date.now();
      const summary = await runLiveFuzz({ ...common, cases: LIVE_CASES - 100, from: 100 });
      const seconds = (Date.now() - started) / 1000;
      const failures = [...warmup.failures, ...summary.failures];
      assert.equal(failures.length, 0, failures.map((failure) => describeLiveFailure(failure, 512)).join("\n\n"));
      // Every case ran: no deadline to hide behind.
      assert.equal(warmup.cases + summary.cases, LIVE_CASES);
      await waitUntil(() => server.running.connections.size === 0, 10_000, "every connection to be let go");
      const grown = { rss: rssOf(process.pid) - baseline.rss, retained: retainedBytes() - baseline.retained };
      console.log(
        `live fuzz: ${LIVE_CASES} connections (${warmup.uncertain + summary.uncertain} only partly predictable), the ` +
          `last ` +
          `${summary.cases} in ${seconds.toFixed(1)} s; after them RSS ${megabytes(grown.rss)} and held memory ` +
          `${megabytes(grown.retained)} above the baseline`,
      );
      assert.ok(await echoStillWorks(server.port), "a well-formed client is echoed afterwards");
      assert.ok(grown.rss < 60 * MB, `RSS grew by ${megabytes(grown.rss)} over the run`);
      // 1,400 connections: a leak of 12 KB each would show.
      assert.ok(grown.retained < 16 * MB, `the server holds ${megabytes(grown.retained)} more than after the warm-up`);
    },
  );
});
