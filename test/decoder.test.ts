// The pure parts of the protocol: FrameDecoder, the encoder and the small
// helpers. No sockets, no timers: bytes in, events out. Each test names the
// section of RFC 6455 (or RFC 3629 for UTF-8) it checks.
//
// The decoder takes ownership of what it is given (it unmasks in place), so
// every test feeds it fresh copies.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer, isUtf8 } from "node:buffer";
import {
  FrameDecoder,
  MAX_CONTROL_PAYLOAD,
  Opcode,
  Utf8Validator,
  closeCodeIsValid,
  computeAcceptKey,
  encodeClosePayload,
  encodeFrame,
  frameHeaderSize,
  keyIsValid,
  maskInPlace,
  parseClosePayload,
  parseTokenList,
  violations,
  writeFrameHeader,
  type DecoderEvent,
  type DecoderOptions,
  type Violation,
} from "../server.ts";
import { hex } from "./support/bytes.ts";
import { Prng } from "./support/prng.ts";

// ── helpers ─────────────────────────────────────────────────────────────────

const RFC_MASK = hex("37 fa 21 3d");

function serverDecoder(options: Partial<DecoderOptions> = {}): FrameDecoder {
  return new FrameDecoder({ expectMasked: true, maxPayload: 1 << 20, ...options });
}

function clientDecoder(options: Partial<DecoderOptions> = {}): FrameDecoder {
  return new FrameDecoder({ expectMasked: false, maxPayload: 1 << 20, ...options });
}

/** Feeds a fresh copy of `bytes`, in one piece. */
function feed(decoder: FrameDecoder, bytes: Uint8Array): DecoderEvent[] {
  return decoder.receive(Buffer.from(bytes));
}

/** Feeds a fresh copy, one byte at a time, and returns every event. */
function feedBytewise(decoder: FrameDecoder, bytes: Uint8Array): DecoderEvent[] {
  const events: DecoderEvent[] = [];
  for (const byte of bytes) events.push(...decoder.receive(Buffer.from([byte])));
  return events;
}

/** A masked frame, as a client sends it. */
function masked(
  opcode: number,
  payload: Uint8Array | string,
  options: { fin?: boolean; rsv1?: boolean; key?: Uint8Array } = {},
): Buffer {
  return encodeFrame(opcode, payload, {
    fin: options.fin ?? true,
    rsv1: options.rsv1 ?? false,
    maskKey: options.key ?? hex("a1 b2 c3 d4"),
  });
}

/** An unmasked frame, as a server sends it. */
function plain(opcode: number, payload: Uint8Array | string, options: { fin?: boolean; rsv1?: boolean } = {}): Buffer {
  return encodeFrame(opcode, payload, options);
}

type Simple = [type: string, value: string | number, reason?: string];

/** Events as plain, comparable values (buffers as hex). Frame events are left out. */
function simplify(events: readonly DecoderEvent[]): Simple[] {
  const result: Simple[] = [];
  for (const event of events) {
    switch (event.type) {
      case "text":
        result.push(["text", event.text]);
        break;
      case "binary":
      case "ping":
      case "pong":
        result.push([event.type, event.data.toString("hex")]);
        break;
      case "compressed":
        result.push([event.binary ? "compressed-binary" : "compressed-text", event.data.toString("hex")]);
        break;
      case "close":
        result.push(["close", event.code, event.reason]);
        break;
      case "violation":
        result.push(["violation", event.closeCode, event.violation]);
        break;
      case "frame":
        break;
    }
  }
  return result;
}

function violationIn(events: readonly DecoderEvent[]): Extract<DecoderEvent, { type: "violation" }> | undefined {
  return events.find((event): event is Extract<DecoderEvent, { type: "violation" }> => event.type === "violation");
}

function assertViolation(events: readonly DecoderEvent[], violation: Violation, closeCode: number): void {
  const found = violationIn(events);
  assert.ok(found, `expected a ${violation} violation, got ${JSON.stringify(simplify(events))}`);
  assert.equal(found.violation, violation);
  assert.equal(found.closeCode, closeCode);
  assert.equal(violations[violation].closeCode, closeCode);
  assert.equal(events.at(-1), found, "the violation is the last event");
}

function assertNoViolation(events: readonly DecoderEvent[]): void {
  assert.equal(violationIn(events), undefined, `unexpected violation: ${JSON.stringify(simplify(events))}`);
}

/** Floats in [0, 1) from the tests' one seeded PRNG, so failures can be replayed. */
function prng(seed: number): () => number {
  const generator = new Prng(seed);
  return () => generator.float();
}

function randomInt(random: () => number, low: number, high: number): number {
  return low + Math.floor(random() * (high - low + 1));
}

function randomBytesFrom(random: () => number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index++) bytes[index] = Math.floor(random() * 256);
  return bytes;
}

// ── §5.7 examples ───────────────────────────────────────────────────────────

