// A mutation fuzzer for the sans-I/O FrameDecoder of server.ts (RFC 6455 §5).
//
// Each case is made from a seed alone (see caseSeed), so any failure can be
// replayed by its seed and index:
//   1. generate a stream of client frames that is mostly valid: text (with
//      1- to 4-byte characters), binary, fragmented messages (§5.4) with
//      control frames between fragments, pings, pongs, a close (§5.5.1), and,
//      when compression is allowed, RSV1 messages (RFC 7692);
//   2. break it on purpose, on two levels: the frames (invalid UTF-8, bad
//      opcodes, RSV bits, missing masks, lying or non-minimal 16/64-bit
//      lengths, bad close codes, ...) and the bytes (bit flips, truncation,
//      splicing with a second stream, insertions, deletions, overwritten
//      length fields);
//   3. cut the bytes into chunks several ways (whole, one byte at a time,
//      random sizes, at frame boundaries) and feed each way to a fresh
//      decoder, with fresh copies (the decoder unmasks in place).
//
// What must hold (checkCase):
//   - receive() never throws;
//   - a violation is the last event, there is at most one, and it carries
//     1002, 1007 or 1009 (§7.4.1), the code the `violations` table gives it;
//   - nothing comes after a close event (§5.5.1), nor after a violation, even
//     when more bytes are fed;
//   - every chunking gives the same events;
//   - the events equal those of an independent reference decoder written
//     here from the RFC (referenceDecode), which reads the whole stream at
//     once and validates UTF-8 with the platform's TextDecoder.
import { Buffer } from "node:buffer";
import { constants as zlibConstants, deflateRawSync } from "node:zlib";
import { FrameDecoder, deflateBound, violations, type DecoderEvent } from "../../server.ts";
import { Prng, caseSeed } from "../../test/support/prng.ts";

export interface FuzzOptions {
  maxPayload: number;
  maxFragments: number;
  allowCompression: boolean;
}

/** One frame before serialisation; mutations may make it invalid. */
interface FrameSpec {
  fin: boolean;
  /** RSV1, RSV2, RSV3 as bits 2, 1, 0. */
  rsv: number;
  opcode: number;
  mask: Buffer | undefined;
  payload: Buffer;
  /** The length encoding; by default the minimal one (§5.2). */
  lengthBits?: 7 | 16 | 64;
  /** A length field that lies about the payload that follows. */
  declaredLength?: bigint;
}

export interface FuzzCase {
  seed: number;
  index: number;
  options: FuzzOptions;
  stream: Buffer;
  /** Offsets where a frame header of the generated stream started (before byte mutations). */
  boundaries: number[];
  /** Ways to cut the stream: each a list of chunk lengths summing to its length. */
  chunkings: number[][];
  /** Short names of the mutations applied, for the reproducer. */
  mutations: string[];
}

// ── Generation ──────────────────────────────────────────────────────────────

const characterPools: readonly Buffer[][] = [
  'abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789{}":,.'.split(""),
  ["é", "ß", "ñ", "Ω", "д", "ש"], // 2 bytes
  ["中", "文", "€", "あ", "한", "\uffff", "\ue000", "\u0800"], // 3 bytes
  ["😀", "𝄞", "🚀", "\u{10ffff}", "\u{10000}"], // 4 bytes
].map((characters) => characters.map((character) => Buffer.from(character, "utf8")));
const allCharacters = characterPools.flat();

/** Valid UTF-8 of about `byteLength` bytes (up to 3 more, to finish the last character). */
function randomText(rng: Prng, byteLength: number): Buffer {
  if (byteLength > 2048) {
    // Long texts repeat a random block: generating every character costs too much.
    const block = randomText(rng, 1024);
    const copies = Math.floor(byteLength / block.length);
    return Buffer.concat([
      ...new Array<Buffer>(copies).fill(block),
      randomText(rng, byteLength - copies * block.length),
    ]);
  }
  const pool = rng.weighted<readonly Buffer[]>([
    [4, characterPools[0]!],
    [1, characterPools[1]!],
    [1, characterPools[2]!],
    [1, characterPools[3]!],
    [2, allCharacters],
  ]);
  const result = Buffer.allocUnsafe(byteLength + 4);
  let length = 0;
  while (length < byteLength) {
    // Byte by byte: Buffer.copy costs more than it saves on one to four bytes.
    for (const byte of pool[rng.below(pool.length)]!) result[length++] = byte;
  }
  return result.subarray(0, length);
}

