// Each fast path in server.ts (section 7, "Making it fast") gives exactly
// what the plain algorithm beside it gives: the same bytes, the same answers.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import {
  Opcode,
  PayloadCollector,
  SocketWriter,
  Utf8Validator,
  encodeFrame,
  maskBytes,
  maskInPlace,
  maskSimd,
  maskWords,
  pushUtf8,
} from "../server.ts";

/** A small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe("fast paths give what the plain algorithms give", () => {
  test("§5.3: maskWords equals maskBytes at every length 0-100, every offset and every alignment", () => {
    const next = random(5_3);
    const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
    for (let length = 0; length <= 100; length++) {
      for (let offset = 0; offset < 4; offset++) {
        for (let alignment = 0; alignment < 4; alignment++) {
          const backing = Buffer.from(Array.from({ length: length + alignment }, () => Math.floor(next() * 256)));
          const fast = backing.subarray(alignment);
          const plain = Buffer.from(fast);
          maskWords(fast, key, offset);
          maskBytes(plain, key, offset);
          assert.deepEqual(fast, plain, `length ${length}, offset ${offset}, alignment ${alignment}`);
        }
      }
    }
  });

  test(
    "§5.3: maskSimd (WebAssembly) and maskInPlace equal maskBytes around every 16-byte step, the 1 KiB " +
      "threshold and the 64 KiB slice, at every offset and alignment",
    () => {
      // Node 20 runs WebAssembly SIMD: here the fast path must run, not fall back unnoticed.
      assert.equal(maskSimd(Buffer.alloc(16), Buffer.alloc(4)), true, "WebAssembly SIMD is available on Node");
      const next = random(5_3_1);
      const key = Buffer.from([0x9c, 0x01, 0xe7, 0x42]);
      const lengths = [0, 1, 15, 16, 17, 31, 33, 1023, 1024, 1025, 65535, 65536, 65537, 3 * 65536 + 5];
      for (const length of lengths) {
        for (let offset = 0; offset < 4; offset++) {
          for (let alignment = 0; alignment < 4; alignment++) {
            const backing = Buffer.allocUnsafe(length + alignment);
            for (let index = 0; index < backing.length; index++) backing[index] = Math.floor(next() * 256);
            const simd = backing.subarray(alignment);
            const chosen = Buffer.from(simd);
            const plain = Buffer.from(simd);
            maskSimd(simd, key, offset);
            maskInPlace(chosen, key, offset);
            maskBytes(plain, key, offset);
            const where = `length ${length}, offset ${offset}, alignment ${alignment}`;
            assert.ok(simd.equals(plain), `maskSimd: ${where}`);
            assert.ok(chosen.equals(plain), `maskInPlace: ${where}`);
          }
        }
      }
    },
  );

  test("RFC 3629: pushUtf8 answers as Utf8Validator.push does, for valid and broken text cut at every point", () => {
    const samples = [
      Buffer.from("κόσμε 你好 😀 plain ascii", "utf8"),
      Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64]), // a surrogate
      Buffer.from([0xf4, 0x90, 0x80, 0x80]), // above U+10FFFF
      Buffer.from([0xe0, 0x80, 0xaf]), // overlong
      Buffer.from("ok then \xff", "latin1"),
    ];
    for (const sample of samples) {
      for (let cut = 0; cut <= sample.length; cut++) {
        for (let second = cut; second <= sample.length; second++) {
          const pieces = [sample.subarray(0, cut), sample.subarray(cut, second), sample.subarray(second)];
          const plain = new Utf8Validator();
          const fast = new Utf8Validator();
          const plainAnswers = pieces.map((piece) => plain.push(piece));
          const fastAnswers = pieces.map((piece) => pushUtf8(fast, piece));
          const firstFalse = (answers: boolean[]) => answers.indexOf(false);
          assert.equal(
            firstFalse(fastAnswers),
            firstFalse(plainAnswers),
            `${sample.toString("hex")} cut at ${cut}, ${second}`,
          );
          if (firstFalse(plainAnswers) === -1) assert.equal(fast.complete, plain.complete);
        }
      }
    }
  });

  test("PayloadCollector gives the bytes Buffer.concat gives, for big, small and empty pieces", () => {
    const next = random(7);
    for (let round = 0; round < 50; round++) {
      const pieces = Array.from({ length: Math.floor(next() * 200) }, () => {
        const size = next() < 0.1 ? 2000 + Math.floor(next() * 3000) : Math.floor(next() * 40);
        return Buffer.from(Array.from({ length: size }, () => Math.floor(next() * 256)));
      });
      const collector = new PayloadCollector();
      for (const piece of pieces) collector.add(piece);
      assert.deepEqual(Buffer.concat(collector.takePieces()), Buffer.concat(pieces), `round ${round}`);
    }
  });

  test("RFC 6455 §5.2: FrameGatherer puts on the wire what encodeFrame gives, for two sockets written in turn", async () => {
    // Two real loopback connections, their server sides written by SocketWriters: small frames (gathered),
    // large ones (not), strings and pieces, over many turns, so that runs end every way and blocks fill.
    const accepted: Socket[] = [];
    const server = createServer((socket) => accepted.push(socket));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    const clients = [connect(port, "127.0.0.1"), connect(port, "127.0.0.1")];
    try {
      const received = clients.map((client) => {
        const chunks: Buffer[] = [];
        client.on("data", (chunk: Buffer) => chunks.push(chunk));
        return { chunks, ended: once(client, "end") };
      });
      while (accepted.length < 2) await new Promise((resolve) => setImmediate(resolve));
      const writers = accepted.map((socket) => new SocketWriter(socket, 1 << 26));
      const expected: Buffer[][] = [[], []];
      const next = random(11);
      const bytes = (size: number) => Buffer.from(Array.from({ length: size }, () => Math.floor(next() * 256)));
      for (let turn = 0; turn < 60; turn++) {
        for (let frame = 0; frame < 20; frame++) {
          const which = next() < 0.5 ? 0 : 1;
          const writer = writers[which]!;
          const choice = next();
          if (choice < 0.3) {
            const text = "汉字 and text ".repeat(Math.floor(next() * 200));
            writer.writeSmallFrame(Opcode.Text, text, Buffer.byteLength(text));
            expected[which]!.push(encodeFrame(Opcode.Text, text));
          } else if (choice < 0.8) {
            const pieces = Array.from({ length: 1 + Math.floor(next() * 3) }, () => bytes(Math.floor(next() * 1300)));
            const payload = Buffer.concat(pieces);
            writer.writeSmallFrame(Opcode.Binary, pieces, payload.length);
            expected[which]!.push(encodeFrame(Opcode.Binary, payload));
          } else {
            const frameBytes = encodeFrame(Opcode.Binary, bytes(4097 + Math.floor(next() * 6000)));
            writer.write([frameBytes]);
            expected[which]!.push(frameBytes);
          }
        }
        await new Promise((resolve) => setImmediate(resolve)); // the turn ends: every run goes out
      }
      for (const writer of writers) writer.end();
      await Promise.all(received.map((side) => side.ended));
      for (const which of [0, 1])
        assert.ok(Buffer.concat(received[which]!.chunks).equals(Buffer.concat(expected[which]!)), `socket ${which}`);
    } finally {
      for (const client of clients) client.destroy();
      server.close();
    }
  });
});