describe("§5.7 the RFC's examples, byte for byte", () => {
  const hello = Buffer.from("Hello");
  const bytes256 = Buffer.alloc(256, 0x5a);
  const bytes64k = Buffer.alloc(65536, 0xa5);

  test("§5.7 a single-frame unmasked text message 81 05 48 65 6c 6c 6f", () => {
    assert.deepEqual(encodeFrame(Opcode.Text, "Hello"), hex("81 05 48 65 6c 6c 6f"));
    assert.deepEqual(simplify(feed(clientDecoder(), hex("81 05 48 65 6c 6c 6f"))), [["text", "Hello"]]);
  });

  test("§5.7 a single-frame masked text message 81 85 37 fa 21 3d 7f 9f 4d 51 58", () => {
    assert.deepEqual(encodeFrame(Opcode.Text, "Hello", { maskKey: RFC_MASK }), hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"));
    assert.deepEqual(simplify(feed(serverDecoder(), hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"))), [["text", "Hello"]]);
  });

  test("§5.7 a fragmented unmasked text message 01 03 48 65 6c + 80 02 6c 6f is one Hello", () => {
    assert.deepEqual(encodeFrame(Opcode.Text, "Hel", { fin: false }), hex("01 03 48 65 6c"));
    assert.deepEqual(encodeFrame(Opcode.Continuation, "lo"), hex("80 02 6c 6f"));
    const decoder = clientDecoder();
    assert.deepEqual(simplify(feed(decoder, hex("01 03 48 65 6c"))), [], "nothing until the last fragment");
    assert.deepEqual(simplify(feed(decoder, hex("80 02 6c 6f"))), [["text", "Hello"]]);
  });

  test("§5.7 an unmasked ping 89 05 Hello", () => {
    assert.deepEqual(encodeFrame(Opcode.Ping, hello), hex("89 05 48 65 6c 6c 6f"));
    assert.deepEqual(simplify(feed(clientDecoder(), hex("89 05 48 65 6c 6c 6f"))), [["ping", hello.toString("hex")]]);
  });

  test("§5.7 a masked pong 8a 85 37 fa 21 3d 7f 9f 4d 51 58", () => {
    assert.deepEqual(encodeFrame(Opcode.Pong, hello, { maskKey: RFC_MASK }), hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"));
    assert.deepEqual(simplify(feed(serverDecoder(), hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"))), [
      ["pong", hello.toString("hex")],
    ]);
  });

  test("§5.7 256 bytes of binary data in a single unmasked frame: 82 7E 0100", () => {
    const frame = encodeFrame(Opcode.Binary, bytes256);
    assert.deepEqual(frame.subarray(0, 4), hex("82 7e 01 00"));
    assert.deepEqual(frame.subarray(4), bytes256);
    assert.equal(frame.length, 260);
    assert.deepEqual(simplify(feed(clientDecoder(), frame)), [["binary", bytes256.toString("hex")]]);
    // The same in server mode, masked.
    assert.deepEqual(simplify(feed(serverDecoder(), masked(Opcode.Binary, bytes256))), [
      ["binary", bytes256.toString("hex")],
    ]);
  });

  test("§5.7 64 KiB of binary data in a single unmasked frame: 82 7F 0000000000010000", () => {
    const frame = encodeFrame(Opcode.Binary, bytes64k);
    assert.deepEqual(frame.subarray(0, 10), hex("82 7f 00 00 00 00 00 01 00 00"));
    assert.equal(frame.length, 10 + 65536);
    assert.ok(frame.subarray(10).equals(bytes64k));
    const events = feed(clientDecoder(), frame);
    assert.equal(events.length, 1);
    const event = events[0]!;
    assert.equal(event.type, "binary");
    assert.ok(event.type === "binary" && event.data.equals(bytes64k));
    const serverEvents = feed(serverDecoder(), masked(Opcode.Binary, bytes64k));
    assert.ok(
      serverEvents.length === 1 && serverEvents[0]!.type === "binary" && serverEvents[0]!.data.equals(bytes64k),
    );
  });
});

// ── §5.2 lengths ────────────────────────────────────────────────────────────

describe("§5.2 payload length: 7, 16 and 64 bits", () => {
  const cases: Array<[length: number, headerBytes: string, headerSize: number]> = [
    [0, "82 00", 2],
    [1, "82 01", 2],
    [125, "82 7d", 2],
    [126, "82 7e 00 7e", 4],
    [127, "82 7e 00 7f", 4],
    [65535, "82 7e ff ff", 4],
    [65536, "82 7f 00 00 00 00 00 01 00 00", 10],
    [65537, "82 7f 00 00 00 00 00 01 00 01", 10],
  ];
  for (const [length, headerBytes, headerSize] of cases) {
    test(`§5.2 a ${length}-byte payload uses a ${headerSize}-byte header and round-trips`, () => {
      const payload = Buffer.alloc(length);
      for (let index = 0; index < length; index++) payload[index] = (index * 7 + 3) & 0xff;
      assert.equal(frameHeaderSize(length), headerSize);
      assert.equal(frameHeaderSize(length, true), headerSize + 4);
      const frame = encodeFrame(Opcode.Binary, payload);
      assert.deepEqual(frame.subarray(0, headerSize), hex(headerBytes));
      assert.equal(frame.length, headerSize + length);
      const header = Buffer.alloc(14);
      assert.equal(writeFrameHeader(header, 0, Opcode.Binary, length), headerSize);
      assert.deepEqual(header.subarray(0, headerSize), hex(headerBytes));

      const clientEvents = feed(clientDecoder(), frame);
      assert.equal(clientEvents.length, 1);
      assert.ok(clientEvents[0]!.type === "binary" && clientEvents[0]!.data.equals(payload));
      const maskedFrame = masked(Opcode.Binary, payload);
      assert.equal(maskedFrame.length, headerSize + 4 + length);
      assert.equal(maskedFrame[1]! & 0x80, 0x80, "MASK bit");
      const serverEvents = feed(serverDecoder(), maskedFrame);
      assert.equal(serverEvents.length, 1);
      assert.ok(serverEvents[0]!.type === "binary" && serverEvents[0]!.data.equals(payload));
    });
  }

  test("§5.2 a 64-bit length with its most significant bit set fails with 1002", () => {
    const frame = hex("82 7f 80 00 00 00 00 00 00 05 01 02 03 04 05");
    assertViolation(feed(clientDecoder(), frame), "length_too_large", 1002);
    assertViolation(feed(serverDecoder(), hex("82 ff 80 00 00 00 00 00 00 05")), "length_too_large", 1002);
    // Byte by byte: found as soon as the eight length bytes are in.
    const decoder = clientDecoder();
    const early = feedBytewise(decoder, hex("82 7f 80 00 00 00 00 00 00 05"));
    assertViolation(early, "length_too_large", 1002);
  });

  test("§5.2 a 64-bit length far beyond any limit (2^62) fails with 1009 from the header", () => {
    assertViolation(feed(clientDecoder(), hex("82 7f 40 00 00 00 00 00 00 00")), "message_too_big", 1009);
  });
});

// ── limits (§10.4) ──────────────────────────────────────────────────────────

describe("§10.4 size limits are enforced from the header", () => {
  test("§10.4 a message over maxPayload fails with 1009 as soon as its header is in, before any payload", () => {
    // 16-bit length 1001, masked, no mask key and no payload yet.
    const decoder = serverDecoder({ maxPayload: 1000 });
    assertViolation(feed(decoder, hex("82 fe 03 e9")), "message_too_big", 1009);
    // 7-bit length: the two header bytes are enough.
    assertViolation(feed(serverDecoder({ maxPayload: 100 }), hex("81 e5")), "message_too_big", 1009);
    // 64-bit length 4 GiB: ten header bytes.
    assertViolation(
      feed(serverDecoder({ maxPayload: 1000 }), hex("82 ff 00 00 00 01 00 00 00 00")),
      "message_too_big",
      1009,
    );
  });

  test("§10.4 a message of exactly maxPayload bytes is accepted", () => {
    const payload = Buffer.alloc(1000, 0x41);
    const events = feed(serverDecoder({ maxPayload: 1000 }), masked(Opcode.Text, payload));
    assert.deepEqual(simplify(events), [["text", payload.toString()]]);
  });

  test("§10.4 the limit counts the whole message across fragments: 1009 at the fragment that crosses it", () => {
    const decoder = serverDecoder({ maxPayload: 1000 });
    assertNoViolation(feed(decoder, masked(Opcode.Binary, Buffer.alloc(600), { fin: false })));
    assertNoViolation(feed(decoder, masked(Opcode.Continuation, Buffer.alloc(400), { fin: false })));
    // 1000 so far; one more byte is one too many, and only the header is needed to know.
    assertViolation(feed(decoder, hex("80 81")), "message_too_big", 1009);
  });

  test("§10.4 the limit is per message: two messages of maxPayload each are fine", () => {
    const decoder = serverDecoder({ maxPayload: 1000 });
    const one = Buffer.alloc(1000, 1);
    const events = feed(
      decoder,
      Buffer.concat([
        masked(Opcode.Binary, one.subarray(0, 500), { fin: false }),
        masked(Opcode.Continuation, one.subarray(500)),
        masked(Opcode.Binary, one),
      ]),
    );
    assert.deepEqual(simplify(events), [
      ["binary", one.toString("hex")],
      ["binary", one.toString("hex")],
    ]);
  });

  test("§10.4 a message with more fragments than maxFragments fails with 1009 (empty fragments count)", () => {
    const decoder = serverDecoder({ maxFragments: 4 });
    const events: DecoderEvent[] = [];
    events.push(...feed(decoder, masked(Opcode.Text, "", { fin: false })));
    for (let index = 0; index < 3; index++)
      events.push(...feed(decoder, masked(Opcode.Continuation, "", { fin: false })));
    events.push(...feed(decoder, masked(Opcode.Ping, "control frames do not count")));
    assertNoViolation(events);
    assertViolation(feed(decoder, hex("80 80")), "too_many_fragments", 1009);
  });

  test("§10.4 exactly maxFragments fragments are accepted", () => {
    const decoder = serverDecoder({ maxFragments: 4 });
    const frames = [
      masked(Opcode.Text, "a", { fin: false }),
      masked(Opcode.Continuation, "b", { fin: false }),
      masked(Opcode.Continuation, "c", { fin: false }),
      masked(Opcode.Continuation, "d"),
    ];
    assert.deepEqual(simplify(feed(decoder, Buffer.concat(frames))), [["text", "abcd"]]);
    // The count starts again for the next message.
    assert.deepEqual(simplify(feed(decoder, Buffer.concat(frames))), [["text", "abcd"]]);
  });
});

// ── §5.1 masking, §5.2 reserved bits and opcodes ───────────────────────────

describe("§5.1 and §5.2 frame header rules", () => {
  test("§5.1 an unmasked frame from a client fails with 1002", () => {
    assertViolation(feed(serverDecoder(), hex("81 05 48 65 6c 6c 6f")), "unmasked_frame", 1002);
    assertViolation(feed(serverDecoder(), hex("89 00")), "unmasked_frame", 1002);
  });

  test("§5.1 a masked frame from a server fails with 1002 (client mode)", () => {
    assertViolation(feed(clientDecoder(), hex("81 85 37 fa 21 3d 7f 9f 4d 51 58")), "masked_frame", 1002);
  });

  for (const [name, bit] of [
    ["RSV1", 0x40],
    ["RSV2", 0x20],
    ["RSV3", 0x10],
  ] as const) {
    test(`§5.2 ${name} set with no extension agreed fails with 1002`, () => {
      const frame = masked(Opcode.Text, "Hello");
      frame[0] = frame[0]! | bit;
      assertViolation(feed(serverDecoder(), frame), "reserved_bits", 1002);
      const control = masked(Opcode.Ping, "x");
      control[0] = control[0]! | bit;
      assertViolation(feed(serverDecoder(), control), "reserved_bits", 1002);
    });
  }

  test("§5.2 RSV2 and RSV3 still fail with 1002 when permessage-deflate allows RSV1", () => {
    for (const bit of [0x20, 0x10]) {
      const frame = masked(Opcode.Text, "Hello");
      frame[0] = frame[0]! | bit;
      assertViolation(feed(serverDecoder({ allowCompression: true }), frame), "reserved_bits", 1002);
    }
  });

  for (const opcode of [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    test(`§5.2 reserved opcode 0x${opcode.toString(16)} fails with 1002`, () => {
      assertViolation(feed(serverDecoder(), masked(opcode, "")), "reserved_opcode", 1002);
      assertViolation(feed(clientDecoder(), plain(opcode, "abc")), "reserved_opcode", 1002);
      // Inside a fragmented message too.
      const decoder = serverDecoder();
      assertNoViolation(feed(decoder, masked(Opcode.Text, "a", { fin: false })));
      assertViolation(feed(decoder, masked(opcode, "", { fin: false })), "reserved_opcode", 1002);
    });
  }
});

// ── §5.5 control frames, §5.4 fragmentation ────────────────────────────────

describe("§5.4 fragmentation and §5.5 control frames", () => {
  test("§5.5 a control frame of 125 bytes is accepted, of 126 bytes fails with 1002", () => {
    const ok = Buffer.alloc(MAX_CONTROL_PAYLOAD, 0x33);
    for (const opcode of [Opcode.Ping, Opcode.Pong]) {
      const events = feed(serverDecoder(), masked(opcode, ok));
      assert.deepEqual(simplify(events), [[opcode === Opcode.Ping ? "ping" : "pong", ok.toString("hex")]]);
      assertViolation(feed(serverDecoder(), masked(opcode, Buffer.alloc(126))), "control_too_long", 1002);
    }
    const longClose = Buffer.concat([hex("03 e8"), Buffer.alloc(124, 0x61)]);
    assertViolation(feed(serverDecoder(), masked(Opcode.Close, longClose)), "control_too_long", 1002);
    // Found from the two header bytes alone (7-bit field 126).
    assertViolation(feed(serverDecoder(), hex("89 fe")), "control_too_long", 1002);
  });

  for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
    test(`§5.5 a fragmented control frame (opcode 0x${opcode.toString(16)}, FIN=0) fails with 1002`, () => {
      assertViolation(feed(serverDecoder(), masked(opcode, "", { fin: false })), "control_fragmented", 1002);
    });
  }

  test("§5.4 control frames between fragments are delivered at once, the message after its last fragment", () => {
    const decoder = serverDecoder();
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Text, "He", { fin: false }))), []);
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Ping, "p1"))), [["ping", Buffer.from("p1").toString("hex")]]);
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Continuation, "l", { fin: false }))), []);
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Pong, "p2"))), [["pong", Buffer.from("p2").toString("hex")]]);
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Continuation, "lo"))), [["text", "Hello"]]);
  });

  test("§5.4 a ping arriving in the middle of a fragment's bytes waits only for its own frame", () => {
    const decoder = serverDecoder();
    const first = masked(Opcode.Binary, Buffer.alloc(300, 1), { fin: false });
    assert.deepEqual(simplify(feed(decoder, first)), []);
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Ping, ""))), [["ping", ""]]);
  });

  test("§5.4 a continuation frame with no message open fails with 1002", () => {
    assertViolation(feed(serverDecoder(), masked(Opcode.Continuation, "x")), "unexpected_continuation", 1002);
    // Also right after a complete message.
    const decoder = serverDecoder();
    assert.deepEqual(simplify(feed(decoder, masked(Opcode.Text, "done"))), [["text", "done"]]);
    assertViolation(feed(decoder, masked(Opcode.Continuation, "x")), "unexpected_continuation", 1002);
  });

  for (const [first, second] of [
    [Opcode.Text, Opcode.Text],
    [Opcode.Text, Opcode.Binary],
    [Opcode.Binary, Opcode.Text],
    [Opcode.Binary, Opcode.Binary],
  ] as const) {
    test(
      `§5.4 a new ${second === Opcode.Text ? "text" : "binary"} frame while a ` +
        `${first === Opcode.Text ? "text" : "binary"} message is open fails with 1002`,
      () => {
        const decoder = serverDecoder();
        assertNoViolation(feed(decoder, masked(first, "ab", { fin: false })));
        assertViolation(feed(decoder, masked(second, "cd")), "expected_continuation", 1002);
      },
    );
  }

  test("§5.6 an empty text message and an empty binary message are delivered", () => {
    assert.deepEqual(
      simplify(feed(serverDecoder(), Buffer.concat([masked(Opcode.Text, ""), masked(Opcode.Binary, "")]))),
      [
        ["text", ""],
        ["binary", ""],
      ],
    );
  });
});