function payloadSize(rng: Prng, options: FuzzOptions): number {
  return rng.weighted<() => number>([
    [30, () => rng.range(0, 20)],
    [30, () => rng.range(21, 125)],
    [15, () => rng.pick([0, 1, 124, 125, 126, 127, 128, 255, 256])],
    [14, () => rng.range(126, 1500)],
    [4, () => rng.range(1500, 6000)],
    [0.6, () => rng.range(options.maxPayload - 1500, options.maxPayload)],
    [0.4, () => rng.range(options.maxPayload + 1, options.maxPayload + 3000)],
  ])();
}

function maskKey(rng: Prng): Buffer {
  return rng.chance(0.05) ? Buffer.alloc(4) : rng.bytes(4);
}

const DEFLATE_TAIL_LENGTH = 4;

function compress(data: Buffer): Buffer {
  const compressed = deflateRawSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return compressed.subarray(0, compressed.length - DEFLATE_TAIL_LENGTH);
}

function controlFrame(rng: Prng, opcode: number): FrameSpec {
  const payload = rng.chance(0.5) ? randomText(rng, rng.range(0, 40)) : rng.bytes(rng.pick([0, 0, 1, 8, 60, 125]));
  return { fin: true, rsv: 0, opcode, mask: maskKey(rng), payload: payload.subarray(0, 125) };
}

const validCloseCodes = [
  1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
const invalidCloseCodes = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];

function closeFrame(rng: Prng): FrameSpec {
  let payload: Buffer;
  if (rng.chance(0.15)) payload = Buffer.alloc(0);
  else {
    const text = randomText(rng, rng.range(0, 80));
    // Cut the reason on a character boundary so that it fits (§5.5: 125 bytes in all).
    let end = Math.min(text.length, 123);
    while (end > 0 && end < text.length && (text[end]! & 0xc0) === 0x80) end--;
    payload = Buffer.concat([Buffer.alloc(2), text.subarray(0, end)]);
    payload.writeUInt16BE(rng.pick(validCloseCodes), 0);
  }
  return { fin: true, rsv: 0, opcode: 0x8, mask: maskKey(rng), payload };
}

/** A data message, perhaps compressed, perhaps in fragments with control frames between them. */
function dataMessage(rng: Prng, options: FuzzOptions, frames: FrameSpec[]): void {
  const binary = rng.chance(0.4);
  let data = binary ? rng.bytes(payloadSize(rng, options)) : randomText(rng, payloadSize(rng, options));
  let rsv = 0;
  if (options.allowCompression && rng.chance(0.35)) {
    data = compress(data);
    rsv = 0b100;
  }
  const fragments = rng.weighted<() => number>([
    [60, () => 1],
    [30, () => rng.range(2, 4)],
    [10, () => rng.range(5, 40)],
  ])();
  const cuts = [0];
  for (let index = 1; index < fragments; index++) cuts.push(rng.range(0, data.length));
  cuts.sort((a, b) => a - b);
  cuts.push(data.length);
  for (let index = 0; index < fragments; index++) {
    frames.push({
      fin: index === fragments - 1,
      rsv: index === 0 ? rsv : 0,
      opcode: index === 0 ? (binary ? 0x2 : 0x1) : 0x0,
      mask: maskKey(rng),
      payload: data.subarray(cuts[index]!, cuts[index + 1]!),
    });
    // §5.4: control frames may come between the fragments of a message.
    if (index < fragments - 1 && rng.chance(0.2)) frames.push(controlFrame(rng, rng.pick([0x9, 0xa])));
  }
}

function generateFrames(rng: Prng, options: FuzzOptions): FrameSpec[] {
  const frames: FrameSpec[] = [];
  const messages = rng.range(1, 6);
  for (let index = 0; index < messages; index++) {
    const kind = rng.weighted<"data" | "ping" | "pong" | "close">([
      [6, "data"],
      [2, "ping"],
      [1, "pong"],
      [1, "close"],
    ]);
    if (kind === "data") dataMessage(rng, options, frames);
    else if (kind === "close") {
      frames.push(closeFrame(rng));
      if (rng.chance(0.7)) break;
    } else frames.push(controlFrame(rng, kind === "ping" ? 0x9 : 0xa));
  }
  if (rng.chance(0.2)) frames.push(closeFrame(rng));
  return frames;
}

const invalidUtf8Sequences: readonly number[][] = [
  [0xff],
  [0xfe],
  [0x80], // a continuation byte alone
  [0xc0, 0xaf], // overlong
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf], // overlong 3-byte
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xed, 0xbf, 0xbf],
  [0xf0, 0x80, 0x80, 0xaf], // overlong 4-byte
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf5, 0x80, 0x80, 0x80],
  [0xe2, 0x82], // truncated
  [0xf0, 0x9f, 0x98], // truncated 4-byte
];

