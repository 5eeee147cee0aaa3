// The frame lab (server.ts section 8): bytes a learner types, walked through
// a fresh FrameDecoder. The RFC 6455 §5.7 examples decode; each broken frame
// is the violation the decoder names, with its close code. The command line
// (`--decode`, `--decode-server`) exits 0, 1 or 2; the page asks the room
// with {"type":"decode"} and nothing else of the room is touched.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { FRAME_LAB_MAX_BYTES, maskBytes, parseHex, walkFrames } from "../server.ts";
import { ChatClient } from "./support/chat-client.ts";
import { useServer } from "./support/in-process.ts";
import { runServerToExit } from "./support/spawn.ts";

const KEY = "37 fa 21 3d";

/** A client frame: `first` byte, the payload masked with the §5.7 key. */
function masked(first: number, payload: Buffer, lengthByte = payload.length): string {
  const key = Buffer.from(KEY.replaceAll(" ", ""), "hex");
  const body = Buffer.from(payload);
  maskBytes(body, key);
  return Buffer.concat([Buffer.from([first, 0x80 | lengthByte]), key, body]).toString("hex");
}

function walk(hex: string, fromServer = false) {
  const bytes = parseHex(hex);
  assert.ok(typeof bytes !== "string", String(bytes));
  return walkFrames(bytes, fromServer);
}

describe("the frame lab walks the RFC 6455 §5.7 examples", () => {
  test('§5.7 a masked "Hello": header bits, key, masked and unmasked payload, the message', () => {
    const { lines, outcome } = walk("81 85 37 fa 21 3d 7f 9f 4d 51 58");
    assert.equal(outcome, "valid");
    const text = lines.join("\n");
    for (const expected of [
      "state header     81 85   1000 0001  1000 0101",
      "FIN=1",
      "opcode=0x1     text",
      "MASK=1",
      "length=5",
      "state maskKey    37 fa 21 3d",
      "masked    7f 9f 4d 51 58",
      "unmasked  48 65 6c 6c 6f",
      '→ message: text "Hello" (5 bytes)',
    ])
      assert.ok(text.includes(expected), `missing ${JSON.stringify(expected)} in\n${text}`);
  });

  test('§5.7 a fragmented unmasked "Hel" + "lo" from a server: two frames, one message', () => {
    const { lines, outcome } = walk("01 03 48 65 6c 80 02 6c 6f", true);
    assert.equal(outcome, "valid");
    assert.ok(lines.some((line) => line.includes("FIN=0") && line.includes("more frames")));
    assert.ok(lines.some((line) => line.includes("opcode=0x0     continuation")));
    assert.ok(lines.includes('  → message: text "Hello" (5 bytes)'));
  });

  test("§5.7 an unmasked ping from a server and a masked pong from a client", () => {
    assert.equal(walk("89 05 48 65 6c 6c 6f", true).outcome, "valid");
    const pong = walk("8a 85 37 fa 21 3d 7f 9f 4d 51 58");
    assert.equal(pong.outcome, "valid");
    assert.ok(pong.lines.some((line) => line.startsWith("  → pong with 5 bytes")));
  });

  test("§5.2 a 256-byte binary message uses the 16-bit length; a 64 KiB one the 64-bit length", () => {
    const two = walk(`82 7e 01 00 ${"00 ".repeat(256)}`, true);
    assert.equal(two.outcome, "valid");
    assert.ok(two.lines.some((line) => line.includes("state length16   01 00   = 256 bytes")));
    const header = walk("82 7f 00 00 00 00 00 01 00 00", true);
    assert.equal(header.outcome, "incomplete", "the header alone: the decoder waits for 65,536 bytes");
    assert.ok(header.lines.some((line) => line.includes("state length64") && line.includes("= 65536 bytes")));
  });
});