// ── §8.1 UTF-8 ──────────────────────────────────────────────────────────────

/** Is there any valid UTF-8 string that starts with `prefix`? (Reference for
 * "fail as soon as": a prefix is fine until no continuation could save it.) */
function prefixIsViable(prefix: Uint8Array): boolean {
  for (let extra = 0; extra <= 3; extra++) {
    for (const filler of [0x80, 0xbf]) {
      if (isUtf8(Buffer.concat([prefix, Buffer.alloc(extra, filler)]))) return true;
    }
  }
  return false;
}

/** Autobahn TestSuite case 6.x style payloads: [name, hex, valid]. */
const utf8Cases: Array<[name: string, bytes: string, valid: boolean]> = [
  ["6.2.1 valid Hello-µ@ßöäüàá-UTF-8!!", Buffer.from("Hello-µ@ßöäüàá-UTF-8!!").toString("hex"), true],
  ["6.5.1 κόσμε", "ce ba e1 bd b9 ce bc ce b5", true],
  ["6.6.x κόσμε cut in the middle of a character", "ce ba e1 bd", false],
  ["6.7.1 first 1-byte sequence U+0000", "00", true],
  ["6.7.2 first 2-byte sequence U+0080", "c2 80", true],
  ["6.7.3 first 3-byte sequence U+0800", "e0 a0 80", true],
  ["6.7.4 first 4-byte sequence U+10000", "f0 90 80 80", true],
  ["6.8.1 5-byte sequence", "f8 88 80 80 80", false],
  ["6.8.2 6-byte sequence", "fc 84 80 80 80 80", false],
  ["6.9.1 last 1-byte U+007F", "7f", true],
  ["6.9.2 last 2-byte U+07FF", "df bf", true],
  ["6.9.3 last 3-byte U+FFFF", "ef bf bf", true],
  ["6.9.4 last 4-byte U+10FFFF", "f4 8f bf bf", true],
  ["6.10.1 4-byte above U+10FFFF (f7 bf bf bf)", "f7 bf bf bf", false],
  ["6.10.2 5-byte above U+10FFFF", "fb bf bf bf bf", false],
  ["6.10.3 6-byte above U+10FFFF", "fd bf bf bf bf bf", false],
  ["6.11.1 U+D7FF", "ed 9f bf", true],
  ["6.11.2 U+E000", "ee 80 80", true],
  ["6.11.3 U+FFFD", "ef bf bd", true],
  ["6.11.4 U+10FFFF", "f4 8f bf bf", true],
  ["6.11.5 U+110000 (f4 90 80 80)", "f4 90 80 80", false],
  ["6.12.1 lone continuation byte 80", "80", false],
  ["6.12.2 lone continuation byte bf", "bf", false],
  ["6.12.3 80 bf", "80 bf", false],
  [
    "6.12.8 all continuation bytes",
    Buffer.from(Array.from({ length: 64 }, (_, index) => 0x80 + index)).toString("hex"),
    false,
  ],
  ["6.13.1 lonely 2-byte starts followed by spaces", "c0 20 c1 20 c2 20 df 20", false],
  ["6.13.2 lonely 3-byte starts followed by spaces", "e0 20 ef 20", false],
  ["6.13.3 lonely 4-byte starts followed by spaces", "f0 20 f7 20", false],
  ["6.14.1 2-byte sequence missing its last byte (c0)", "c0", false],
  ["6.14.2 3-byte sequence missing its last byte (e0 80)", "e0 80", false],
  ["6.14.3 3-byte sequence missing its last byte (e1 80)", "e1 80", false],
  ["6.14.4 4-byte sequence missing its last byte (f1 80 80)", "f1 80 80", false],
  ["6.14.10 U+07FF missing its last byte (df)", "df", false],
  ["6.14.11 U+FFFF missing its last byte (ef bf)", "ef bf", false],
  ["6.15.1 concatenated incomplete sequences", "c0 e0 80 f0 80 80 df ef bf f7 bf bf", false],
  ["6.16.1 impossible byte fe", "fe", false],
  ["6.16.2 impossible byte ff", "ff", false],
  ["6.16.3 fe fe ff ff", "fe fe ff ff", false],
  ["6.17.1 overlong / (c0 af)", "c0 af", false],
  ["6.17.2 overlong / (e0 80 af)", "e0 80 af", false],
  ["6.17.3 overlong / (f0 80 80 af)", "f0 80 80 af", false],
  ["6.17.4 overlong / (f8 80 80 80 af)", "f8 80 80 80 af", false],
  ["6.18.1 maximum overlong 2-byte (c1 bf)", "c1 bf", false],
  ["6.18.2 maximum overlong 3-byte (e0 9f bf)", "e0 9f bf", false],
  ["6.18.3 maximum overlong 4-byte (f0 8f bf bf)", "f0 8f bf bf", false],
  ["6.19.1 overlong NUL (c0 80)", "c0 80", false],
  ["6.19.2 overlong NUL (e0 80 80)", "e0 80 80", false],
  ["6.19.3 overlong NUL (f0 80 80 80)", "f0 80 80 80", false],
  ["6.20.1 surrogate U+D800", "ed a0 80", false],
  ["6.20.4 surrogate U+DBFF", "ed af bf", false],
  ["6.20.5 surrogate U+DC00", "ed b0 80", false],
  ["6.20.7 surrogate U+DFFF", "ed bf bf", false],
  ["6.21.1 surrogate pair U+D800 U+DC00", "ed a0 80 ed b0 80", false],
  ["6.21.8 surrogate pair U+DBFF U+DFFF", "ed af bf ed bf bf", false],
  ["6.22.1 noncharacter U+FFFE is valid UTF-8", "ef bf be", true],
  ["6.22.2 noncharacter U+FFFF is valid UTF-8", "ef bf bf", true],
  ["6.22.34 noncharacter U+10FFFE", "f4 8f bf be", true],
  ["6.3.1 a surrogate in the middle of valid text", "ce ba e1 bd b9 ce bc ce b5 ed a0 80 65 64 69 74 65 64", false],
  ["6.4.1 valid, then f4 90 80 80, then valid", "ce ba e1 bd b9 ce bc ce b5 f4 90 80 80 65 64 69 74 65 64", false],
];