const interestingLengths = (options: FuzzOptions): bigint[] => [
  0n,
  1n,
  125n,
  126n,
  127n,
  0xffffn,
  0x10000n,
  BigInt(options.maxPayload),
  BigInt(options.maxPayload + 1),
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n, // the most significant bit: forbidden (§5.2)
  2n ** 64n - 1n,
];

/** Frame-level mutations: each names the rule it tries to break. */
function mutateFrames(rng: Prng, frames: FrameSpec[], options: FuzzOptions, applied: string[]): void {
  const count = rng.weighted<number>([
    [40, 0],
    [35, 1],
    [18, 2],
    [7, 3],
  ]);
  for (let round = 0; round < count && frames.length > 0; round++) {
    const index = rng.below(frames.length);
    const frame = frames[index]!;
    const kind = rng.pick([
      "invalid-utf8",
      "opcode",
      "fin",
      "rsv",
      "unmasked",
      "control-too-long",
      "close-payload",
      "non-minimal-length",
      "lying-length",
      "drop",
      "duplicate",
      "swap",
      "empty-continuation",
      "fragment-control",
      "split-character",
    ] as const);
    applied.push(`frame:${kind}@${index}`);
    switch (kind) {
      case "invalid-utf8": {
        const bad = Buffer.from(rng.pick(invalidUtf8Sequences));
        const at = rng.range(0, frame.payload.length);
        frame.payload = Buffer.concat([frame.payload.subarray(0, at), bad, frame.payload.subarray(at)]);
        break;
      }
      case "opcode":
        frame.opcode = rng.below(16);
        break;
      case "fin":
        frame.fin = !frame.fin;
        break;
      case "rsv":
        frame.rsv = rng.below(8);
        break;
      case "unmasked":
        frame.mask = undefined;
        break;
      case "control-too-long":
        frame.opcode = rng.pick([0x8, 0x9, 0xa]);
        frame.payload = rng.bytes(rng.range(126, 300));
        break;
      case "close-payload": {
        frame.opcode = 0x8;
        frame.fin = true;
        const variant = rng.below(3);
        if (variant === 0) frame.payload = rng.bytes(1);
        else {
          const payload = Buffer.alloc(2);
          payload.writeUInt16BE(variant === 1 ? rng.pick(invalidCloseCodes) : rng.pick(validCloseCodes), 0);
          const reason =
            variant === 1 ? randomText(rng, rng.range(0, 20)) : Buffer.from(rng.pick(invalidUtf8Sequences));
          frame.payload = Buffer.concat([payload, reason]).subarray(0, 125);
        }
        break;
      }
      case "non-minimal-length":
        frame.lengthBits = rng.pick([16, 64] as const);
        if (frame.lengthBits === 16 && frame.payload.length > 0xffff) frame.lengthBits = 64;
        break;
      case "lying-length":
        frame.declaredLength = rng.chance(0.5)
          ? rng.pick(interestingLengths(options))
          : rng.chance(0.5)
            ? BigInt(rng.range(0, 0xffff))
            : rng.uint64();
        break;
      case "drop":
        frames.splice(index, 1);
        break;
      case "duplicate":
        frames.splice(index, 0, { ...frame, payload: Buffer.from(frame.payload) });
        break;
      case "swap": {
        const other = rng.below(frames.length);
        frames[index] = frames[other]!;
        frames[other] = frame;
        break;
      }
      case "empty-continuation":
        frames.splice(index, 0, {
          fin: rng.chance(0.5),
          rsv: 0,
          opcode: 0x0,
          mask: maskKey(rng),
          payload: Buffer.alloc(0),
        });
        break;
      case "fragment-control":
        frames.splice(index, 0, { ...controlFrame(rng, rng.pick([0x8, 0x9, 0xa])), fin: false });
        break;
      case "split-character": {
        // A multi-byte character cut between two fragments is valid (§5.6:
        // validity is of the whole message); cut one near a non-ASCII byte.
        if (frame.opcode !== 0x1 || frame.payload.length < 2) break;
        let at = frame.payload.findIndex((byte) => byte >= 0x80);
        if (at === -1) at = rng.range(1, frame.payload.length - 1);
        else at = Math.min(frame.payload.length - 1, at + 1);
        const first: FrameSpec = { ...frame, fin: false, payload: frame.payload.subarray(0, at) };
        const second: FrameSpec = {
          fin: frame.fin,
          rsv: 0,
          opcode: 0x0,
          mask: maskKey(rng),
          payload: frame.payload.subarray(at),
        };
        frames.splice(index, 1, first, second);
        break;
      }
    }
  }
}

