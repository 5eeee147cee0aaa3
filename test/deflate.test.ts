// RFC 7692 permessage-deflate: the offer parser and the negotiation (pure),
// the RFC's own byte examples for the compressor and the inflater, and the
// extension on a live connection (RSV1 rules, decompression bombs, the
// threshold, --no-deflate).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { constants as zlibConstants, createDeflateRaw, deflateRawSync, inflateRawSync } from "node:zlib";
import { serveInProcess, type InProcessServer } from "./support/in-process.ts";
import { MB, RssSampler, megabytes, rssOf } from "./support/memory.ts";
import { RawClient, type RawClientOptions } from "./support/raw-client.ts";
import {
  FrameDecoder,
  MessageInflater,
  Opcode,
  compressMessage,
  defaultDeflateOptions,
  deflateBound,
  encodeFrame,
  negotiateDeflate,
  parseExtensionOffers,
  type DecoderEvent,
  type DeflateAgreement,
  type DeflateOptions,
} from "../server.ts";
import { hex } from "./support/bytes.ts";

const TAIL = hex("00 00 ff ff");

/** What a client does (RFC 7692 §7.2.1): compress with a sync flush, drop the 00 00 ff ff. */
function clientCompress(data: Uint8Array, windowBits = 15): Buffer {
  const compressed = deflateRawSync(data, { windowBits, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  assert.deepEqual(compressed.subarray(-4), TAIL);
  return compressed.subarray(0, compressed.length - 4);
}

/** What a client does with a compressed message from the server (§7.2.2).
 * With a small output chunk, zlib must keep its history in the window, so a
 * reference further back than 2^windowBits is refused ("too far back"). */
function clientInflate(data: Uint8Array, windowBits = 15): Buffer {
  return inflateRawSync(Buffer.concat([data, TAIL]), {
    windowBits,
    chunkSize: 64,
    finishFlush: zlibConstants.Z_SYNC_FLUSH,
  });
}

const noContext: DeflateAgreement = {
  serverNoContextTakeover: true,
  clientNoContextTakeover: true,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};
const withContext: DeflateAgreement = { ...noContext, clientNoContextTakeover: false };

// ── parsing the header (RFC 6455 §9.1) ─────────────────────────────────────

describe("RFC 6455 §9.1 parseExtensionOffers", () => {
  test("§9.1 no header is no offer; a bare name is an offer without parameters", () => {
    assert.deepEqual(parseExtensionOffers(undefined), []);
    assert.deepEqual(parseExtensionOffers(""), []);
    assert.deepEqual(parseExtensionOffers("permessage-deflate"), [{ name: "permessage-deflate", params: [] }]);
  });

  test("§9.1 several offers with parameters, tokens and quoted values, names lower-cased", () => {
    assert.deepEqual(
      parseExtensionOffers(
        'PerMessage-Deflate; Client_Max_Window_Bits; server_max_window_bits=10, x-foo; a="b c" , permessage-deflate',
      ),
      [
        {
          name: "permessage-deflate",
          params: [
            ["client_max_window_bits", true],
            ["server_max_window_bits", "10"],
          ],
        },
        { name: "x-foo", params: [["a", "b c"]] },
        { name: "permessage-deflate", params: [] },
      ],
    );
    assert.deepEqual(parseExtensionOffers('permessage-deflate ;\tserver_max_window_bits = "10"'), [
      { name: "permessage-deflate", params: [["server_max_window_bits", "10"]] },
    ]);
    assert.deepEqual(parseExtensionOffers('a; q="x\\"y"'), [{ name: "a", params: [["q", 'x"y']] }], "a quoted-pair");
    assert.deepEqual(
      parseExtensionOffers(", ,permessage-deflate,,"),
      [{ name: "permessage-deflate", params: [] }],
      "empty list elements",
    );
  });

  for (const malformed of [
    "permessage-deflate;",
    "permessage-deflate; =10",
    "permessage-deflate; server_max_window_bits=",
    'permessage-deflate; server_max_window_bits="10',
    "permessage-deflate server_max_window_bits",
    ";permessage-deflate",
    "permessage-deflate; a=b=c",
    "=",
  ]) {
    test(`§9.1 a malformed header is refused as a whole: ${JSON.stringify(malformed)}`, () => {
      assert.equal(parseExtensionOffers(malformed), undefined);
      assert.equal(negotiateDeflate(malformed, defaultDeflateOptions), undefined);
    });
  }
});

// ── negotiation (RFC 7692 §5, §7.1) ────────────────────────────────────────

/** Reads the agreement back out of a response header. */
function agreementStatedBy(response: string): DeflateAgreement {
  const offers = parseExtensionOffers(response);
  assert.ok(offers && offers.length === 1, `one extension in ${response}`);
  const [offer] = offers;
  assert.equal(offer!.name, "permessage-deflate");
  const params = new Map(offer!.params);
  assert.equal(params.size, offer!.params.length, "no parameter twice");
  for (const name of params.keys()) {
    assert.ok(
      [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
      ].includes(name),
      name,
    );
  }
  const bits = (name: string): number => {
    const value = params.get(name);
    if (value === undefined) return 15;
    assert.equal(typeof value, "string", `${name} has a value in a response`);
    assert.match(value as string, /^(8|9|1[0-5])$/);
    return Number(value);
  };
  for (const name of ["server_no_context_takeover", "client_no_context_takeover"]) {
    if (params.has(name)) assert.equal(params.get(name), true, `${name} has no value`);
  }
  return {
    serverNoContextTakeover: params.has("server_no_context_takeover"),
    clientNoContextTakeover: params.has("client_no_context_takeover"),
    serverMaxWindowBits: bits("server_max_window_bits"),
    clientMaxWindowBits: bits("client_max_window_bits"),
  };
}

type NegotiationCase = [offer: string, response: string | undefined, options?: Partial<DeflateOptions>];

const negotiationCases: NegotiationCase[] = [
  // Accepted.
  ["permessage-deflate", "permessage-deflate; server_no_context_takeover"],
  ["permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover"],
  [
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  ],
  [
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover",
    { clientNoContextTakeover: false },
  ],
  [
    "permessage-deflate; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
  ],
  [
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
  ],
  [
    "permessage-deflate; server_max_window_bits=15",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
  ],
  [
    'permessage-deflate; server_max_window_bits="10"',
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
  ], // §9.1: a quoted token is the token
  [
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
    { serverMaxWindowBits: 10 },
  ],
  [
    "permessage-deflate; server_max_window_bits=12",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
    { serverMaxWindowBits: 10 },
  ],
  [
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
  ],
  [
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
    { clientMaxWindowBits: 9 },
  ],
  [
    "permessage-deflate; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
  ],
  [
    "permessage-deflate; client_max_window_bits=15",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
  ],
  [
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=8",
  ],
  [
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; " +
      "client_max_window_bits=9",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; " +
      "client_max_window_bits=9",
  ],
  [
    "PERMESSAGE-DEFLATE; CLIENT_MAX_WINDOW_BITS",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
  ],
  // The first acceptable offer among several; other extensions ignored.
  [
    "x-foo, permessage-deflate; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
  ],
  [
    "permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
  ],
  [
    "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits, permessage-deflate",
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
  ],
  [
    "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
  ],
  // Declined: nothing acceptable.
  ["x-foo", undefined],
  ["x-foo; permessage-deflate", undefined],
  ["permessage-deflate; foo", undefined],
  ["permessage-deflate; foo=1", undefined],
  ["permessage-deflate; server_no_context_takeover; server_no_context_takeover", undefined],
  ["permessage-deflate; client_max_window_bits; client_max_window_bits=10", undefined],
  ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", undefined],
  ["permessage-deflate; server_max_window_bits=0", undefined],
  ["permessage-deflate; server_max_window_bits=7", undefined],
  ["permessage-deflate; server_max_window_bits=16", undefined],
  ["permessage-deflate; server_max_window_bits=08", undefined],
  ["permessage-deflate; server_max_window_bits=010", undefined],
  ["permessage-deflate; server_max_window_bits=1a", undefined],
  ["permessage-deflate; server_max_window_bits=-9", undefined],
  ['permessage-deflate; server_max_window_bits="08"', undefined],
  ["permessage-deflate; client_max_window_bits=0", undefined],
  ["permessage-deflate; client_max_window_bits=7", undefined],
  ["permessage-deflate; client_max_window_bits=16", undefined],
  ["permessage-deflate; client_max_window_bits=08", undefined],
  ["permessage-deflate; server_max_window_bits", undefined], // its value is required (§7.1.2.1)
  ["permessage-deflate; server_no_context_takeover=1", undefined], // no value allowed (§7.1.1)
  ["permessage-deflate; client_no_context_takeover=true", undefined],
  ["permessage-deflate", undefined, { enabled: false }],
];

describe("RFC 7692 §5 and §7.1 negotiateDeflate", () => {
  for (const [offer, expected, options] of negotiationCases) {
    const label = options ? `${offer} (server options ${JSON.stringify(options)})` : offer;
    test(
      `RFC 7692 §7.1 ${JSON.stringify(label)} → ` + `${expected === undefined ? "declined" : JSON.stringify(expected)}`,
      () => {
        const result = negotiateDeflate(offer, { ...defaultDeflateOptions, ...options });
        if (expected === undefined) {
          assert.equal(result, undefined);
          return;
        }
        assert.ok(result, "accepted");
        assert.equal(result.response, expected);
        // The response states exactly what was agreed.
        assert.deepEqual(agreementStatedBy(result.response), result.agreement);
      },
    );
  }

  test("RFC 7692 §7.1.2 the response never asks for more than the client offered", () => {
    for (let bits = 8; bits <= 15; bits++) {
      for (const serverBits of [9, 12, 15]) {
        for (const clientBits of [8, 12, 15]) {
          const options = {
            ...defaultDeflateOptions,
            serverMaxWindowBits: serverBits,
            clientMaxWindowBits: clientBits,
          };
          const server = negotiateDeflate(`permessage-deflate; server_max_window_bits=${bits}`, options);
          assert.ok(
            server &&
              server.agreement.serverMaxWindowBits <= bits &&
              server.agreement.serverMaxWindowBits <= serverBits,
          );
          const client = negotiateDeflate(`permessage-deflate; client_max_window_bits=${bits}`, options);
          assert.ok(
            client &&
              client.agreement.clientMaxWindowBits <= bits &&
              client.agreement.clientMaxWindowBits <= clientBits,
          );
          // §7.1.2.2: no client_max_window_bits in the response unless offered.
          const plain = negotiateDeflate("permessage-deflate", options);
          assert.ok(plain && !plain.response.includes("client_max_window_bits"));
          assert.equal(plain.agreement.clientMaxWindowBits, 15);
        }
      }
    }
  });
});

// ── the RFC's examples (RFC 7692 §7.2.3) ───────────────────────────────────

describe("RFC 7692 §7.2.3 examples", () => {
  test('RFC 7692 §7.2.3.1 "Hello" compresses to f2 48 cd c9 c9 07 00', () => {
    assert.deepEqual(compressMessage(Buffer.from("Hello"), 15), hex("f2 48 cd c9 c9 07 00"));
    const inflated = new MessageInflater(noContext, 1000).inflate(hex("f2 48 cd c9 c9 07 00"));
    assert.ok(Buffer.isBuffer(inflated));
    assert.equal(inflated.toString(), "Hello");
  });

  test('RFC 7692 §7.2.3.2 with context takeover the second "Hello" is f2 00 11 00 00 and inflates to Hello', () => {
    const inflater = new MessageInflater(withContext, 1000);
    const first = inflater.inflate(hex("f2 48 cd c9 c9 07 00"));
    const second = inflater.inflate(hex("f2 00 11 00 00"));
    assert.ok(Buffer.isBuffer(first) && Buffer.isBuffer(second));
    assert.equal(first.toString(), "Hello");
    assert.equal(second.toString(), "Hello");
    // Without context takeover the second refers to nothing: not valid deflate data.
    const forgetful = new MessageInflater(noContext, 1000);
    forgetful.inflate(hex("f2 48 cd c9 c9 07 00"));
    assert.equal(forgetful.inflate(hex("f2 00 11 00 00")), "inflate_failed");
  });

  test('RFC 7692 §7.2.3.3 a stored ("no compression") block 00 05 00 fa ff 48 65 6c 6c 6f 00 inflates to Hello', () => {
    const inflated = new MessageInflater(noContext, 1000).inflate(hex("00 05 00 fa ff 48 65 6c 6c 6f 00"));
    assert.ok(Buffer.isBuffer(inflated));
    assert.equal(inflated.toString(), "Hello");
  });

  test("RFC 7692 §7.2.3.4 a block with BFINAL set (f3 48 cd c9 c9 07 00 00) inflates to Hello", () => {
    const inflated = new MessageInflater(noContext, 1000).inflate(hex("f3 48 cd c9 c9 07 00 00"));
    assert.ok(Buffer.isBuffer(inflated));
    assert.equal(inflated.toString(), "Hello");
  });

  test("RFC 7692 §7.2.3.5 two deflate blocks in one message inflate to Hello", () => {
    const inflated = new MessageInflater(noContext, 1000).inflate(hex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00"));
    assert.ok(Buffer.isBuffer(inflated));
    assert.equal(inflated.toString(), "Hello");
  });

  test(
    "RFC 7692 §7.2.1 compressMessage output inflates back, for any window 9-15; " + "with 8 it declines to compress",
    () => {
      const data = Buffer.concat([randomBytes(3000), Buffer.alloc(3000, 0x61)]);
      for (let bits = 9; bits <= 15; bits++) {
        const compressed = compressMessage(data, bits);
        assert.ok(compressed);
        assert.deepEqual(clientInflate(compressed, bits), data, `window ${bits}`);
      }
      assert.equal(compressMessage(data, 8), undefined);
    },
  );

  test("RFC 7692 §8.1 MessageInflater stops at maxPayload and reports bad data", () => {
    const inflater = new MessageInflater(noContext, 10_000);
    assert.equal(inflater.inflate(clientCompress(Buffer.alloc(10_001))), "message_too_big");
    const exact = inflater.inflate(clientCompress(Buffer.alloc(10_000, 7)));
    assert.ok(Buffer.isBuffer(exact) && exact.length === 10_000);
    assert.equal(inflater.inflate(hex("ff ff ff ff")), "inflate_failed");
  });

  test(
    "RFC 7692 §7.2.2 with context takeover, " + "messages that refer back to earlier ones inflate (window 2^bits)",
    async () => {
      for (const bits of [9, 12, 15]) {
        const inflater = new MessageInflater({ ...withContext, clientMaxWindowBits: bits }, 1 << 20);
        const messages = Array.from({ length: 6 }, (_, index) =>
          Buffer.from(`message ${index}: ${"the same words again and again ".repeat(index + 3)}`),
        );
        const compressed = await streamCompress(messages, bits);
        // The later messages really do refer back: alone they are not valid.
        assert.equal(new MessageInflater(noContext, 1 << 20).inflate(compressed[3]!), "inflate_failed");
        for (let index = 0; index < messages.length; index++) {
          const result = inflater.inflate(compressed[index]!);
          assert.ok(Buffer.isBuffer(result), `window ${bits}, message ${index}: ${String(result)}`);
          assert.deepEqual(result, messages[index]);
        }
      }
    },
  );
});

/** Compresses messages with one deflate stream (context takeover), a sync
 * flush after each, the 00 00 ff ff removed: what a client that keeps its
 * context sends, message by message. */
async function streamCompress(messages: Buffer[], windowBits: number): Promise<Buffer[]> {
  const deflate = createDeflateRaw({ windowBits });
  const chunks: Buffer[] = [];
  deflate.on("data", (chunk: Buffer) => chunks.push(chunk));
  const outputs: Buffer[] = [];
  for (const message of messages) {
    deflate.write(message);
    await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    const output = Buffer.concat(chunks.splice(0));
    assert.deepEqual(output.subarray(-4), TAIL);
    outputs.push(output.subarray(0, output.length - 4));
  }
  deflate.close();
  return outputs;
}

// ── the decoder with permessage-deflate agreed (RFC 7692 §6) ───────────────

describe("RFC 7692 §6 RSV1 in the decoder", () => {
  const decoder = (maxPayload = 1 << 20) =>
    new FrameDecoder({ expectMasked: true, maxPayload, allowCompression: true });
  const key = hex("0a 0b 0c 0d");
  const frame = (opcode: number, payload: Uint8Array | string, options: { fin?: boolean; rsv1?: boolean } = {}) =>
    encodeFrame(opcode, payload, { ...options, maskKey: key });
  const types = (events: DecoderEvent[]) =>
    events.map((event) =>
      event.type === "violation" ? `violation:${event.violation}:${event.closeCode}` : event.type,
    );

  test(
    "RFC 7692 §6 RSV1 on the first frame marks the whole message compressed " + "(not checked as UTF-8 until inflated)",
    () => {
      const compressed = hex("f2 48 cd c9 c9 07 00");
      const whole = decoder().receive(frame(Opcode.Text, compressed, { rsv1: true }));
      assert.deepEqual(whole, [{ type: "compressed", binary: false, data: compressed }]);
      const fragmented = decoder().receive(
        Buffer.concat([
          frame(Opcode.Text, compressed.subarray(0, 3), { rsv1: true, fin: false }),
          frame(Opcode.Ping, "p"),
          frame(Opcode.Continuation, compressed.subarray(3)),
        ]),
      );
      assert.deepEqual(types(fragmented), ["ping", "compressed"]);
      assert.deepEqual(fragmented[1], { type: "compressed", binary: false, data: compressed });
      const binary = decoder().receive(frame(Opcode.Binary, compressed, { rsv1: true }));
      assert.deepEqual(binary, [{ type: "compressed", binary: true, data: compressed }]);
      // Without RSV1 it is an ordinary message, even with the extension agreed.
      const plain = decoder().receive(frame(Opcode.Text, "plain"));
      assert.deepEqual(
        plain.map((event) => [event.type, event.type === "text" ? event.text : undefined]),
        [["text", "plain"]],
      );
    },
  );

  test("RFC 7692 §6.1 RSV1 on a continuation frame fails with 1002", () => {
    const events = decoder().receive(
      Buffer.concat([
        frame(Opcode.Text, "ab", { rsv1: true, fin: false }),
        frame(Opcode.Continuation, "cd", { rsv1: true }),
      ]),
    );
    assert.deepEqual(types(events), ["violation:compressed_continuation:1002"]);
  });

  test("RFC 7692 §6.1 RSV1 on a control frame fails with 1002", () => {
    for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
      assert.deepEqual(types(decoder().receive(frame(opcode, "", { rsv1: true }))), [
        "violation:compressed_control:1002",
      ]);
    }
  });

  test(
    "RFC 7692 §8.1 a compressed message may be up to deflateBound(maxPayload) on the wire; past that 1009 from " +
      "the header",
    () => {
      const maxPayload = 1000;
      const bound = deflateBound(maxPayload);
      assert.ok(bound > maxPayload);
      const fits = decoder(maxPayload).receive(frame(Opcode.Binary, Buffer.alloc(bound), { rsv1: true }));
      assert.deepEqual(types(fits), ["compressed"]);
      const header = frame(Opcode.Binary, Buffer.alloc(bound + 1), { rsv1: true }).subarray(0, 4);
      assert.deepEqual(types(decoder(maxPayload).receive(Buffer.from(header))), ["violation:message_too_big:1009"]);
      // Uncompressed messages keep the exact limit.
      const plainHeader = frame(Opcode.Binary, Buffer.alloc(maxPayload + 1)).subarray(0, 4);
      assert.deepEqual(types(decoder(maxPayload).receive(Buffer.from(plainHeader))), [
        "violation:message_too_big:1009",
      ]);
    },
  );
});

// ── on a live connection ────────────────────────────────────────────────────

let deflateServer: InProcessServer;
let noDeflateServer: InProcessServer;
const clients: RawClient[] = [];

before(async () => {
  [deflateServer, noDeflateServer] = await Promise.all([
    serveInProcess({ keepaliveIntervalMs: 0 }),
    serveInProcess({ keepaliveIntervalMs: 0, deflate: false }),
  ]);
});

after(async () => {
  for (const client of clients) client.destroy();
  await Promise.all([deflateServer?.stop(), noDeflateServer?.stop()]);
});

async function openDeflate(
  offer: string | null = "permessage-deflate",
  server: InProcessServer = deflateServer,
  options: RawClientOptions = {},
): Promise<RawClient> {
  const headers: Record<string, string> = offer === null ? {} : { "Sec-WebSocket-Extensions": offer };
  const client = await RawClient.open(server.port, {
    allowCompression: true,
    ...options,
    headers: { ...headers, ...options.headers },
  });
  clients.push(client);
  assert.equal(client.handshake?.status, 101, client.handshake?.body);
  return client;
}

async function assertClosedWith(client: RawClient, code: number): Promise<void> {
  const close = await client.next("close", 10_000);
  assert.equal(close.code, code, close.reason);
  await client.waitForClose(5000);
  assert.equal(client.events.at(-1)?.type, "close", "nothing after the close frame");
}

describe("RFC 7692 on a live connection", () => {
  test("RFC 7692 §5 an offer is answered with exactly the agreed parameters", async () => {
    const plain = await openDeflate("permessage-deflate");
    assert.equal(
      plain.handshake!.headers["sec-websocket-extensions"],
      "permessage-deflate; server_no_context_takeover",
    );
    plain.destroy();
    const detailed = await openDeflate(
      "x-foo, permessage-deflate; bad_param, permessage-deflate; client_max_window_bits; server_max_window_bits=10",
    );
    assert.equal(
      detailed.handshake!.headers["sec-websocket-extensions"],
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
    );
    detailed.destroy();
    const declined = await openDeflate("permessage-deflate; server_max_window_bits=16");
    assert.equal(declined.handshake!.headers["sec-websocket-extensions"], undefined);
    declined.destroy();
  });

  test(
    "RFC 7692 §6 a compressed message is inflated and echoed; " + "a short echo goes uncompressed (RSV1 clear)",
    async () => {
      const client = await openDeflate();
      client.sendFrame(Opcode.Text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true });
      assert.equal((await client.next("text")).text, "Hello");
      client.sendFrame(Opcode.Binary, clientCompress(Buffer.from([1, 2, 3])), { rsv1: true });
      assert.deepEqual((await client.next("binary")).data, Buffer.from([1, 2, 3]));
      assert.equal(client.events.filter((event) => event.type === "compressed").length, 0);
      client.destroy();
    },
  );

  test("RFC 7692 §6.1 a fragmented compressed message (RSV1 on the first frame only) is echoed", async () => {
    const client = await openDeflate("permessage-deflate; client_max_window_bits");
    assert.match(client.handshake!.headers["sec-websocket-extensions"] ?? "", /client_max_window_bits=12/);
    const text = Array.from({ length: 200 }, (_, index) => `line ${index} of a long, compressible message ✓`).join(
      "\n",
    );
    const compressed = clientCompress(Buffer.from(text), 12);
    const third = Math.floor(compressed.length / 3);
    client.sendFrame(Opcode.Text, compressed.subarray(0, third), { rsv1: true, fin: false });
    client.sendFrame(Opcode.Ping, "between");
    client.sendFrame(Opcode.Continuation, compressed.subarray(third, 2 * third), { fin: false });
    client.sendFrame(Opcode.Continuation, compressed.subarray(2 * third));
    assert.equal((await client.next("pong")).data.toString(), "between");
    const echo = await client.next("compressed");
    assert.equal(echo.binary, false);
    assert.equal(clientInflate(echo.data).toString("utf8"), text);
    // And the RFC's own split of "Hello": f2 48 cd | c9 c9 07 00.
    client.sendFrame(Opcode.Text, hex("f2 48 cd"), { rsv1: true, fin: false });
    client.sendFrame(Opcode.Continuation, hex("c9 c9 07 00"));
    assert.equal((await client.next("text")).text, "Hello");
    client.destroy();
  });

  test(
    "RFC 7692 §7.2.3.2 over the wire: " + "with client context takeover, f2 00 11 00 00 after Hello is Hello again",
    async () => {
      const client = await openDeflate("permessage-deflate");
      client.sendFrame(Opcode.Text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true });
      client.sendFrame(Opcode.Text, hex("f2 00 11 00 00"), { rsv1: true });
      assert.equal((await client.next("text")).text, "Hello");
      assert.equal((await client.next("text")).text, "Hello");
      client.destroy();
    },
  );

  test(
    "RFC 7692 §7.1.1.2 with client_no_context_takeover agreed, a message referring to the previous one fails with " +
      "1007",
    async () => {
      const client = await openDeflate("permessage-deflate; client_no_context_takeover");
      assert.match(client.handshake!.headers["sec-websocket-extensions"] ?? "", /client_no_context_takeover/);
      client.sendFrame(Opcode.Text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true });
      assert.equal((await client.next("text")).text, "Hello");
      client.sendFrame(Opcode.Text, hex("f2 00 11 00 00"), { rsv1: true });
      await assertClosedWith(client, 1007);
    },
  );

  test("RFC 7692 §6.1 RSV1 on a continuation frame fails with 1002", async () => {
    const client = await openDeflate();
    const compressed = clientCompress(Buffer.from("Hello, Hello, Hello"));
    client.sendFrame(Opcode.Text, compressed.subarray(0, 4), { rsv1: true, fin: false });
    client.sendFrame(Opcode.Continuation, compressed.subarray(4), { rsv1: true });
    await assertClosedWith(client, 1002);
  });

  test("RFC 7692 §6.1 RSV1 on a control frame fails with 1002", async () => {
    const client = await openDeflate();
    client.sendFrame(Opcode.Ping, "", { rsv1: true });
    await assertClosedWith(client, 1002);
    assert.equal(client.events.filter((event) => event.type === "pong").length, 0);
  });

  test("RFC 6455 §5.2 RSV1 without permessage-deflate negotiated fails with 1002", async () => {
    const client = await openDeflate(null);
    assert.equal(client.handshake!.headers["sec-websocket-extensions"], undefined);
    client.sendFrame(Opcode.Text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true });
    await assertClosedWith(client, 1002);
  });

  test("RFC 7692 --no-deflate: an offer gets no Sec-WebSocket-Extensions, and RSV1 then fails with 1002", async () => {
    const client = await openDeflate("permessage-deflate; client_max_window_bits", noDeflateServer);
    assert.equal(client.handshake!.headers["sec-websocket-extensions"], undefined);
    client.sendText("x".repeat(5000));
    assert.equal((await client.next("text")).text.length, 5000, "long messages come back uncompressed");
    assert.equal(client.events.filter((event) => event.type === "compressed").length, 0);
    client.sendFrame(Opcode.Text, hex("f2 48 cd c9 c9 07 00"), { rsv1: true });
    await assertClosedWith(client, 1002);
  });

  test("RFC 7692 §8 data that is not deflate fails with 1007", async () => {
    const client = await openDeflate();
    client.sendFrame(Opcode.Binary, hex("ff ff ff ff 00 01 02"), { rsv1: true });
    await assertClosedWith(client, 1007);
  });

  test("RFC 6455 §8.1 a compressed text message that inflates to invalid UTF-8 fails with 1007", async () => {
    const client = await openDeflate();
    client.sendFrame(Opcode.Text, clientCompress(Buffer.from([0x48, 0x69, 0xed, 0xa0, 0x80])), { rsv1: true });
    await assertClosedWith(client, 1007);
  });

  test(
    "RFC 7692 §8.1 a decompression bomb (1 MB of deflate, 1 GiB of zeros) fails with 1009 and the server's memory " +
      "stays flat",
    async (t) => {
      // One MiB of zeros deflates to about 1 KB ending in a sync flush; 1024 copies
      // in a row are one valid stream of 1 GiB.
      const piece = deflateRawSync(Buffer.alloc(1 << 20), { level: 9, finishFlush: zlibConstants.Z_SYNC_FLUSH });
      const bomb = Buffer.concat(Array.from({ length: 1024 }, () => piece));
      const message = bomb.subarray(0, bomb.length - 4);
      // Small enough to pass the frame-size check: only inflating can find it too big.
      assert.ok(message.length < deflateBound(1 << 20), `${message.length} bytes compressed`);
      // The construction is sound: four pieces inflate to 4 MiB of zeros.
      assert.equal(
        clientInflate(Buffer.concat([piece, piece, piece, piece]).subarray(0, 4 * piece.length - 4)).length,
        4 << 20,
      );

      // The server runs in this process: its RSS is this process's, whose own share (the 1 MB
      // bomb) is made before the baseline. Inflating it whole would add 1 GiB; the bound is 100 MB.
      const client = await openDeflate();
      client.sendText("warm up");
      await client.next("text");
      const before = rssOf(process.pid);
      const sampler = new RssSampler(process.pid, 10, { required: true });
      client.sendFrame(Opcode.Binary, message, { rsv1: true });
      await assertClosedWith(client, 1009);
      const growth = sampler.stop() - before;
      t.diagnostic(`RSS: ${megabytes(before)} before, peak ${megabytes(growth)} above it`);
      assert.ok(growth < 100 * MB, `RSS grew by ${megabytes(growth)} at its peak`);
      // The server is fine.
      const other = await openDeflate();
      other.sendText("still there?");
      assert.equal((await other.next("text")).text, "still there?");
      other.destroy();
    },
  );

  test(
    "RFC 7692 §8.1 a small compressed message just over --max-payload " + "(1 MiB) inflated fails with 1009",
    async () => {
      const client = await openDeflate();
      client.sendFrame(Opcode.Binary, clientCompress(Buffer.alloc((1 << 20) + 1)), { rsv1: true });
      await assertClosedWith(client, 1009);
      const exact = await openDeflate();
      exact.sendFrame(Opcode.Binary, clientCompress(Buffer.alloc(1 << 20, 3)), { rsv1: true });
      const echo = await exact.next("compressed", 10_000);
      assert.equal(clientInflate(echo.data).length, 1 << 20);
      exact.destroy();
    },
  );

  test(
    "RFC 7692 threshold: echoes under 1024 bytes go uncompressed (RSV1 clear), " + "from 1024 on compressed (RSV1 set)",
    async () => {
      const client = await openDeflate();
      const short = "s".repeat(1023);
      client.sendText(short);
      assert.equal((await client.next("text")).text, short);
      const long = "l".repeat(1024);
      client.sendText(long);
      const compressed = await client.next("compressed");
      assert.equal(compressed.binary, false);
      assert.ok(compressed.data.length < 100, `compressed to ${compressed.data.length} bytes`);
      assert.equal(clientInflate(compressed.data).toString(), long);
      const binary = Buffer.alloc(50_000, 0x42);
      client.sendFrame(Opcode.Binary, binary);
      const binaryEcho = await client.next("compressed");
      assert.equal(binaryEcho.binary, true);
      assert.deepEqual(clientInflate(binaryEcho.data), binary);
      assert.equal(client.events.filter((event) => event.type === "text").length, 1);
      client.destroy();
    },
  );

  test(
    "RFC 7692 §7.1.1.1 every compressed message from the server stands alone " + "(server_no_context_takeover)",
    async () => {
      const client = await openDeflate();
      const text = "the very same message, twice over ".repeat(100);
      client.sendText(text);
      client.sendText(text);
      const first = await client.next("compressed");
      const second = await client.next("compressed");
      // Each inflates with a fresh inflater: no reference into the previous message.
      assert.equal(clientInflate(first.data).toString(), text);
      assert.equal(clientInflate(second.data).toString(), text);
      assert.deepEqual(first.data, second.data);
      client.destroy();
    },
  );

  test("RFC 7692 §7.1.2.1 server_max_window_bits=10: the server's messages inflate with a 1 KiB window", async () => {
    const client = await openDeflate("permessage-deflate; server_max_window_bits=10");
    assert.match(client.handshake!.headers["sec-websocket-extensions"] ?? "", /server_max_window_bits=10/);
    // Repeats 3000 bytes apart: a 32 KiB window would refer back that far, a 1 KiB one cannot.
    const block = randomBytes(3000);
    const data = Buffer.concat([block, block, block]);
    assert.throws(
      () => clientInflate(clientCompress(data, 15), 10),
      /too far back/,
      "the check has teeth: a 15-bit stream needs a bigger window",
    );
    client.sendFrame(Opcode.Binary, data);
    const echo = await client.next("compressed");
    assert.deepEqual(clientInflate(echo.data, 10), data);
    client.destroy();
  });
});