describe("§8.1 UTF-8 is validated incrementally", () => {
  for (const [name, bytesHex, valid] of utf8Cases) {
    test(
      `§8.1 Autobahn ${name}: ` +
        `${valid ? "accepted whole, bytewise and split" : "fails with 1007 as soon as the bad byte arrives"}`,
      () => {
        const payload = hex(bytesHex);
        assert.equal(isUtf8(payload), valid, "the table itself");
        // Whole, in one frame.
        const whole = feed(serverDecoder(), masked(Opcode.Text, payload));
        if (valid) assert.deepEqual(simplify(whole), [["text", payload.toString("utf8")]]);
        else assertViolation(whole, "invalid_utf8", 1007);

        // One byte at a time: the violation appears with the first byte after
        // which no valid text could follow (or with the last byte, when the
        // text merely stops mid-character).
        let firstDead = -1;
        for (let index = 1; index <= payload.length; index++) {
          if (!prefixIsViable(payload.subarray(0, index))) {
            firstDead = index - 1;
            break;
          }
        }
        const frame = masked(Opcode.Text, payload);
        const headerSize = frame.length - payload.length;
        const decoder = serverDecoder();
        assertNoViolation(feed(decoder, frame.subarray(0, headerSize)));
        let violationAt = -1;
        for (let index = 0; index < payload.length; index++) {
          const events = decoder.receive(Buffer.from(frame.subarray(headerSize + index, headerSize + index + 1)));
          if (violationIn(events)) {
            violationAt = index;
            assertViolation(events, "invalid_utf8", 1007);
            break;
          }
        }
        if (valid) assert.equal(violationAt, -1);
        else if (firstDead >= 0) assert.equal(violationAt, firstDead, `the violation must come with byte ${firstDead}`);
        else assert.equal(violationAt, payload.length - 1, "ends mid-character: found at the end of the message");

        // Split into two fragments at every position, the same verdict.
        for (let cut = 0; cut <= payload.length; cut++) {
          const split = feed(
            serverDecoder(),
            Buffer.concat([
              masked(Opcode.Text, payload.subarray(0, cut), { fin: false }),
              masked(Opcode.Continuation, payload.subarray(cut)),
            ]),
          );
          if (valid) assert.deepEqual(simplify(split), [["text", payload.toString("utf8")]], `cut at ${cut}`);
          else assertViolation(split, "invalid_utf8", 1007);
        }
      },
    );
  }

  test("§8.1 an invalid first byte of a later fragment fails at once, with that fragment unfinished (FIN=0)", () => {
    const decoder = serverDecoder();
    assertNoViolation(feed(decoder, masked(Opcode.Text, hex("ce ba e1 bd b9 ce bc ce b5"), { fin: false })));
    // A 10-byte continuation frame, FIN=0, of which only the first payload byte arrives.
    const next = masked(Opcode.Continuation, Buffer.concat([hex("ff"), Buffer.alloc(9, 0x61)]), { fin: false });
    const headerSize = next.length - 10;
    const events = feed(decoder, next.subarray(0, headerSize + 1));
    assertViolation(events, "invalid_utf8", 1007);
  });

  test("§8.1 a character cut across fragments that cannot continue (e0 then 80) fails as the 80 arrives", () => {
    const decoder = serverDecoder();
    assertNoViolation(feed(decoder, masked(Opcode.Text, hex("61 e0"), { fin: false })));
    const next = masked(Opcode.Continuation, hex("80 80 61 62"), { fin: false });
    assertViolation(feed(decoder, next.subarray(0, next.length - 3)), "invalid_utf8", 1007);
  });

  test("§8.1 an invalid byte inside one frame fails before the rest of that frame's payload arrives", () => {
    const payload = Buffer.concat([Buffer.from("abc"), hex("c0"), Buffer.alloc(100, 0x61)]);
    const frame = masked(Opcode.Text, payload);
    const headerSize = frame.length - payload.length;
    const decoder = serverDecoder();
    assertNoViolation(feed(decoder, frame.subarray(0, headerSize + 3)));
    assertViolation(feed(decoder, frame.subarray(headerSize + 3, headerSize + 4)), "invalid_utf8", 1007);
    // Unmasked, in client mode, the same.
    const clientFrame = plain(Opcode.Text, payload);
    assertViolation(feed(clientDecoder(), clientFrame.subarray(0, clientFrame.length - 50)), "invalid_utf8", 1007);
  });

  test("§8.1 valid multi-byte characters split across fragments are accepted", () => {
    const text = "€ 😀 中文 é";
    const bytes = Buffer.from(text);
    // Every way to cut it into three fragments.
    for (let first = 0; first <= bytes.length; first++) {
      for (let second = first; second <= bytes.length; second++) {
        const decoder = serverDecoder();
        const events = feed(
          decoder,
          Buffer.concat([
            masked(Opcode.Text, bytes.subarray(0, first), { fin: false }),
            masked(Opcode.Continuation, bytes.subarray(first, second), { fin: false }),
            masked(Opcode.Continuation, bytes.subarray(second)),
          ]),
        );
        assert.deepEqual(simplify(events), [["text", text]], `cuts ${first}/${second}`);
      }
    }
    // And fed one byte at a time in single-byte fragments.
    const fragments = [...bytes].map((byte, index) =>
      masked(index === 0 ? Opcode.Text : Opcode.Continuation, Buffer.from([byte]), { fin: index === bytes.length - 1 }),
    );
    assert.deepEqual(simplify(feedBytewise(serverDecoder(), Buffer.concat(fragments))), [["text", text]]);
  });

  test("§8.1 a text message that ends in the middle of a character fails with 1007", () => {
    assertViolation(feed(serverDecoder(), masked(Opcode.Text, hex("61 ce"))), "invalid_utf8", 1007);
    const decoder = serverDecoder();
    assertNoViolation(feed(decoder, masked(Opcode.Text, hex("61 f0 9f"), { fin: false })));
    assertNoViolation(feed(decoder, masked(Opcode.Continuation, hex("98"), { fin: false })));
    assertViolation(feed(decoder, masked(Opcode.Continuation, hex(""))), "invalid_utf8", 1007);
  });

  test("§8.1 a binary message is not checked for UTF-8", () => {
    assert.deepEqual(simplify(feed(serverDecoder(), masked(Opcode.Binary, hex("ff c0 80 ed a0 80")))), [
      ["binary", "ffc080eda080"],
    ]);
  });

  test("§8.1 after a bad text message fails, the validator does not leak into a new decoder's next message", () => {
    // A fresh decoder starts clean; a good message after a good message with a split character is fine.
    const decoder = serverDecoder();
    assert.deepEqual(
      simplify(
        feed(
          decoder,
          Buffer.concat([
            masked(Opcode.Text, hex("e2 82"), { fin: false }),
            masked(Opcode.Continuation, hex("ac")),
            masked(Opcode.Text, "ok"),
          ]),
        ),
      ),
      [
        ["text", "€"],
        ["text", "ok"],
      ],
    );
  });
});