function serializeFrames(frames: readonly FrameSpec[]): { bytes: Buffer; boundaries: number[] } {
  const headerLengths = frames.map((frame) => {
    const bits = lengthBitsOf(frame);
    return 2 + (bits === 16 ? 2 : bits === 64 ? 8 : 0) + (frame.mask ? 4 : 0);
  });
  let total = 0;
  for (const [position, frame] of frames.entries()) total += headerLengths[position]! + frame.payload.length;
  // One buffer for the stream, every byte written below.
  const bytes = Buffer.allocUnsafe(total);
  const boundaries: number[] = [];
  let offset = 0;
  for (const [position, frame] of frames.entries()) {
    const length = frame.declaredLength ?? BigInt(frame.payload.length);
    const bits = lengthBitsOf(frame);
    boundaries.push(offset);
    bytes[offset] = (frame.fin ? 0x80 : 0) | ((frame.rsv & 7) << 4) | (frame.opcode & 0x0f);
    const maskBit = frame.mask ? 0x80 : 0;
    let at = offset + 2;
    if (bits === 7) bytes[offset + 1] = maskBit | Number(length & 0x7fn);
    else if (bits === 16) {
      bytes[offset + 1] = maskBit | 126;
      bytes.writeUInt16BE(Number(length & 0xffffn), at);
      at += 2;
    } else {
      bytes[offset + 1] = maskBit | 127;
      bytes.writeBigUInt64BE(length & (2n ** 64n - 1n), at);
      at += 8;
    }
    if (frame.mask) {
      frame.mask.copy(bytes, at);
      at += 4;
    }
    frame.payload.copy(bytes, at);
    if (frame.mask) {
      for (let index = 0; index < frame.payload.length; index++) bytes[at + index]! ^= frame.mask[index & 3]!;
    }
    offset += headerLengths[position]! + frame.payload.length;
  }
  return { bytes, boundaries };
}

/** How many bits the frame's length field has: the shortest that fits, unless a mutation chose another. */
function lengthBitsOf(frame: FrameSpec): 7 | 16 | 64 {
  const length = frame.declaredLength ?? BigInt(frame.payload.length);
  return frame.lengthBits ?? (length < 126n ? 7 : length < 65536n ? 16 : 64);
}

/** Byte-level mutations, blind to the frames (but told where headers were). */
function mutateBytes(
  rng: Prng,
  input: Buffer,
  boundaries: number[],
  donor: () => Buffer,
  options: FuzzOptions,
  applied: string[],
): Buffer {
  let bytes = input;
  const count = rng.weighted<number>([
    [45, 0],
    [30, 1],
    [15, 2],
    [10, rng.range(3, 8)],
  ]);
  const nearHeader = () => {
    if (boundaries.length === 0 || rng.chance(0.4)) return rng.below(Math.max(1, bytes.length));
    return Math.min(bytes.length - 1, rng.pick(boundaries) + rng.below(14));
  };
  for (let round = 0; round < count; round++) {
    if (bytes.length === 0) break;
    const kind = rng.pick(["flip", "set", "truncate", "splice", "insert", "delete", "repeat", "length-field"] as const);
    applied.push(`bytes:${kind}`);
    switch (kind) {
      case "flip": {
        bytes = Buffer.from(bytes);
        const at = nearHeader();
        bytes[at]! ^= 1 << rng.below(8);
        break;
      }
      case "set": {
        bytes = Buffer.from(bytes);
        bytes[nearHeader()] = rng.pick([
          0x00,
          0x01,
          0x7d,
          0x7e,
          0x7f,
          0x80,
          0x81,
          0x88,
          0x89,
          0x8a,
          0xfe,
          0xff,
          rng.below(256),
        ]);
        break;
      }
      case "truncate":
        bytes = bytes.subarray(0, rng.below(bytes.length));
        break;
      case "splice": {
        const cut = rng.chance(0.5) && boundaries.length > 0 ? rng.pick(boundaries) : rng.below(bytes.length + 1);
        const from = rng.below(donor().length + 1);
        bytes = Buffer.concat([bytes.subarray(0, cut), donor().subarray(from)]);
        break;
      }
      case "insert": {
        const at = rng.below(bytes.length + 1);
        bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(rng.range(1, 16)), bytes.subarray(at)]);
        break;
      }
      case "delete": {
        const at = rng.below(bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + rng.range(1, 16))]);
        break;
      }
      case "repeat": {
        const at = rng.below(bytes.length);
        const end = Math.min(bytes.length, at + rng.range(1, 64));
        bytes = Buffer.concat([bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end)]);
        break;
      }
      case "length-field": {
        // Overwrite a header's 7-bit length with 126 or 127 and write random
        // 16 or 64 bits after it: random lengths, including huge ones.
        if (boundaries.length === 0) break;
        const at = rng.pick(boundaries);
        if (at + 1 >= bytes.length) break;
        bytes = Buffer.from(bytes);
        const sixteen = rng.chance(0.5);
        bytes[at + 1] = (bytes[at + 1]! & 0x80) | (sixteen ? 126 : 127);
        const field = Buffer.alloc(sixteen ? 2 : 8);
        if (sixteen) field.writeUInt16BE(rng.below(0x10000), 0);
        else field.writeBigUInt64BE(rng.chance(0.5) ? rng.pick(interestingLengths(options)) : rng.uint64(), 0);
        field.copy(bytes, at + 2, 0, Math.max(0, Math.min(field.length, bytes.length - at - 2)));
        break;
      }
    }
  }
  return bytes;
}

