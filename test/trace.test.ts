// The protocol trace (--trace, --trace=full) and the annotations the page's
// frame inspector receives: exact output for the RFC's own examples. The
// live tests run server.ts in this process and read what it prints.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { constants as zlibConstants, deflateRawSync } from "node:zlib";
import {
  FrameDecoder,
  Opcode,
  describeFrame,
  dumpFrame,
  describeHandshake,
  frameHeaderSize,
  maskBytes,
  writeFrameHeader,
  type FrameInfo,
} from "../server.ts";
import { useServer } from "./support/in-process.ts";
import { RawClient } from "./support/raw-client.ts";

/** The frames a decoder reports for these bytes (hex). */
function framesOf(hex: string, expectMasked: boolean): FrameInfo[] {
  const decoder = new FrameDecoder({ expectMasked, maxPayload: 1 << 20, observeFrames: true });
  return decoder.receive(Buffer.from(hex, "hex")).flatMap((event) => (event.type === "frame" ? [event.frame] : []));
}

describe("trace lines for the RFC 6455 §5.7 examples are exact", () => {
  test('§5.7 a masked "Hello" (81 85 37 fa 21 3d 7f 9f 4d 51 58): one line and the full dump', () => {
    const [frame] = framesOf("818537fa213d7f9f4d5158", true);
    assert.equal(
      describeFrame(frame!, "received"),
      "← text         FIN=1 RSV=000 opcode=0x1 MASK=1 length=5 (7-bit) " +
        'key=37fa213d masked=7f9f4d5158 unmasked=48656c6c6f "Hello"',
    );
    assert.deepEqual(dumpFrame(frame!), [
      "    header    81 85 37 fa 21 3d",
      "    masked    7f 9f 4d 51 58",
      "    unmasked  48 65 6c 6c 6f",
    ]);
  });

  test(
    '§5.7 unmasked "Hello", fragmented "Hel"+"lo", ping, 256-byte binary (16-bit length), a close with its code ' +
      "name",
    () => {
      const lines = [
        "810548656c6c6f",
        "010348656c80026c6f",
        "890548656c6c6f",
        "827e0100" + "00".repeat(256),
        "8803" + "03e861",
      ]
        .flatMap((hex) => framesOf(hex, false))
        .map((frame) => describeFrame(frame, "sent"));
      assert.deepEqual(lines, [
        '→ text         FIN=1 RSV=000 opcode=0x1 MASK=0 length=5 (7-bit) payload=48656c6c6f "Hello"',
        '→ text         FIN=0 RSV=000 opcode=0x1 MASK=0 length=3 (7-bit) payload=48656c "Hel"',
        '→ continuation FIN=1 RSV=000 opcode=0x0 MASK=0 length=2 (7-bit) payload=6c6f "lo"',
        '→ ping         FIN=1 RSV=000 opcode=0x9 MASK=0 length=5 (7-bit) payload=48656c6c6f "Hello"',
        "→ binary       FIN=1 RSV=000 opcode=0x2 MASK=0 length=256 (16-bit) payload=00000000000000000000000000000000…",
        "→ close        FIN=1 RSV=000 opcode=0x8 MASK=0 length=3 (7-bit) " +
          'payload=03e861 code=1000 (normal closure) reason="a"',
      ]);
    },
  );

  test("§5.2 a 64 KiB frame uses the 64-bit length, and the trace cuts the preview, never the data", () => {
    const [frame] = framesOf("827f0000000000010000" + "ab".repeat(65536), false);
    assert.equal(frame!.lengthBits, 64);
    assert.equal(frame!.length, 65536);
    assert.equal(frame!.preview.length, 128);
    const dump = dumpFrame(frame!);
    assert.equal(dump[0], "    header    82 7f 00 00 00 00 00 01 00 00");
    assert.equal(dump.at(-1), "    … 65408 more bytes not shown");
  });

  test("§4.2.2 the handshake worked by hand with the RFC's sample key", () => {
    const lines = describeHandshake(
      {
        method: "GET",
        url: "/chat",
        httpVersion: "1.1",
        rawHeaders: [
          "Host",
          "server.example.com",
          "Upgrade",
          "websocket",
          "Connection",
          "Upgrade",
          "Sec-WebSocket-Key",
          "dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version",
          "13",
        ],
      },
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    assert.deepEqual(lines, [
      "← GET /chat HTTP/1.1",
      "←   Host: server.example.com",
      "←   Upgrade: websocket",
      "←   Connection: Upgrade",
      "←   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "←   Sec-WebSocket-Version: 13",
      "    key                dGhlIHNhbXBsZSBub25jZQ==",
      "    key + GUID         dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
      "    SHA-1              b37a4f2cc0624f1690f64606cf385945b2bec4ea",
      "    base64 of SHA-1    s3pPLMBiTxaQ9kYGzzhZRbK+xOo=   (the Sec-WebSocket-Accept value)",
      "→ HTTP/1.1 101 Switching Protocols",
      "→   Upgrade: websocket",
      "→   Connection: Upgrade",
      "→   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    ]);
  });
});

describe("--trace=full on a live server", () => {
  const live = useServer({ trace: "full", deflate: false });

  test('§4.2 and §5.7 prints the handshake and the masked "Hello" exactly, and its unmasked echo', async () => {
    const server = live();
    const client = await RawClient.open(server.port, {
      path: "/echo",
      headers: { "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==" },
    });
    assert.equal(client.handshake?.status, 101);
    client.write(Buffer.from("818537fa213d7f9f4d5158", "hex"));
    assert.equal((await client.next("text")).text, "Hello");
    const match = await server.waitForOutput(/^#(\d+) → text .*"Hello"$/m);
    const id = match[1];
    const output = server.output();
    for (const line of [
      `#${id}     base64 of SHA-1    s3pPLMBiTxaQ9kYGzzhZRbK+xOo=   (the Sec-WebSocket-Accept value)`,
      `#${id} → HTTP/1.1 101 Switching Protocols`,
      `#${id} →   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`,
      `#${id} ← text         FIN=1 RSV=000 opcode=0x1 MASK=1 length=5 (7-bit) key=37fa213d masked=7f9f4d5158 ` +
        `unmasked=48656c6c6f "Hello"`,
      `#${id}     header    81 85 37 fa 21 3d`,
      `#${id}     masked    7f 9f 4d 51 58`,
      `#${id}     unmasked  48 65 6c 6c 6f`,
      `#${id} → text         FIN=1 RSV=000 opcode=0x1 MASK=0 length=5 (7-bit) payload=48656c6c6f "Hello"`,
      `#${id}     header    81 05`,
    ]) {
      assert.ok(output.split("\n").includes(line), `missing trace line:\n${line}\nin:\n${output}`);
    }
    client.destroy();
  });
});

describe("--trace with permessage-deflate (RFC 7692), as every browser sends", () => {
  const live = useServer({ trace: "frames" });

  /** A client's compressed text frame (RFC 7692 §7.2.1: the deflate stream without its last 4 bytes). */
  function compressedFrame(text: string): Buffer {
    const deflated = deflateRawSync(Buffer.from(text), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    const payload = Buffer.from(deflated.subarray(0, deflated.length - 4));
    const key = Buffer.from([1, 2, 3, 4]);
    const header = Buffer.alloc(frameHeaderSize(payload.length, true));
    writeFrameHeader(header, 0, Opcode.Text, payload.length, true, true, key);
    maskBytes(payload, key);
    return Buffer.concat([header, payload]);
  }

  test('RFC 7692 §6: a compressed "hi" is shown inflated; the short echo says why it went uncompressed', async () => {
    const server = live();
    const client = await RawClient.open(server.port, {
      path: "/echo",
      headers: { "Sec-WebSocket-Extensions": "permessage-deflate; client_no_context_takeover" },
    });
    assert.match(String(client.handshake?.headers["sec-websocket-extensions"]), /permessage-deflate/);
    client.write(compressedFrame("hi"));
    assert.equal((await client.next("text")).text, "hi");
    await server.waitForOutput(/sent uncompressed/);
    const lines = server.output().split("\n");
    const received = lines.findIndex((line) => /← text .*RSV=100/.test(line));
    assert.ok(received >= 0, server.output());
    assert.match(
      lines[received + 1]!,
      /↳ RSV1=1: compressed with permessage-deflate \(RFC 7692 §6\): \d+ bytes of deflate data inflate to 2 \(\d+%\) "hi"$/,
    );
    assert.ok(lines.some((line) => /↳ sent uncompressed: shorter than 1024 bytes \(--deflate-threshold\)/.test(line)));
    client.destroy();
  });

  test("RFC 7692 §7.1.2.1: with server_max_window_bits=8 a long echo goes uncompressed, and the trace says why", async () => {
    const server = live();
    const client = await RawClient.open(server.port, {
      path: "/echo",
      headers: { "Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=8" },
    });
    assert.match(String(client.handshake?.headers["sec-websocket-extensions"]), /server_max_window_bits=8/);
    const long = "a long message, well over the threshold. ".repeat(40);
    client.sendText(long);
    assert.equal((await client.next("text")).text, long);
    // The server's output is shared with the test above, whose short echo went uncompressed for its length.
    const why = await server.waitForOutput(/↳ sent uncompressed: the client asked.*/);
    assert.equal(
      why[0],
      "↳ sent uncompressed: the client asked for server_max_window_bits=8, " +
        "and zlib deflates only with windows of 2^9 bytes or more",
    );
    client.destroy();
  });
});

describe("without --trace", () => {
  // The console is kept too: nothing may be printed there.
  const live = useServer({}, { captureConsole: true });

  test("nothing about frames is printed, and the chat's inspector reports only to the page that asked", async () => {
    const server = live();
    const watcher = await RawClient.open(server.port, { path: "/?name=watcher&inspect=1" });
    const other = await RawClient.open(server.port, { path: "/?name=other" });
    other.sendText(JSON.stringify({ type: "say", id: "t1", text: "hi" }));
    await other.waitFor(
      () => other.events.some((event) => event.type === "text" && event.text.includes('"t1"')),
      5000,
      "the broadcast",
    );
    const traceLines = () =>
      watcher.events.flatMap((event) => {
        if (event.type !== "text") return [];
        const message = JSON.parse(event.text) as { type: string; line?: string };
        return message.type === "trace" && message.line !== undefined ? [message.line] : [];
      });
    // The line shows the payload as a JSON string: the broadcast's id appears as \"t1\".
    await watcher.waitFor(
      () => traceLines().some((line) => line.includes('\\"t1\\"')),
      5000,
      "a trace of the broadcast for the watcher",
    );
    const watcherTexts = watcher.events.flatMap((event) => (event.type === "text" ? [event.text] : []));
    const handshake = watcherTexts
      .map((text) => JSON.parse(text) as { type: string; direction?: string; lines?: string[] })
      .find((message) => message.direction === "handshake");
    assert.ok(
      handshake?.lines?.some((line) => line.includes("(the Sec-WebSocket-Accept value)")),
      "the handshake was sent to the inspector",
    );
    // No trace message describes another trace message.
    for (const line of traceLines()) assert.ok(!line.includes('\\"trace\\"'), line);
    const otherTexts = other.events.flatMap((event) => (event.type === "text" ? [event.text] : []));
    assert.ok(
      otherTexts.every((text) => !text.includes('"type":"trace"')),
      "a page that did not ask gets no traces",
    );
    assert.doesNotMatch(server.output(), /FIN=/);
    watcher.destroy();
    other.destroy();
  });
});