// ── §5.5.1 close frames ────────────────────────────────────────────────────

describe("§5.5.1 and §7.4 close frames", () => {
  test("§5.5.1 an empty close payload is reported as 1005 (no status received)", () => {
    assert.deepEqual(simplify(feed(serverDecoder(), masked(Opcode.Close, ""))), [["close", 1005, ""]]);
    assert.deepEqual(parseClosePayload(Buffer.alloc(0)), { code: 1005, reason: "" });
  });

  test("§5.5.1 a 1-byte close payload fails with 1002", () => {
    assertViolation(feed(serverDecoder(), masked(Opcode.Close, hex("03"))), "close_one_byte", 1002);
  });

  const invalidCodes = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 6000, 65535];
  for (const code of invalidCodes) {
    test(`§7.4 close code ${code} may not be sent: fails with 1002`, () => {
      const payload = Buffer.alloc(2);
      payload.writeUInt16BE(code);
      assertViolation(feed(serverDecoder(), masked(Opcode.Close, payload)), "close_invalid_code", 1002);
      assert.equal(closeCodeIsValid(code), false);
    });
  }

  const validCodes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
  for (const code of validCodes) {
    test(`§7.4 close code ${code} is accepted, with its reason`, () => {
      const payload = Buffer.concat([Buffer.alloc(2), Buffer.from("bye ✓")]);
      payload.writeUInt16BE(code);
      assert.deepEqual(simplify(feed(serverDecoder(), masked(Opcode.Close, payload))), [["close", code, "bye ✓"]]);
      assert.equal(closeCodeIsValid(code), true);
    });
  }

  test("§7.4 closeCodeIsValid: exactly 1000-1003, 1007-1014 and 3000-4999", () => {
    for (let code = 0; code <= 65535; code++) {
      const expected =
        code === 1000 ||
        code === 1001 ||
        code === 1002 ||
        code === 1003 ||
        (code >= 1007 && code <= 1014) ||
        (code >= 3000 && code <= 4999);
      if (closeCodeIsValid(code) !== expected) assert.fail(`closeCodeIsValid(${code}) should be ${expected}`);
    }
  });

  test("§5.5.1 a close reason that is not valid UTF-8 fails with 1007", () => {
    for (const reason of ["ff", "c0 af", "ed a0 80", "61 e2 82"]) {
      assertViolation(
        feed(serverDecoder(), masked(Opcode.Close, Buffer.concat([hex("03 e8"), hex(reason)]))),
        "close_invalid_reason",
        1007,
      );
    }
  });

  test("§5.5.1 after a close frame nothing more is parsed", () => {
    const decoder = serverDecoder();
    const bytes = Buffer.concat([
      masked(Opcode.Text, "before"),
      masked(Opcode.Close, hex("03 e8")),
      masked(Opcode.Text, "after"),
      hex("ff ff ff"),
    ]);
    assert.deepEqual(simplify(feed(decoder, bytes)), [
      ["text", "before"],
      ["close", 1000, ""],
    ]);
    assert.deepEqual(decoder.receive(Buffer.from(masked(Opcode.Ping, "x"))), []);
    assert.deepEqual(decoder.receive(hex("00 00 00")), []);
  });

  test("§7.1.7 after a violation nothing more is parsed", () => {
    const decoder = serverDecoder();
    const bytes = Buffer.concat([hex("81 05 48 65 6c 6c 6f"), masked(Opcode.Text, "after")]);
    const events = feed(decoder, bytes);
    assertViolation(events, "unmasked_frame", 1002);
    assert.equal(events.length, 1);
    assert.deepEqual(decoder.receive(Buffer.from(masked(Opcode.Ping, "x"))), []);
  });

  test("§5.5.1 encodeClosePayload: code then reason; nothing for 1005 or no code", () => {
    assert.deepEqual(encodeClosePayload(1000), hex("03 e8"));
    assert.deepEqual(encodeClosePayload(4000, "bye"), Buffer.concat([hex("0f a0"), Buffer.from("bye")]));
    assert.equal(encodeClosePayload(undefined).length, 0);
    assert.equal(encodeClosePayload(1005, "ignored").length, 0);
    const short = "é".repeat(61); // 122 bytes + 2: fits
    assert.equal(encodeClosePayload(1000, short).subarray(2).toString(), short);
  });

  test("§5.5 encodeClosePayload cuts a long reason on a character boundary to at most 125 bytes", () => {
    for (const character of ["a", "é", "€", "😀"]) {
      for (let padding = 0; padding < 4; padding++) {
        const reason = "x".repeat(padding) + character.repeat(200);
        const payload = encodeClosePayload(1001, reason);
        assert.ok(payload.length <= MAX_CONTROL_PAYLOAD, `${payload.length} bytes`);
        assert.equal(payload.readUInt16BE(0), 1001);
        const reasonBytes = payload.subarray(2);
        assert.ok(isUtf8(reasonBytes), "a whole number of characters");
        assert.ok(reason.startsWith(reasonBytes.toString("utf8")));
        // Maximal: one more character would not fit.
        assert.ok(
          reasonBytes.length + Buffer.byteLength(character) > MAX_CONTROL_PAYLOAD - 2,
          `${character}/${padding}: ${reasonBytes.length} bytes could hold more`,
        );
        // And the decoder accepts what it makes.
        const events = feed(serverDecoder(), masked(Opcode.Close, payload));
        assert.deepEqual(simplify(events), [["close", 1001, reasonBytes.toString("utf8")]]);
      }
    }
  });
});