function randomChunking(rng: Prng, length: number): number[] {
  const chunks: number[] = [];
  let left = length;
  // At most a few thousand chunks: one-byte chunks of a 64 KiB stream cost time and prove little more.
  const style = Math.max(rng.pick([1, 8, 64, 4096]), Math.ceil(length / 200));
  while (left > 0) {
    const size = rng.chance(0.03) ? 0 : Math.min(left, rng.range(1, style));
    chunks.push(size);
    left -= size;
  }
  return chunks;
}

function boundaryChunking(rng: Prng, length: number, boundaries: number[]): number[] {
  const cuts = new Set<number>();
  for (const boundary of boundaries) {
    const cut = boundary + rng.range(-1, 2);
    if (cut > 0 && cut < length) cuts.add(cut);
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const chunks: number[] = [];
  let previous = 0;
  for (const cut of sorted) {
    chunks.push(cut - previous);
    previous = cut;
  }
  if (length > previous) chunks.push(length - previous);
  return chunks;
}

export const defaultFuzzOptions: FuzzOptions = {
  maxPayload: 64 * 1024,
  maxFragments: 131_072,
  allowCompression: false,
};

/** Builds case `index` of the run seeded `seed`, from those two numbers alone. */
export function makeCase(seed: number, index: number, base: Partial<FuzzOptions> = {}): FuzzCase {
  const rng = new Prng(caseSeed(seed, index));
  const options: FuzzOptions = {
    ...defaultFuzzOptions,
    allowCompression: rng.chance(0.25),
    maxFragments: rng.chance(0.1) ? rng.range(1, 12) : defaultFuzzOptions.maxFragments,
    ...base,
  };
  const mutations: string[] = [];
  const frames = generateFrames(rng, options);
  mutateFrames(rng, frames, options, mutations);
  const { bytes, boundaries } = serializeFrames(frames);
  // The donor's frames are drawn for every case, so that the draws after them do not depend on whether a
  // splice happens; its bytes are only written when one does.
  const donorFrames = generateFrames(rng, options);
  let donorBytes: Buffer | undefined;
  const donor = () => (donorBytes ??= serializeFrames(donorFrames).bytes);
  const stream = mutateBytes(rng, bytes, boundaries, donor, options, mutations);
  const chunkings: number[][] = [
    [stream.length],
    randomChunking(rng, stream.length),
    boundaryChunking(rng, stream.length, boundaries),
  ];
  if (stream.length <= 300 || rng.chance(0.02)) chunkings.push(new Array<number>(stream.length).fill(1));
  return { seed, index, options, stream, boundaries, chunkings, mutations };
}

// ── The reference decoder ───────────────────────────────────────────────────

/** An event with its payload as bytes, so that events compare exactly. */
export type NormalEvent =
  | { type: "text" | "binary" | "ping" | "pong"; data: Buffer }
  | { type: "compressed"; binary: boolean; data: Buffer }
  | { type: "close"; code: number; reason: string }
  | { type: "violation"; violation: string; closeCode: number };

/** §7.4.1 and §7.4.2, and the IANA registry: codes a peer may send. */
function referenceCloseCodeIsValid(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014].includes(code);
}

/** Reads a whole stream as the server must (§5.2-§5.7, §7.4, §8.1, RFC 7692
 * §6.1), reporting a violation the moment the bytes that prove it are in,
 * even when the stream ends in the middle of a frame. Written independently
 * of FrameDecoder, from the RFC: it is the fuzzer's oracle. */
