// Each fast path in server.ts's "Making it fast" section against the plain
// algorithm beside it, in this process: `node --import tsx bench/fast-paths.ts`.
// Best of several rounds each, so a busy machine disturbs it less; the figures
// in server.ts's comments come from this script.
import { Buffer } from "node:buffer";
import { once } from "node:events";
import { createServer, connect, type Socket } from "node:net";
import {
  Opcode,
  PayloadCollector,
  Utf8Validator,
  compressMessage,
  encodeFrame,
  frameHeaderSize,
  maskBytes,
  maskSimd,
  maskWords,
  pushUtf8,
  writeFrameHeader,
} from "../server.ts";

function bestOf(rounds: number, run: () => void): number {
  let best = Infinity;
  for (let round = 0; round < rounds; round++) {
    const start = process.hrtime.bigint();
    run();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
  }
  return best;
}

function report(name: string, plainMs: number, fastMs: number, unit: string): void {
  console.log(
    `${name.padEnd(44)} plain ${plainMs.toFixed(2).padStart(8)} ms  fast ${fastMs.toFixed(2).padStart(8)} ms  ${(plainMs / fastMs).toFixed(1)}× ${unit}`,
  );
}

const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
const mebibyte = Buffer.alloc(1 << 20, 0x61);
report(
  "unmask 1 MiB × 20",
  bestOf(5, () => {
    for (let i = 0; i < 20; i++) maskBytes(mebibyte, key);
  }),
  bestOf(5, () => {
    for (let i = 0; i < 20; i++) maskWords(mebibyte, key);
  }),
  "(a 32-bit word at a time)",
);
// As the decoder gets them: the socket hands a large message over 64 KiB at a time.
const piece = Buffer.alloc(64 * 1024, 0x61);
const simdRuns = maskSimd(piece, key);
report(
  "unmask 64 KiB × 320: words or SIMD",
  bestOf(5, () => {
    for (let i = 0; i < 320; i++) maskWords(piece, key);
  }),
  bestOf(5, () => {
    for (let i = 0; i < 320; i++) maskSimd(piece, key);
  }),
  simdRuns ? "(WebAssembly SIMD, copies in and out included)" : "(no WebAssembly SIMD here: both are maskWords)",
);

const chinese = Buffer.from("聊天室里有人说你好，world! ".repeat(3000), "utf8");
report(
  `check UTF-8, ${(chinese.length / 1024).toFixed(0)} KiB × 20`,
  bestOf(5, () => {
    for (let i = 0; i < 20; i++) new Utf8Validator().push(chinese);
  }),
  bestOf(5, () => {
    for (let i = 0; i < 20; i++) pushUtf8(new Utf8Validator(), chinese);
  }),
  "",
);

const kibText = Buffer.from("x".repeat(1000) + "你好", "utf8");
report(
  "echo 100,000 × 1 KiB text: string or bytes",
  bestOf(5, () => {
    for (let i = 0; i < 100_000; i++) Buffer.from(kibText.toString("utf8"));
  }),
  bestOf(5, () => {
    for (let i = 0; i < 100_000; i++) void kibText.subarray(0);
  }),
  "",
);

const tiny = Array.from({ length: 100_000 }, (_, index) => Buffer.from([index & 0xff]));
{
  // The gain is in what is held until the message ends: one object per piece, or a few blocks.
  const collector = new PayloadCollector();
  for (const piece of tiny) collector.add(piece);
  const held = (collector as unknown as { parts: Buffer[] }).parts.length + 1;
  collector.takePieces();
  const plainMs = bestOf(5, () => {
    const parts: Buffer[] = [];
    for (const piece of tiny) parts.push(piece);
    Buffer.concat(parts);
  });
  const fastMs = bestOf(5, () => {
    const gathered = new PayloadCollector();
    for (const piece of tiny) gathered.add(piece);
    Buffer.concat(gathered.takePieces());
  });
  report("100,000 one-byte fragments into one message", plainMs, fastMs, `; buffers held: ${tiny.length} or ${held}`);
}

const broadcast = "x".repeat(2048);
const members = 100;
report(
  `broadcast 2 KiB to ${members}: frame each time or once`,
  bestOf(5, () => {
    for (let m = 0; m < members * 100; m++) encodeFrame(Opcode.Text, broadcast);
  }),
  bestOf(5, () => {
    for (let m = 0; m < 100; m++) encodeFrame(Opcode.Text, broadcast);
  }),
  "",
);
const payload = Buffer.from(broadcast);
report(
  `the same, compressed (level 3)`,
  bestOf(3, () => {
    for (let m = 0; m < members * 10; m++) compressMessage(payload, 15, 3);
  }),
  bestOf(3, () => {
    for (let m = 0; m < 10; m++) compressMessage(payload, 15, 3);
  }),
  "",
);

report(
  "1 MiB frame × 200: copied behind its header, or not",
  bestOf(5, () => {
    for (let i = 0; i < 200; i++) encodeFrame(Opcode.Binary, mebibyte);
  }),
  bestOf(5, () => {
    for (let i = 0; i < 200; i++) {
      const header = Buffer.allocUnsafe(frameHeaderSize(mebibyte.length));
      writeFrameHeader(header, 0, Opcode.Binary, mebibyte.length);
    }
  }),
  "(the write itself not counted)",
);

// Batching: 64 small frames a turn to a real loopback socket, one write each or corked.
const sink = createServer((socket) => socket.resume());
sink.listen(0, "127.0.0.1");
await once(sink, "listening");
const address = sink.address();
const port = typeof address === "object" && address !== null ? address.port : 0;
const socket: Socket = connect(port, "127.0.0.1");
await once(socket, "connect");
socket.setNoDelay(true);
const frame = encodeFrame(Opcode.Text, "x".repeat(1024));
async function turns(corked: boolean): Promise<number> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (let turn = 0; turn < 1000; turn++) {
    if (corked) socket.cork();
    for (let i = 0; i < 64; i++) socket.write(frame);
    if (corked) socket.uncork();
    if (socket.writableLength > 1 << 20) await once(socket, "drain");
    else await new Promise((resolve) => setImmediate(resolve));
  }
  const used = process.cpuUsage(cpu);
  void start;
  return (used.user + used.system) / 1000;
}
let plainBest = Infinity;
let fastBest = Infinity;
for (let round = 0; round < 3; round++) {
  plainBest = Math.min(plainBest, await turns(false));
  fastBest = Math.min(fastBest, await turns(true));
}
report("64 × 1 KiB frames a turn, 1000 turns (CPU)", plainBest, fastBest, "");
socket.destroy();
sink.close();