// ── property: chunking does not matter ─────────────────────────────────────

interface GeneratedStream {
  bytes: Buffer;
  expected: Simple[];
}

const textPieces = ["a", "Z", " ", "0", "é", "ß", "€", "中", "文", "😀", "\u{10FFFF}", "\u0000", "\n"];

function randomText(random: () => number, characters: number): string {
  let text = "";
  for (let index = 0; index < characters; index++) text += textPieces[Math.floor(random() * textPieces.length)]!;
  return text;
}

function randomControl(random: () => number, mask: boolean, expected: Simple[]): Buffer {
  const opcode = random() < 0.5 ? Opcode.Ping : Opcode.Pong;
  const data = randomBytesFrom(random, randomInt(random, 0, random() < 0.1 ? MAX_CONTROL_PAYLOAD : 10));
  expected.push([opcode === Opcode.Ping ? "ping" : "pong", data.toString("hex")]);
  return encodeFrame(opcode, data, mask ? { maskKey: randomBytesFrom(random, 4) } : {});
}

function randomStream(random: () => number, mask: boolean, allowHuge: boolean): GeneratedStream {
  const frames: Buffer[] = [];
  const expected: Simple[] = [];
  const frame = (opcode: number, payload: Uint8Array, fin: boolean) =>
    encodeFrame(opcode, payload, mask ? { fin, maskKey: randomBytesFrom(random, 4) } : { fin });
  const messages = randomInt(random, 1, 6);
  for (let message = 0; message < messages; message++) {
    const roll = random();
    if (roll < 0.2) {
      frames.push(randomControl(random, mask, expected));
      continue;
    }
    const isText = roll < 0.6;
    let payload: Buffer;
    let event: Simple;
    if (isText) {
      const size = random() < 0.15 ? randomInt(random, 40, 120) : randomInt(random, 0, 30);
      const text = randomText(random, size);
      payload = Buffer.from(text);
      event = ["text", text];
    } else {
      const size =
        allowHuge && random() < 0.3
          ? randomInt(random, 65536, 70000)
          : random() < 0.15
            ? randomInt(random, 126, 400)
            : randomInt(random, 0, 125);
      payload = randomBytesFrom(random, size);
      event = ["binary", payload.toString("hex")];
    }
    // Cut into 1-4 fragments at arbitrary byte positions (characters may be split).
    const fragmentCount = random() < 0.5 ? 1 : randomInt(random, 2, 4);
    const cuts = Array.from({ length: fragmentCount - 1 }, () => randomInt(random, 0, payload.length)).sort(
      (a, b) => a - b,
    );
    const bounds = [0, ...cuts, payload.length];
    for (let index = 0; index < fragmentCount; index++) {
      const opcode = index === 0 ? (isText ? Opcode.Text : Opcode.Binary) : Opcode.Continuation;
      frames.push(frame(opcode, payload.subarray(bounds[index]!, bounds[index + 1]!), index === fragmentCount - 1));
      if (index < fragmentCount - 1 && random() < 0.4) frames.push(randomControl(random, mask, expected));
    }
    expected.push(event); // after the control frames that came between its fragments
  }
  if (random() < 0.25) {
    const code = [1000, 1001, 3000, 4999][randomInt(random, 0, 3)]!;
    const reason = randomText(random, randomInt(random, 0, 20));
    frames.push(
      encodeFrame(Opcode.Close, encodeClosePayload(code, reason), mask ? { maskKey: randomBytesFrom(random, 4) } : {}),
    );
    expected.push(["close", code, Buffer.from(encodeClosePayload(code, reason).subarray(2)).toString("utf8")]);
    // Whatever follows a close frame is never parsed: even garbage.
    frames.push(randomBytesFrom(random, randomInt(random, 0, 20)));
  }
  return { bytes: Buffer.concat(frames), expected };
}