export function referenceDecode(input: Uint8Array, options: FuzzOptions): NormalEvent[] {
  const bytes = Buffer.from(input); // a copy: unmasking below must not touch the input
  const events: NormalEvent[] = [];
  const fail = (violation: keyof typeof violations) => {
    events.push({ type: "violation", violation, closeCode: violations[violation].closeCode });
    return events;
  };
  let position = 0;
  let messageOpcode = 0;
  let messageCompressed = false;
  let messageLength = 0;
  let fragments = 0;
  let messageParts: Buffer[] = [];
  let utf8: TextDecoder | undefined;
  for (;;) {
    if (bytes.length - position < 2) return events;
    const byte0 = bytes[position]!;
    const byte1 = bytes[position + 1]!;
    position += 2;
    const fin = (byte0 & 0x80) !== 0;
    const rsv1 = (byte0 & 0x40) !== 0;
    const opcode = byte0 & 0x0f;
    const masked = (byte1 & 0x80) !== 0;
    const length7 = byte1 & 0x7f;
    const control = opcode >= 0x8;
    if ((byte0 & 0x30) !== 0 || (rsv1 && !options.allowCompression)) return fail("reserved_bits");
    if (![0x0, 0x1, 0x2, 0x8, 0x9, 0xa].includes(opcode)) return fail("reserved_opcode");
    if (control) {
      if (!fin) return fail("control_fragmented");
      if (length7 > 125) return fail("control_too_long");
      if (rsv1) return fail("compressed_control");
    } else if (opcode === 0x0) {
      if (messageOpcode === 0) return fail("unexpected_continuation");
      if (rsv1) return fail("compressed_continuation");
    } else if (messageOpcode !== 0) return fail("expected_continuation");
    if (!masked) return fail("unmasked_frame");
    let length: bigint;
    if (length7 === 126) {
      if (bytes.length - position < 2) return events;
      length = BigInt(bytes.readUInt16BE(position));
      position += 2;
    } else if (length7 === 127) {
      if (bytes.length - position < 8) return events;
      length = bytes.readBigUInt64BE(position);
      position += 8;
      if (length >= 2n ** 63n) return fail("length_too_large");
    } else length = BigInt(length7);
    if (!control) {
      // The server's policy: a compressed message may take deflateBound(maxPayload)
      // bytes on the wire (incompressible data grows); it is limited exactly once inflated.
      const compressed = opcode === 0x0 ? messageCompressed : rsv1;
      const limit = compressed ? deflateBound(options.maxPayload) : options.maxPayload;
      if (BigInt(messageLength) + length > BigInt(limit)) return fail("message_too_big");
      if (fragments + 1 > options.maxFragments) return fail("too_many_fragments");
      if (opcode !== 0x0) {
        messageOpcode = opcode;
        messageCompressed = rsv1;
        utf8 = opcode === 0x1 && !rsv1 ? new TextDecoder("utf-8", { fatal: true }) : undefined;
      }
      fragments++;
    }
    if (bytes.length - position < 4) return events;
    const key = bytes.subarray(position, position + 4);
    position += 4;
    const frameLength = Number(length); // within maxPayload or 125 by now
    const available = Math.min(frameLength, bytes.length - position);
    if (control && available < frameLength) return events;
    const payload = bytes.subarray(position, position + available);
    for (let index = 0; index < payload.length; index++) payload[index]! ^= key[index & 3]!;
    position += available;
    if (!control) {
      messageLength += available;
      messageParts.push(payload);
      if (utf8 !== undefined) {
        try {
          utf8.decode(payload, { stream: true });
        } catch {
          return fail("invalid_utf8");
        }
      }
      if (available < frameLength) return events;
      if (!fin) continue;
      const data = Buffer.concat(messageParts);
      if (messageCompressed) events.push({ type: "compressed", binary: messageOpcode === 0x2, data });
      else if (messageOpcode === 0x1) {
        try {
          utf8!.decode();
        } catch {
          return fail("invalid_utf8");
        }
        events.push({ type: "text", data });
      } else events.push({ type: "binary", data });
      messageOpcode = 0;
      messageCompressed = false;
      messageLength = 0;
      fragments = 0;
      messageParts = [];
      utf8 = undefined;
      continue;
    }
    if (opcode === 0x9) events.push({ type: "ping", data: Buffer.from(payload) });
    else if (opcode === 0xa) events.push({ type: "pong", data: Buffer.from(payload) });
    else {
      if (payload.length === 0) {
        events.push({ type: "close", code: 1005, reason: "" });
        return events;
      }
      if (payload.length === 1) return fail("close_one_byte");
      const code = payload.readUInt16BE(0);
      if (!referenceCloseCodeIsValid(code)) return fail("close_invalid_code");
      let reason: string;
      try {
        reason = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload.subarray(2));
      } catch {
        return fail("close_invalid_reason");
      }
      events.push({ type: "close", code, reason });
      return events; // §5.5.1: nothing after a close frame is read
    }
  }
}