describe("the frame lab names each broken rule and its close code (RFC 6455 §7.4.1)", () => {
  const cases: Array<[string, string, string, number]> = [
    ["§5.1 an unmasked client frame", "81 05 48 65 6c 6c 6f", "unmasked_frame", 1002],
    ["§5.2 RSV1 without an extension", masked(0xc1, Buffer.from("Hello")), "reserved_bits", 1002],
    ["§5.5 a fragmented control frame", masked(0x09, Buffer.from("Hello")), "control_fragmented", 1002],
    ["§5.5 a control frame over 125 bytes", `89 fe 00 7e ${KEY} ${"00 ".repeat(126)}`, "control_too_long", 1002],
    [
      "§8.1 invalid UTF-8 split across fragments",
      masked(0x01, Buffer.from([0x48, 0xe2, 0x82])) + masked(0x80, Buffer.from([0x28])),
      "invalid_utf8",
      1007,
    ],
    ["§7.4.1 close code 1005 on the wire", masked(0x88, Buffer.from([0x03, 0xed])), "close_invalid_code", 1002],
    ["§5.2 a reserved opcode", masked(0x83, Buffer.from([])), "reserved_opcode", 1002],
  ];
  for (const [title, hex, violation, code] of cases) {
    test(title, () => {
      const { lines, outcome } = walk(hex);
      assert.equal(outcome, "violation");
      assert.ok(
        lines.some((line) => line.startsWith(`  ✗ ${violation}: `)),
        lines.join("\n"),
      );
      assert.ok(lines.some((line) => line.includes(`close code ${code}`)));
    });
  }

  test("input that is not hex is refused with the reason; input over 64 KiB too", () => {
    assert.match(String(parseHex("81 zz")), /not hex/);
    assert.match(String(parseHex("818")), /odd number/);
    assert.match(String(parseHex("")), /no bytes/);
    assert.match(String(parseHex("00".repeat(FRAME_LAB_MAX_BYTES + 1))), /more than/);
    assert.deepEqual(parseHex("0x81, 0x80:37fa213d"), Buffer.from("818037fa213d", "hex"));
  });
});

describe("node server.ts --decode", () => {
  test("exits 0 for a valid stream, 1 for a violation, 2 for input that is not hex", async () => {
    const [valid, broken, notHex] = await Promise.all([
      runServerToExit(["--decode", "81 85 37 fa 21 3d 7f 9f 4d 51 58"]),
      runServerToExit(["--decode", "81 05 48 65 6c 6c 6f"]),
      runServerToExit(["--decode-server", "hello"]),
    ]);
    assert.equal(valid.code, 0, valid.stderr);
    assert.match(valid.stdout, /→ message: text "Hello"/);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /✗ unmasked_frame/);
    assert.equal(notHex.code, 2);
    assert.match(notHex.stderr, /not hex/);
  });
});

describe('the page\'s frame lab: {"type":"decode"} on the room', () => {
  const live = useServer();

  test("answers with the walk, on the asking connection only; a bad request is bad_message", async () => {
    const asker = await ChatClient.join(live().port, "", { ignorePresence: true });
    const other = await ChatClient.join(live().port, "", { ignorePresence: true });
    await asker.sync();
    await other.sync();
    asker.send({ type: "decode", hex: "81 85 37 fa 21 3d 7f 9f 4d 51 58" });
    const decoded = await asker.expect("decoded");
    assert.equal(decoded.outcome, "valid");
    assert.ok((decoded.lines as string[]).includes('  → message: text "Hello" (5 bytes)'));
    asker.send({ type: "decode", hex: "01 03 48 65 6c 80 02 6c 6f", from: "server" });
    assert.equal((await asker.expect("decoded")).outcome, "valid");
    asker.send({ type: "decode", hex: "not hex" });
    assert.equal((await asker.expect("error")).code, "bad_message");
    assert.deepEqual(await other.sync(), [], "nobody else hears of it");
    asker.destroy();
    other.destroy();
  });
});