/** Feeds a fresh copy of `bytes` cut at the given chunk sizes. */
function feedChunked(decoder: FrameDecoder, bytes: Buffer, nextSize: () => number): DecoderEvent[] {
  const copy = Buffer.from(bytes);
  const events: DecoderEvent[] = [];
  let offset = 0;
  while (offset < copy.length) {
    const size = Math.max(1, nextSize());
    events.push(...decoder.receive(copy.subarray(offset, offset + size)));
    offset += size;
  }
  return events;
}

describe("§5 property: the events do not depend on how the bytes are chunked", () => {
  test(
    "§5.4 300 random valid streams (fragments, interleaved control frames, close) decode the same whole, byte by " +
      "byte, and in random chunks",
    () => {
      const random = prng(0x5eed6455);
      for (let round = 0; round < 300; round++) {
        const mask = round % 2 === 0;
        const stream = randomStream(random, mask, round % 50 === 7);
        const options: Partial<DecoderOptions> = { maxPayload: 1 << 20 };
        const make = () => (mask ? serverDecoder(options) : clientDecoder(options));
        const whole = simplify(make().receive(Buffer.from(stream.bytes)));
        assert.deepEqual(whole, stream.expected, `round ${round}: all at once`);
        const bytewise = simplify(feedChunked(make(), stream.bytes, () => 1));
        assert.deepEqual(bytewise, stream.expected, `round ${round}: one byte at a time`);
        for (let attempt = 0; attempt < 2; attempt++) {
          const largest = randomInt(random, 2, Math.max(2, stream.bytes.length));
          const chunked = simplify(feedChunked(make(), stream.bytes, () => randomInt(random, 1, largest)));
          assert.deepEqual(chunked, stream.expected, `round ${round}: random chunks up to ${largest}`);
        }
        // The input buffers were unmasked in place; the original stays intact because copies were fed.
      }
    },
  );

  test("§5.3 the decoder unmasks in place: it owns the buffer it is given", () => {
    const frame = masked(Opcode.Text, "Hello", { key: RFC_MASK });
    const events = serverDecoder().receive(frame);
    assert.deepEqual(simplify(events), [["text", "Hello"]]);
    assert.deepEqual(frame.subarray(6), Buffer.from("Hello"), "the payload bytes of the given buffer were unmasked");
  });
});