// ── Running and checking ────────────────────────────────────────────────────

export function normalize(event: DecoderEvent): NormalEvent | undefined {
  switch (event.type) {
    case "text":
      return { type: "text", data: Buffer.from(event.text, "utf8") };
    case "binary":
    case "ping":
    case "pong":
      return { type: event.type, data: Buffer.from(event.data) };
    case "compressed":
      return { type: "compressed", binary: event.binary, data: Buffer.from(event.data) };
    case "close":
      return { type: "close", code: event.code, reason: event.reason };
    case "violation":
      return { type: "violation", violation: event.violation, closeCode: event.closeCode };
    case "frame":
      return undefined;
  }
}

export function describeEvent(event: NormalEvent): string {
  switch (event.type) {
    case "close":
      return `close(${event.code}, ${JSON.stringify(event.reason)})`;
    case "violation":
      return `violation(${event.violation}, ${event.closeCode})`;
    case "compressed":
      return `compressed(${event.binary ? "binary" : "text"}, ${event.data.length} bytes)`;
    default:
      return (
        `${event.type}(${event.data.length} ` +
        `bytes${event.data.length <= 24 ? ` ${event.data.toString("hex")}` : ""})`
      );
  }
}

export function eventsEqual(a: NormalEvent, b: NormalEvent): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case "close":
      return b.type === "close" && a.code === b.code && a.reason === b.reason;
    case "violation":
      return b.type === "violation" && a.violation === b.violation && a.closeCode === b.closeCode;
    case "compressed":
      return b.type === "compressed" && a.binary === b.binary && a.data.equals(b.data);
    default:
      return "data" in b && a.data.equals(b.data);
  }
}

export function sameEvents(a: readonly NormalEvent[], b: readonly NormalEvent[]): boolean {
  return a.length === b.length && a.every((event, index) => eventsEqual(event, b[index]!));
}

export interface DecoderRun {
  events: NormalEvent[];
  /** What receive() threw, if it did. */
  thrown: string | undefined;
  /** Something that broke an invariant while running. */
  problem: string | undefined;
}

const legitimateViolationCodes = new Set([1002, 1007, 1009]);

/** Feeds `stream` to a fresh decoder in the chunks given, each a fresh copy. */
export function runDecoder(
  stream: Buffer,
  chunking: readonly number[],
  options: FuzzOptions,
  observeFrames = false,
): DecoderRun {
  const decoder = new FrameDecoder({ expectMasked: true, observeFrames, ...options });
  const events: NormalEvent[] = [];
  let offset = 0;
  let terminal: string | undefined;
  let problem: string | undefined;
  const take = (received: DecoderEvent[]) => {
    for (const event of received) {
      if (terminal !== undefined && problem === undefined) problem = `an event (${event.type}) came after ${terminal}`;
      const normal = normalize(event);
      if (normal === undefined) continue;
      events.push(normal);
      if (normal.type === "violation") {
        terminal = "a violation";
        const expected = violations[normal.violation as keyof typeof violations];
        if (
          !legitimateViolationCodes.has(normal.closeCode) ||
          expected === undefined ||
          expected.closeCode !== normal.closeCode
        ) {
          problem ??= `violation ${normal.violation} carries close code ${normal.closeCode}`;
        }
      } else if (normal.type === "close") terminal = "a close";
      else if ((normal.type === "ping" || normal.type === "pong") && normal.data.length > 125) {
        problem ??= `a ${normal.type} of ${normal.data.length} bytes (§5.5 allows 125)`;
      } else if ((normal.type === "text" || normal.type === "binary") && normal.data.length > options.maxPayload) {
        problem ??= `a message of ${normal.data.length} bytes passed maxPayload ${options.maxPayload}`;
      }
    }
  };
  try {
    for (const size of chunking) {
      take(decoder.receive(Buffer.from(stream.subarray(offset, offset + size))));
      offset += size;
    }
    // Once stopped, the decoder must stay silent whatever else arrives.
    if (terminal !== undefined) {
      const ping = Buffer.from([0x89, 0x80, 1, 2, 3, 4]);
      take(decoder.receive(Buffer.concat([ping, Buffer.from(stream.subarray(0, 64))])));
    }
  } catch (error) {
    return { events, thrown: error instanceof Error ? (error.stack ?? error.message) : String(error), problem };
  }
  return { events, thrown: undefined, problem };
}

export interface FuzzFailure {
  fuzzCase: FuzzCase;
  chunking: number[];
  message: string;
}

/** Runs every chunking of a case and checks the invariants; undefined when all hold. `expected` is what the
 * reference decoder reads in the case's stream. */
export function checkCase(
  fuzzCase: FuzzCase,
  expected = referenceDecode(fuzzCase.stream, fuzzCase.options),
): FuzzFailure | undefined {
  let first: NormalEvent[] | undefined;
  for (const [position, chunking] of fuzzCase.chunkings.entries()) {
    const run = runDecoder(fuzzCase.stream, chunking, fuzzCase.options, position === 1 && fuzzCase.index % 3 === 0);
    const fail = (message: string): FuzzFailure => ({ fuzzCase, chunking, message });
    if (run.thrown !== undefined) return fail(`receive() threw: ${run.thrown}`);
    if (run.problem !== undefined) return fail(run.problem);
    const violationCount = run.events.filter((event) => event.type === "violation").length;
    if (violationCount > 1) return fail(`${violationCount} violation events`);
    if (first === undefined) first = run.events;
    else if (!sameEvents(first, run.events)) {
      return fail(
        `this chunking gave other events than the whole stream:\n  whole: ${first.map(describeEvent).join(", ")}\n  ` +
          `here:  ${run.events.map(describeEvent).join(", ")}`,
      );
    }
    if (!sameEvents(expected, run.events)) {
      return fail(
        `the decoder disagrees with the reference decoder:\n  reference: ${expected.map(describeEvent).join(", ")}\n ` +
          ` decoder:   ${run.events.map(describeEvent).join(", ")}`,
      );
    }
  }
  return undefined;
}

/** Everything needed to replay a failure, on a few lines. */
export function formatReproducer(failure: FuzzFailure, maxHexBytes = Infinity): string {
  const { fuzzCase, chunking } = failure;
  const shown = fuzzCase.stream.subarray(0, maxHexBytes);
  const cut =
    shown.length < fuzzCase.stream.length
      ? ` … (${fuzzCase.stream.length - shown.length} more bytes: run the replay command)`
      : "";
  return [
    `FAILURE in case ${fuzzCase.index} of seed ${fuzzCase.seed}: ${failure.message}`,
    `  replay: npm run fuzz -- --seed ${fuzzCase.seed} --case ${fuzzCase.index}`,
    `  options: ${JSON.stringify(fuzzCase.options)}`,
    `  mutations: ${fuzzCase.mutations.join(" ") || "(none)"}`,
    `  stream (${fuzzCase.stream.length} bytes): ${shown.toString("hex")}${cut}`,
    `  chunking (${chunking.length} chunks): ` +
      `${chunking.length > 200 ? `${JSON.stringify(chunking.slice(0, 200))} …` : JSON.stringify(chunking)}`,
  ].join("\n");
}

export interface FuzzSummary {
  cases: number;
  failures: FuzzFailure[];
  /** How the reference decoder ended the cases: by event type of the last event. */
  endings: Record<string, number>;
  violations: Record<string, number>;
  bytes: number;
}

/** Runs cases [from, from + count) of a seed; stops collecting after maxFailures. */
export function runFuzz(
  seed: number,
  count: number,
  from = 0,
  maxFailures = 5,
  onProgress?: (done: number) => void,
): FuzzSummary {
  const summary: FuzzSummary = { cases: 0, failures: [], endings: {}, violations: {}, bytes: 0 };
  for (let index = from; index < from + count; index++) {
    const fuzzCase = makeCase(seed, index);
    summary.cases++;
    summary.bytes += fuzzCase.stream.length;
    const reference = referenceDecode(fuzzCase.stream, fuzzCase.options);
    const last = reference[reference.length - 1];
    const ending =
      last === undefined
        ? "nothing"
        : last.type === "violation" || last.type === "close"
          ? last.type
          : "incomplete-or-clean";
    summary.endings[ending] = (summary.endings[ending] ?? 0) + 1;
    if (last?.type === "violation") summary.violations[last.violation] = (summary.violations[last.violation] ?? 0) + 1;
    const failure = checkCase(fuzzCase, reference);
    if (failure !== undefined) {
      summary.failures.push(failure);
      if (summary.failures.length >= maxFailures) break;
    }
    if (onProgress !== undefined && (index - from + 1) % 10_000 === 0) onProgress(index - from + 1);
  }
  return summary;
}