// ── helpers: masking, UTF-8, handshake pieces ──────────────────────────────

describe("helpers", () => {
  test("§5.3 maskInPlace with any offset equals a byte-by-byte XOR", () => {
    const random = prng(42);
    for (let round = 0; round < 2000; round++) {
      const key = randomBytesFrom(random, 4);
      const length = randomInt(random, 0, 70);
      const offset = randomInt(random, 0, 11);
      // An unaligned view into a larger buffer, to catch any assumption on alignment.
      const backing = randomBytesFrom(random, length + 5);
      const start = randomInt(random, 0, 5);
      const data = backing.subarray(start, start + length);
      const expected = Buffer.from(data);
      for (let index = 0; index < length; index++) expected[index] = expected[index]! ^ key[(offset + index) % 4]!;
      const before = Buffer.from(backing);
      maskInPlace(data, key, offset);
      assert.deepEqual(Buffer.from(data), expected, `round ${round}`);
      assert.deepEqual(backing.subarray(0, start), before.subarray(0, start), "bytes before the view untouched");
      assert.deepEqual(
        backing.subarray(start + length),
        before.subarray(start + length),
        "bytes after the view untouched",
      );
    }
  });

  test("§5.3 masking twice restores the data, and masking in pieces equals masking whole", () => {
    const random = prng(7);
    const key = randomBytesFrom(random, 4);
    const data = randomBytesFrom(random, 1000);
    const whole = Buffer.from(data);
    maskInPlace(whole, key);
    const pieces = Buffer.from(data);
    for (let offset = 0; offset < pieces.length;) {
      const size = randomInt(random, 1, 13);
      maskInPlace(pieces.subarray(offset, offset + size), key, offset);
      offset += size;
    }
    assert.deepEqual(pieces, whole);
    maskInPlace(whole, key);
    assert.deepEqual(whole, data);
  });

  test("§8.1 Utf8Validator agrees with a reference on random byte strings, whole and in pieces", () => {
    const random = prng(8);
    const interesting = [
      0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef,
      0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf8, 0xff,
    ];
    let validSeen = 0;
    for (let round = 0; round < 5000; round++) {
      const length = randomInt(random, 0, 12);
      const bytes = Buffer.alloc(length);
      for (let index = 0; index < length; index++) {
        bytes[index] =
          random() < 0.7 ? interesting[Math.floor(random() * interesting.length)]! : Math.floor(random() * 256);
      }
      // Reference: a valid string survives a decode/encode round trip unchanged.
      const reference = Buffer.from(bytes.toString("utf8"), "utf8").equals(bytes);
      assert.equal(isUtf8(bytes), reference);
      if (reference) validSeen++;
      const whole = new Utf8Validator();
      assert.equal(whole.push(bytes) && whole.complete, reference, `whole ${bytes.toString("hex")}`);
      const pieces = new Utf8Validator();
      let ok = true;
      for (let offset = 0; offset < length && ok;) {
        const size = randomInt(random, 1, 3);
        ok = pieces.push(bytes.subarray(offset, offset + size));
        offset += size;
      }
      assert.equal(ok && pieces.complete, reference, `in pieces ${bytes.toString("hex")}`);
      // One byte at a time it fails exactly where the prefix stops being viable.
      const single = new Utf8Validator();
      for (let index = 0; index < length; index++) {
        const pushed = single.push(bytes.subarray(index, index + 1));
        assert.equal(pushed, prefixIsViable(bytes.subarray(0, index + 1)), `byte ${index} of ${bytes.toString("hex")}`);
        if (!pushed) break;
      }
    }
    assert.ok(validSeen > 100, "the generator produced valid strings too");
  });

  test("§8.1 Utf8Validator.reset forgets a half character", () => {
    const validator = new Utf8Validator();
    assert.equal(validator.push(hex("e2 82")), true);
    assert.equal(validator.complete, false);
    validator.reset();
    assert.equal(validator.complete, true);
    assert.equal(validator.push(hex("41")), true);
    assert.equal(validator.complete, true);
  });

  test("§1.3/§4.2.2 computeAcceptKey of the RFC's sample key", () => {
    assert.equal(computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });

  test("§4.2.1 parseTokenList splits, trims and lower-cases a comma-separated header", () => {
    assert.deepEqual(parseTokenList(undefined), []);
    assert.deepEqual(parseTokenList(""), []);
    assert.deepEqual(parseTokenList("Upgrade"), ["upgrade"]);
    assert.deepEqual(parseTokenList("keep-alive, Upgrade"), ["keep-alive", "upgrade"]);
    assert.deepEqual(parseTokenList("  keep-alive ,UPGRADE  ,, "), ["keep-alive", "upgrade"]);
    assert.deepEqual(parseTokenList(",,,"), []);
    assert.deepEqual(parseTokenList("websocket\t, h2c"), ["websocket", "h2c"]);
  });

  test("§4.1 keyIsValid: exactly the base64 of 16 bytes, 24 characters", () => {
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZQ=="), true);
    assert.equal(keyIsValid(Buffer.alloc(16, 0xff).toString("base64")), true);
    assert.equal(keyIsValid(undefined), false);
    assert.equal(keyIsValid(""), false);
    assert.equal(keyIsValid(Buffer.alloc(15).toString("base64")), false, "15 bytes");
    assert.equal(keyIsValid(Buffer.alloc(17).toString("base64")), false, "17 bytes");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZQ="), false, "23 characters");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZQ==="), false, "25 characters");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZ!=="), false, "not base64");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZR=="), false, "non-canonical last character");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25j ZQ="), false, "a space");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZQAA"), false, "18 bytes without padding");
    assert.equal(keyIsValid("dGhlIHNhbXBs-SBub25jZQ=="), false, "base64url's alphabet");
    assert.equal(keyIsValid("dGhlIHNhbXBsZSBub25jZQ==\n"), false, "a trailing newline");
  });

  test("§4.1 keyIsValid agrees with decoding and re-encoding, for every last character and random keys", () => {
    const roundTrips = (key: string) => {
      const bytes = Buffer.from(key, "base64");
      return bytes.length === 16 && bytes.toString("base64") === key;
    };
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (const last of alphabet) {
      const key = `dGhlIHNhbXBsZSBub25jZ${last}==`;
      assert.equal(keyIsValid(key), roundTrips(key), key);
    }
    const random = prng(6455);
    for (let i = 0; i < 1000; i++) {
      const key = randomBytesFrom(random, 16).toString("base64");
      assert.equal(keyIsValid(key), true, key);
    }
  });
});
