// server.ts — a WebSocket chat room, with the WebSocket protocol (RFC 6455)
// written by hand on top of node:http. One file, only node: built-ins.
//
// Read it top to bottom; it follows the RFC:
//
//   1. Constants ............ the magic numbers of RFC 6455, and the server's options
//   2. Opening handshake .... §4: how an HTTP request becomes a WebSocket
//   3. Framing .............. §5: the bytes of a frame, decoded by a pure state machine
//   4. permessage-deflate ... RFC 7692: compression riding on the RSV1 bit
//   5. Session .............. §5.5 and §7: control frames and closing, bytes and time in, actions out
//   6. Connection ........... one socket driven by its session: backpressure, slow consumers, observers
//   7. Making it fast ....... each fast path beside the plain algorithm it replaces
//   8. Trace ................ every frame and the handshake, annotated (--trace, the inspector, the frame lab)
//   9. Echo endpoint ........ /echo, the playground and the conformance target
//  10. Chat room ............ / (and /text), identities, names, history, resume; it never touches bytes
//  11. Redis ................ many processes, one room: a RESP2 client, the room's messages and people
//  12. Static page .......... GET / and GET /client.js, and nothing else on disk
//  13. Server ............... routing, limits, /healthz, /metrics, --trust-proxy, TLS, shutdown
//  14. Command line ......... start-up, signals, --decode
//
// It runs unchanged with `node --experimental-strip-types server.ts` (Node 22),
// `node server.ts` (Node 24+), `deno run --allow-net --allow-read --allow-env
// server.ts`, `bun server.ts`, and `tsx server.ts`: the TypeScript here is only
// type annotations, which every one of them can erase.

import { Buffer, isUtf8 } from "node:buffer";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import {
  connect as connectTcp,
  createServer as createTcpServer,
  isIP,
  type Server as TcpServer,
  type Socket,
} from "node:net";
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { clearTimeout, setTimeout } from "node:timers";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { constants as zlibConstants, deflateRawSync, inflateRawSync } from "node:zlib";

// ════════════════════════════════════════════════════════════════════════════
// 1. Constants (RFC 6455 §1.3, §5.2, §7.4, §11)
//
// Every number the protocol fixes, named once. The reader learns here that a
// WebSocket is described by very few magic values.
// ════════════════════════════════════════════════════════════════════════════

/** §1.3: appended to the client's key before hashing. It proves the server
 * read the key as a WebSocket server, not as some other HTTP service. */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** §5.2: the 4-bit opcode of a frame. 0x3–0x7 and 0xB–0xF are reserved. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

export const opcodeNames: Record<number, string> = {
  0x0: "continuation",
  0x1: "text",
  0x2: "binary",
  0x8: "close",
  0x9: "ping",
  0xa: "pong",
};

/** §7.4.1: the status codes a close frame may carry. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Never on the wire: "the close frame had no code". */
  NoStatusReceived: 1005,
  /** Never on the wire: "the connection dropped without a close frame". */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  /** §11.7's registry: a gateway got a bad answer upstream. */
  BadGateway: 1014,
  /** Never on the wire: "the TLS handshake failed". */
  TlsHandshake: 1015,
} as const;

export const closeCodeNames: Record<number, string> = {
  1000: "normal closure",
  1001: "going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status received",
  1006: "abnormal closure",
  1007: "invalid frame payload data",
  1008: "policy violation",
  1009: "message too big",
  1010: "mandatory extension",
  1011: "internal error",
  1012: "service restart",
  1013: "try again later",
  1014: "bad gateway",
  1015: "TLS handshake",
};

/** §5.5: control frames carry at most 125 bytes, so they fit a 7-bit length. */
export const MAX_CONTROL_PAYLOAD = 125;

// ── The server's options, each declared once ────────────────────────────────
// One row per command-line option: its flag, the config key it sets, its
// type, default and bounds, the environment variable that may give it, and
// its help line. The defaults, the config type, the parser, `--help` and the
// README's table of options are all made from these rows.

type OptionType = "integer" | "text" | "list" | "switch" | "trace";

export interface OptionRow {
  /** The key in ServerConfig. */
  key: string;
  flag: string;
  type: OptionType;
  /** What the value is called in --help: N, MS, BYTES, FILE... */
  value?: string;
  default: number | string | boolean | readonly string[] | undefined;
  min?: number;
  max?: number;
  /** An environment variable read when the flag is not given. */
  env?: string;
  help: string;
}

// The rows stay as written, a table, not one property a line.
// oxfmt-ignore
export const optionTable = [
  { key: "port", flag: "port", type: "integer", value: "N", default: 5500, min: 0, max: 65535, env: "PORT",
    help: "port to listen on; 0 picks a free one" },
  { key: "host", flag: "host", type: "text", value: "ADDRESS", default: "127.0.0.1",
    help: "address to listen on; 0.0.0.0 lets your network in" },
  { key: "allowedOrigins", flag: "allow-origin", type: "list", value: "ORIGIN", default: [] as readonly string[],
    help: "also accept pages from ORIGIN (repeatable, or comma-separated; * for any)" },
  // 1 MiB, as python-websockets; larger messages are closed with 1009.
  { key: "maxPayload", flag: "max-payload", type: "integer", value: "BYTES", default: 1024 * 1024, min: 1, max: 2 ** 31,
    help: "largest message accepted, after decompression" },
  { key: "keepaliveIntervalMs", flag: "keepalive-interval", type: "integer", value: "MS", default: 30_000, min: 0,
    help: "ping every client this often; 0 turns it off" },
  { key: "keepaliveTimeoutMs", flag: "keepalive-timeout", type: "integer", value: "MS", default: 10_000, min: 1,
    help: "drop a client that has sent nothing this long after a ping" },
  { key: "closingTimeoutMs", flag: "closing-timeout", type: "integer", value: "MS", default: 5_000, min: 1,
    help: "wait this long for the answer to a close frame" },
  { key: "handshakeTimeoutMs", flag: "handshake-timeout", type: "integer", value: "MS", default: 10_000, min: 1,
    help: "answer 408 to a client whose request has not arrived by then (checked every second); with TLS, also the TLS handshake's limit" },
  { key: "maxConnections", flag: "max-connections", type: "integer", value: "N", default: 10_000, min: 1,
    help: "WebSocket connections in all; more get 503" },
  { key: "maxConnectionsPerIp", flag: "max-connections-per-ip", type: "integer", value: "N", default: 256, min: 1,
    help: "WebSocket connections from one address; more get 503" },
  { key: "maxBufferedBytes", flag: "max-buffered", type: "integer", value: "BYTES", default: 4 * 1024 * 1024, min: 1024,
    help: "close (1008) a client whose unsent data passes this" },
  { key: "messageRate", flag: "message-rate", type: "integer", value: "N", default: 20, min: 1,
    help: "chat messages a second per client" },
  { key: "messageBurst", flag: "message-burst", type: "integer", value: "N", default: 40, min: 1,
    help: "chat messages a client may send at once" },
  { key: "historyFile", flag: "history", type: "text", value: "FILE", default: undefined,
    help: "append every message to FILE (JSON lines) before it is sent; kept messages reload at start-up" },
  { key: "historySize", flag: "history-size", type: "integer", value: "N", default: 1000, min: 1,
    help: "messages kept for replay" },
  { key: "redis", flag: "redis", type: "text", value: "URL", default: undefined, env: "REDIS_URL",
    help: "keep the room in Redis (redis://[user:password@]host:port[/db]): every server given it serves one room" },
  { key: "redisTimeoutMs", flag: "redis-timeout", type: "integer", value: "MS", default: 2000, min: 50,
    help: "a Redis reply later than this means Redis is unreachable" },
  { key: "trustProxy", flag: "trust-proxy", type: "list", value: "ADDRESS", default: [] as readonly string[],
    help: "take the client's address from a PROXY v1 line or X-Forwarded-For, from these peers only" },
  { key: "tlsCert", flag: "tls-cert", type: "text", value: "FILE", default: undefined,
    help: "serve https:// and wss:// with this PEM certificate (and --tls-key)" },
  { key: "tlsKey", flag: "tls-key", type: "text", value: "FILE", default: undefined,
    help: "the PEM private key of --tls-cert" },
  // Phoenix Presence and Centrifugo wait 30-60 s before saying "left", so a
  // reload or a network blip is not announced.
  { key: "nameGraceMs", flag: "name-grace", type: "integer", value: "MS", default: 60_000, min: 0,
    help: "a name stays with its session this long after its last connection closed" },
  { key: "deflate", flag: "no-deflate", type: "switch", default: true,
    help: "do not negotiate permessage-deflate" },
  // Deflating a short message costs more CPU than the bytes it saves.
  { key: "deflateThreshold", flag: "deflate-threshold", type: "integer", value: "BYTES", default: 1024, min: 0,
    help: "send shorter messages uncompressed" },
  // Level 3 compressed a megabyte of chat-like text in 15 ms where level 6
  // took 50 ms, for 16% more bytes (the README's Performance section).
  { key: "deflateLevel", flag: "deflate-level", type: "integer", value: "N", default: 3, min: 1, max: 9,
    help: "zlib level for what the server sends, 1 fastest to 9 smallest" },
  { key: "deflateClientWindowBits", flag: "deflate-client-window", type: "integer", value: "N", default: 12,
    min: 8, max: 15,
    help: "window bits asked of clients that let the server choose" },
  { key: "deflateServerWindowBits", flag: "deflate-server-window", type: "integer", value: "N", default: 15,
    min: 9, max: 15,
    help: "window bits the server compresses with" },
  { key: "deflateClientContext", flag: "deflate-client-context", type: "switch", default: false,
    help: "let clients keep their compression context even when they offer not to" },
  { key: "trace", flag: "trace", type: "trace", default: "off",
    help: "print the handshake and every frame, annotated; --trace=full adds hex dumps" },
  { key: "verbose", flag: "verbose", type: "switch", default: false,
    help: "log every connection" },
  { key: "decode", flag: "decode", type: "text", value: "HEX", default: undefined,
    help: "print the decoder's walk through these bytes (a client's frames) and exit: the frame lab" },
  { key: "decodeServer", flag: "decode-server", type: "text", value: "HEX", default: undefined,
    help: "the same for a server's (unmasked) frames" },
  { key: "help", flag: "help", type: "switch", default: false,
    help: "show this text" },
] as const satisfies readonly OptionRow[];

export type TraceLevel = "off" | "frames" | "full";

type ValueOf<Row> = Row extends { type: "integer" }
  ? number
  : Row extends { type: "switch" }
    ? boolean
    : Row extends { type: "list" }
      ? string[]
      : Row extends { type: "trace" }
        ? TraceLevel
        : Row extends { default: string }
          ? string
          : string | undefined;

/** What the command line can set: one field per row of optionTable. */
export type CommandLineOptions = { [Row in (typeof optionTable)[number] as Row["key"]]: ValueOf<Row> };

/** The defaults a fresh server runs with, from the table. */
export const defaults = Object.fromEntries(
  optionTable.map((row) => [row.key, Array.isArray(row.default) ? [...row.default] : row.default]),
) as CommandLineOptions;

/** A message may be split into this many frames at most: empty fragments
 * cost memory and time too (ws CVE-2026-48779). Not an option. */
export const MAX_FRAGMENTS = 131_072;

// ════════════════════════════════════════════════════════════════════════════
// 2. The opening handshake (RFC 6455 §4.2)
//
// A WebSocket starts life as an ordinary HTTP/1.1 GET with `Upgrade: websocket`.
// The server checks a handful of headers, proves it understood the request by
// hashing the client's random key with the GUID above, and answers
// `101 Switching Protocols`. From then on the TCP connection carries frames.
// Everything here is pure: it looks at headers and returns a verdict; the
// server section below does the writing.
// ════════════════════════════════════════════════════════════════════════════

/** §4.2.2 step 5.4: base64(SHA-1(key + GUID)). */
export function computeAcceptKey(key: string): string {
  return createHash("sha1")
    .update(key + WEBSOCKET_GUID)
    .digest("base64");
}

/** A header as one string, or undefined when absent. Node joins repeated
 * headers with ", " for most names; we never assume a header is there
 * (ws CVE-2024-37890 crashed on exactly that). */
export function headerValue(headers: IncomingMessage["headers"], name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(", ") : value;
}

/** Splits a comma-separated header (`Connection: keep-alive, Upgrade`) into
 * lower-cased tokens. Plain string splitting, on purpose: a backtracking
 * regular expression here was a denial-of-service hole in ws (CVE-2021-32640). */
export function parseTokenList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const tokens: string[] = [];
  for (const part of value.split(",")) {
    const token = part.trim().toLowerCase();
    if (token !== "") tokens.push(token);
  }
  return tokens;
}

/** §4.1: the key is 16 random bytes in base64. 16 bytes are 128 bits: 21
 * characters of 6 bits carry 126 of them, the 22nd carries the last 2 followed
 * by four zero bits (so it is A, Q, g or w: 0, 16, 32 or 48), and "==" pads
 * to 24. Anchored and without alternatives, the pattern cannot backtrack. */
const BASE64_OF_16_BYTES = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

export function keyIsValid(key: string | undefined): key is string {
  return key !== undefined && BASE64_OF_16_BYTES.test(key);
}

/** The host part (`name:port`) of an origin or Host header, lower-cased. */
function hostOf(value: string): string | undefined {
  return urlOf(value)?.host.toLowerCase();
}

/** The name alone, without the port: "[::1]:5500" → "[::1]", "Example.COM" → "example.com". */
function hostnameOf(value: string): string | undefined {
  if (value.includes("://")) return urlOf(value)?.hostname.toLowerCase();
  const end = value.startsWith("[") ? value.indexOf("]") + 1 : value.indexOf(":");
  const hostname = (end <= 0 ? value : value.slice(0, end)).trim().toLowerCase();
  return hostname === "" ? undefined : hostname;
}

function urlOf(value: string): URL | undefined {
  try {
    return new URL(value.includes("://") ? value : `http://${value}`);
  } catch {
    return undefined;
  }
}

const loopbackHostnames = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** §10.2: browsers let any page open a WebSocket to any server, and send the
 * user's cookies with it. The `Origin` header is the server's only way to
 * refuse pages it does not trust (cross-site WebSocket hijacking). Clients
 * that are not browsers send no Origin, and are allowed. */
export function originIsAllowed(
  origin: string | undefined,
  host: string | undefined,
  allowedOrigins: readonly string[],
): boolean {
  if (origin === undefined || origin === "null") return true; // no browser, or a page opened from disk
  if (allowedOrigins.includes("*") || allowedOrigins.includes(origin)) return true;
  let originUrl: URL;
  try {
    originUrl = new URL(origin);
  } catch {
    return false;
  }
  if (originUrl.protocol !== "http:" && originUrl.protocol !== "https:") return false;
  if (loopbackHostnames.has(originUrl.hostname.toLowerCase())) return true;
  return host !== undefined && originUrl.host.toLowerCase() === hostOf(host);
}

/** §4.2.2 step 5.5: pick the first protocol in the client's list (its order
 * is its preference) that this endpoint speaks; none means no header. */
export function chooseSubprotocol(offered: string | undefined, supported: readonly string[]): string | undefined {
  for (const token of (offered ?? "").split(",")) {
    const protocol = token.trim();
    if (supported.includes(protocol)) return protocol;
  }
  return undefined;
}

export interface HandshakeRequest {
  method?: string | undefined;
  httpVersion: string;
  headers: IncomingMessage["headers"];
}

export interface HandshakePolicy {
  allowedOrigins: readonly string[];
  subprotocols: readonly string[];
  /** The server listens on a loopback address only: see hostIsAllowed. */
  loopbackOnly?: boolean;
}

/** DNS rebinding: a page on evil.example can make its own name resolve to
 * 127.0.0.1 and then reach a server on this machine as "the same origin"
 * (Origin and Host both say evil.example). A server that only listens on
 * loopback can only legitimately be reached as localhost, 127.0.0.1 or [::1],
 * or under the name of an origin it was told to allow. */
export function hostIsAllowed(host: string | undefined, allowedOrigins: readonly string[]): boolean {
  const hostname = host === undefined ? undefined : hostnameOf(host);
  if (hostname === undefined) return false;
  if (loopbackHostnames.has(hostname) || allowedOrigins.includes("*")) return true;
  return allowedOrigins.some((origin) => hostnameOf(origin) === hostname);
}

export type HandshakeVerdict =
  | { accepted: true; acceptKey: string; protocol: string | undefined }
  | { accepted: false; status: number; reason: string; headers?: Record<string, string> };

/** §4.2.1: everything the server must check before it may answer 101. Each
 * failure names its status and a one-line reason the client can read. */
export function checkUpgradeRequest(request: HandshakeRequest, policy: HandshakePolicy): HandshakeVerdict {
  const header = (name: string) => headerValue(request.headers, name);
  const refuse = (status: number, reason: string, headers?: Record<string, string>): HandshakeVerdict => ({
    accepted: false,
    status,
    reason,
    headers,
  });

  if (request.method !== "GET") return refuse(405, "A WebSocket handshake must be a GET request.", { Allow: "GET" });
  const [major = 0, minor = 0] = request.httpVersion.split(".").map(Number);
  if (major < 1 || (major === 1 && minor < 1)) return refuse(400, "A WebSocket handshake needs HTTP/1.1 or later.");
  if (!header("host")) return refuse(400, "The Host header is missing.");
  if (!parseTokenList(header("upgrade")).includes("websocket")) {
    return refuse(400, 'The Upgrade header must contain the token "websocket".');
  }
  if (!parseTokenList(header("connection")).includes("upgrade")) {
    return refuse(400, 'The Connection header must contain the token "Upgrade".');
  }
  if (header("sec-websocket-version")?.trim() !== "13") {
    return refuse(426, "Only WebSocket version 13 (RFC 6455) is supported.", { "Sec-WebSocket-Version": "13" });
  }
  const key = header("sec-websocket-key")?.trim();
  if (!keyIsValid(key)) return refuse(400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes.");
  if (policy.loopbackOnly && !hostIsAllowed(header("host"), policy.allowedOrigins)) {
    return refuse(
      403,
      `Host ${header("host")} is not a name of this machine; this server listens on loopback only (DNS rebinding?).`,
    );
  }
  if (!originIsAllowed(header("origin"), header("host"), policy.allowedOrigins)) {
    return refuse(403, `Origin ${header("origin")} is not allowed; start the server with --allow-origin to allow it.`);
  }
  return {
    accepted: true,
    acceptKey: computeAcceptKey(key),
    protocol: chooseSubprotocol(header("sec-websocket-protocol"), policy.subprotocols),
  };
}

/** The bytes of a refused handshake: a status line, a reason, and no keep-alive. */
export function handshakeRefusal(status: number, reason: string, headers: Record<string, string> = {}): string {
  const statusText: Record<number, string> = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
  };
  const body = reason + "\n";
  const lines = [
    `HTTP/1.1 ${status} ${statusText[status] ?? "Error"}`,
    "Connection: close",
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return lines.join("\r\n") + "\r\n\r\n" + body;
}

// ════════════════════════════════════════════════════════════════════════════
// 3. Framing (RFC 6455 §5)
//
// After the handshake every message travels in frames:
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-------+-+-------------+-------------------------------+
//   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//   | |1|2|3|       |K|             |                               |
//   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//   |     Extended payload length continued, if payload len == 127  |
//   + - - - - - - - - - - - - - - - +-------------------------------+
//   |                               |Masking-key, if MASK set to 1  |
//   +-------------------------------+-------------------------------+
//   | Masking-key (continued)       |          Payload Data         |
//   +-------------------------------- - - - - - - - - - - - - - - - +
//
// The decoder below is sans-I/O: bytes go in, in chunks of any size (one byte
// at a time works), and events come out. It has no socket and no timer, so it
// can be tested with nothing but arrays of bytes. It is a loop over named
// states, one per part of the header; each protocol violation it can find is
// listed once, with its close code, in `violations`.
// ════════════════════════════════════════════════════════════════════════════

export interface DecoderOptions {
  /** true on a server: §5.1 says every frame from a client is masked. */
  expectMasked: boolean;
  maxPayload: number;
  maxFragments?: number;
  /** true once permessage-deflate was agreed: RSV1 then marks a compressed message. */
  allowCompression?: boolean;
  /** Also report a `frame` event for every frame, for the protocol trace. */
  observeFrames?: boolean;
}

/** The parser's states, in the order a frame's bytes arrive. */
type DecoderState =
  | "header" // the first two bytes: FIN, RSV1-3, opcode, MASK, 7-bit length
  | "length16" // two more bytes of length
  | "length64" // eight more bytes of length
  | "maskKey" // four bytes of masking key
  | "payload" // the payload, possibly in many pieces
  | "closed" // a close frame was read: nothing more is parsed (§5.5.1)
  | "failed"; // a violation was found: nothing more is parsed (§7.1.7)

/** How many payload bytes the trace shows; the data itself is never cut. */
const PREVIEW_BYTES = 128;

/** An empty list shared by every decoder that has nothing to keep (never pushed to). */
const NO_PIECES: Buffer[] = [];

/**
 * The frame decoder: a pure, incremental state machine.
 *
 *   const decoder = new FrameDecoder({ expectMasked: true, maxPayload: 1 << 20 });
 *   for (const event of decoder.receive(bytes)) ...
 *
 * It takes ownership of the buffers it is given: payloads are unmasked in
 * place, and the events may share memory with them.
 */
export class FrameDecoder {
  private state: DecoderState = "header";
  // The options, as fields: no object of its own per connection.
  private readonly expectMasked: boolean;
  private readonly maxPayload: number;
  private readonly maxFragments: number;
  private readonly allowCompression: boolean;
  private observeFrames: boolean;

  // Bytes received but not yet parsed: a queue of chunks, read from the front.
  // `start` is how far the first chunk has been read. Moving a position costs
  // nothing, where cutting a new view of the chunk for every field read (its
  // two header bytes, its length, its key, what is left) allocates an object.
  // Measured on an echo of 64 × 1 KiB binary messages (server.ts compiled,
  // --cpu-prof): those views were about 8 % of the server's busy time, and
  // without them (and one in maskSimd) the echo went from 174k to 195k
  // messages a second (medians of four runs, alternating).
  private chunks: Buffer[] = [];
  private start = 0;
  private buffered = 0;

  // The frame being read.
  private fin = false;
  private rsv1 = false;
  private opcode = 0;
  private masked = false;
  private lengthBits: 7 | 16 | 64 = 7;
  private frameLength = 0;
  private frameReceived = 0;
  /** This frame's masking key; made on the first masked frame, reused for the next. */
  private maskKey: Uint8Array | undefined;
  // The first bytes of the frame, only while frames are observed.
  private previewOnWire: Buffer[] = NO_PIECES;
  private preview: Buffer[] = NO_PIECES;

  // The message being assembled from one or more data frames (§5.4).
  private messageOpcode = 0; // 0: no message open
  private messageCompressed = false;
  private fragments = 0;
  private readonly payload = new PayloadCollector();
  private readonly utf8 = new Utf8Validator();

  constructor(options: DecoderOptions) {
    this.expectMasked = options.expectMasked;
    this.maxPayload = options.maxPayload;
    this.maxFragments = options.maxFragments ?? MAX_FRAGMENTS;
    this.allowCompression = options.allowCompression ?? false;
    this.observeFrames = options.observeFrames ?? false;
  }

  /** Turns the `frame` events on or off. */
  observe(on: boolean): void {
    this.observeFrames = on;
  }

  /** Feeds bytes in; returns the events they complete, in order. Never throws
   * on bad input: a violation is an event, and the decoder stops there. */
  receive(chunk: Buffer): DecoderEvent[] {
    const events: DecoderEvent[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      switch (this.state) {
        case "header":
          if (this.buffered < 2) return events;
          this.readHeader(events);
          break;
        case "length16":
          if (this.buffered < 2) return events;
          this.frameLength = this.takeUint(2);
          this.afterLength(events);
          break;
        case "length64": {
          if (this.buffered < 8) return events;
          const high = this.takeUint(4);
          const low = this.takeUint(4);
          if (high >= 0x80000000) {
            this.fail(events, "length_too_large");
            break;
          }
          // Above 2^53 a JavaScript number is no longer exact; far above any limit anyway.
          this.frameLength = high > 0x1fffff ? Number.MAX_SAFE_INTEGER : high * 2 ** 32 + low;
          this.afterLength(events);
          break;
        }
        case "maskKey": {
          if (this.buffered < 4) return events;
          const key = (this.maskKey ??= new Uint8Array(4));
          for (let index = 0; index < 4; index++) key[index] = this.takeByte();
          this.state = "payload";
          break;
        }
        case "payload":
          if (!this.readPayload(events)) return events;
          break;
        case "closed":
        case "failed":
          this.chunks = [];
          this.start = 0;
          this.buffered = 0;
          return events;
      }
    }
  }

  /** Moves past `count` bytes of the first chunk (at most what is left of it). */
  private advance(count: number): void {
    this.start += count;
    this.buffered -= count;
    if (this.start === this.chunks[0]!.length) {
      this.chunks.shift();
      this.start = 0;
    }
  }

  /** Takes the next byte; the caller has checked that it has arrived. */
  private takeByte(): number {
    const byte = this.chunks[0]![this.start]!;
    this.advance(1);
    return byte;
  }

  /** Takes the next `count` bytes (at most 4) as an unsigned big-endian number:
   * network byte order (§5.2). */
  private takeUint(count: number): number {
    let value = 0;
    for (let index = 0; index < count; index++) value = value * 256 + this.takeByte();
    return value;
  }

  /** Takes the next `count` bytes, which have arrived, as a view of the first
   * chunk when they lie in it, else as a copy. */
  private takeBytes(count: number): Buffer {
    const first = this.chunks[0]!;
    if (this.start + count <= first.length) {
      const bytes = this.start === 0 && count === first.length ? first : first.subarray(this.start, this.start + count);
      this.advance(count);
      return bytes;
    }
    const bytes = Buffer.allocUnsafe(count); // every byte is written below
    for (let index = 0; index < count; index++) bytes[index] = this.takeByte();
    return bytes;
  }

  /** Byte 0: FIN, RSV1-3, opcode. Byte 1: MASK and the 7-bit length. */
  private readHeader(events: DecoderEvent[]): void {
    const byte0 = this.takeByte();
    const byte1 = this.takeByte();
    this.fin = (byte0 & 0x80) !== 0;
    this.rsv1 = (byte0 & 0x40) !== 0;
    const rsv2 = (byte0 & 0x20) !== 0;
    const rsv3 = (byte0 & 0x10) !== 0;
    this.opcode = byte0 & 0x0f;
    this.masked = (byte1 & 0x80) !== 0;
    const length7 = byte1 & 0x7f;
    const isControl = (this.opcode & 0x08) !== 0;

    if (rsv2 || rsv3 || (this.rsv1 && !this.allowCompression)) return this.fail(events, "reserved_bits");
    if (opcodeNames[this.opcode] === undefined) return this.fail(events, "reserved_opcode");
    if (isControl) {
      if (!this.fin) return this.fail(events, "control_fragmented");
      if (length7 > MAX_CONTROL_PAYLOAD) return this.fail(events, "control_too_long");
      if (this.rsv1) return this.fail(events, "compressed_control");
    } else if (this.opcode === Opcode.Continuation) {
      if (this.messageOpcode === 0) return this.fail(events, "unexpected_continuation");
      if (this.rsv1) return this.fail(events, "compressed_continuation");
    } else if (this.messageOpcode !== 0) {
      return this.fail(events, "expected_continuation");
    }
    if (this.masked !== this.expectMasked) {
      return this.fail(events, this.expectMasked ? "unmasked_frame" : "masked_frame");
    }

    if (length7 === 126) {
      this.lengthBits = 16;
      this.state = "length16";
    } else if (length7 === 127) {
      this.lengthBits = 64;
      this.state = "length64";
    } else {
      this.lengthBits = 7;
      this.frameLength = length7;
      this.afterLength(events);
    }
  }

  /** Limits are checked from the header, before a byte of payload is stored. */
  private afterLength(events: DecoderEvent[]): void {
    const isData = (this.opcode & 0x08) === 0;
    if (isData) {
      if (this.opcode !== Opcode.Continuation) {
        this.messageOpcode = this.opcode;
        this.messageCompressed = this.rsv1;
      }
      // A compressed message is limited again, exactly, after inflating; here
      // it may be as large as deflate can make the largest allowed message.
      const limit = this.messageCompressed ? deflateBound(this.maxPayload) : this.maxPayload;
      if (this.payload.length + this.frameLength > limit) return this.fail(events, "message_too_big");
      if (this.fragments + 1 > this.maxFragments) return this.fail(events, "too_many_fragments");
      this.fragments++;
    }
    this.frameReceived = 0;
    this.state = this.masked ? "maskKey" : "payload";
  }

  /** Reads as much of the payload as has arrived. Returns false when it must
   * wait for more bytes. Data frames are handled piece by piece, so UTF-8
   * errors are found as early as possible; control frames are small and are
   * handled whole. */
  private readPayload(events: DecoderEvent[]): boolean {
    const remaining = this.frameLength - this.frameReceived;
    const isControl = (this.opcode & 0x08) !== 0;
    if (isControl) {
      if (this.buffered < remaining) return false;
      const data = remaining === 0 ? Buffer.alloc(0) : this.takeBytes(remaining);
      this.notePreview(data, 0);
      if (this.masked) maskInPlace(data, this.maskKey!);
      this.finishFrame(events, data);
      return true;
    }
    if (remaining > 0 && this.buffered === 0) return false;
    // Take what is there, up to the end of this frame, without copying.
    while (this.frameReceived < this.frameLength && this.buffered > 0) {
      const take = Math.min(this.chunks[0]!.length - this.start, this.frameLength - this.frameReceived);
      const piece = this.takeBytes(take);
      this.notePreview(piece, this.frameReceived);
      if (this.masked) maskInPlace(piece, this.maskKey!, this.frameReceived);
      this.frameReceived += take;
      if (this.messageOpcode === Opcode.Text && !this.messageCompressed && !pushUtf8(this.utf8, piece)) {
        this.fail(events, "invalid_utf8");
        return true;
      }
      this.payload.add(piece);
    }
    if (this.frameReceived < this.frameLength) return false;
    this.finishFrame(events, undefined);
    return true;
  }

  private notePreview(piece: Buffer, offset: number): void {
    if (!this.observeFrames || offset >= PREVIEW_BYTES) return;
    const part = piece.subarray(0, PREVIEW_BYTES - offset);
    if (this.preview === NO_PIECES) {
      this.previewOnWire = [];
      this.preview = [];
    }
    this.previewOnWire.push(Buffer.from(part));
    this.preview.push(part); // unmasked in place right after this
  }

  private finishFrame(events: DecoderEvent[], controlPayload: Buffer | undefined): void {
    this.state = "header";
    if (this.observeFrames) {
      events.push({
        type: "frame",
        frame: {
          fin: this.fin,
          rsv1: this.rsv1,
          rsv2: false,
          rsv3: false,
          opcode: this.opcode,
          masked: this.masked,
          lengthBits: this.lengthBits,
          length: this.frameLength,
          maskKey: this.masked ? Buffer.from(this.maskKey!) : undefined,
          previewOnWire: Buffer.concat(this.previewOnWire),
          preview: Buffer.from(Buffer.concat(this.preview)),
        },
      });
      this.previewOnWire = NO_PIECES;
      this.preview = NO_PIECES;
    }
    if (controlPayload !== undefined) return this.finishControlFrame(events, controlPayload);
    if (!this.fin) return;
    // The last frame of a message: hand the whole message over.
    const length = this.payload.length;
    const pieces = this.payload.takePieces();
    const opcode = this.messageOpcode;
    const compressed = this.messageCompressed;
    this.messageOpcode = 0;
    this.messageCompressed = false;
    this.fragments = 0;
    if (compressed) {
      events.push({ type: "compressed", binary: opcode === Opcode.Binary, data: joinPieces(pieces, length) });
    } else if (opcode === Opcode.Text) {
      const complete = this.utf8.complete;
      this.utf8.reset();
      if (!complete) return this.fail(events, "invalid_utf8"); // ended halfway through a character
      events.push(new TextMessage(pieces, length));
    } else {
      events.push(new BinaryMessage(pieces, length));
    }
  }

  private finishControlFrame(events: DecoderEvent[], data: Buffer): void {
    if (this.opcode === Opcode.Ping) events.push({ type: "ping", data });
    else if (this.opcode === Opcode.Pong) events.push({ type: "pong", data });
    else {
      const close = parseClosePayload(data);
      if ("violation" in close) return this.fail(events, close.violation);
      events.push({ type: "close", code: close.code, reason: close.reason });
      this.state = "closed";
    }
  }

  private fail(events: DecoderEvent[], violation: Violation): void {
    const { closeCode, message } = violations[violation];
    events.push({ type: "violation", violation, closeCode, reason: message });
    this.state = "failed";
  }
}

/** Every reason the server fails a connection (§7.1.7: a close frame, then
 * nothing more is sent or awaited), with the close code the RFC asks for and
 * a reason that names the rule: the framing rules the decoder checks, then
 * the limits the session, the connection and the chat room enforce. The one
 * place that maps a violation to a close code. */
export const violations = {
  reserved_bits: { closeCode: 1002, message: "RSV2 and RSV3 must be 0, and RSV1 only with permessage-deflate (§5.2)" },
  reserved_opcode: { closeCode: 1002, message: "opcodes 0x3-0x7 and 0xB-0xF are reserved (§5.2)" },
  unmasked_frame: { closeCode: 1002, message: "frames from a client must be masked (§5.1)" },
  masked_frame: { closeCode: 1002, message: "frames from a server must not be masked (§5.1)" },
  control_too_long: { closeCode: 1002, message: "control frames carry at most 125 bytes (§5.5)" },
  control_fragmented: { closeCode: 1002, message: "control frames must not be fragmented (§5.5)" },
  compressed_control: { closeCode: 1002, message: "RSV1 must not be set on a control frame (RFC 7692 §6.1)" },
  compressed_continuation: {
    closeCode: 1002,
    message: "RSV1 is set on the first frame of a message only (RFC 7692 §6.1)",
  },
  unexpected_continuation: {
    closeCode: 1002,
    message: "a continuation frame arrived with no message to continue (§5.4)",
  },
  expected_continuation: { closeCode: 1002, message: "a new message started before the previous one finished (§5.4)" },
  length_too_large: { closeCode: 1002, message: "the most significant bit of a 64-bit length must be 0 (§5.2)" },
  close_one_byte: { closeCode: 1002, message: "a close frame payload is empty or at least 2 bytes (§5.5.1)" },
  close_invalid_code: { closeCode: 1002, message: "that close code may not be sent (§7.4)" },
  close_invalid_reason: { closeCode: 1007, message: "a close reason must be valid UTF-8 (§5.5.1)" },
  invalid_utf8: { closeCode: 1007, message: "a text message must be valid UTF-8 (§8.1)" },
  message_too_big: { closeCode: 1009, message: "the message is larger than this server accepts" },
  too_many_fragments: { closeCode: 1009, message: "the message has more fragments than this server accepts" },
  inflate_failed: { closeCode: 1007, message: "the compressed data is not valid deflate data (RFC 7692)" },
  control_flood: { closeCode: 1008, message: "too many pings and pongs" },
  too_slow: { closeCode: 1008, message: "too slow: the server's send buffer for this connection is full" },
  message_flood: { closeCode: 1008, message: "too many messages, for too long" },
  unsupported_data: { closeCode: 1003, message: "this room speaks JSON in text frames" },
  // Not the peer's fault: the endpoint's handler failed on its message.
  internal_error: { closeCode: 1011, message: "internal error" },
} as const satisfies Record<string, { closeCode: number; message: string }>;
export type Violation = keyof typeof violations;

export type DecoderEvent =
  | TextMessage
  | BinaryMessage
  /** RFC 7692: a message sent with RSV1; it must be inflated before it means anything. */
  | { type: "compressed"; binary: boolean; data: Buffer }
  | { type: "ping"; data: Buffer }
  | { type: "pong"; data: Buffer }
  | { type: "close"; code: number; reason: string }
  | { type: "violation"; violation: Violation; closeCode: number; reason: string }
  | { type: "frame"; frame: FrameInfo };

/** What a frame looked like on the wire; reported only to observers (--trace). */
export interface FrameInfo {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  /** Which length encoding was used: the 7-bit field alone, or 16 or 64 extra bits. */
  lengthBits: 7 | 16 | 64;
  length: number;
  maskKey: Buffer | undefined;
  /** The first bytes of the payload as they were on the wire, and unmasked. */
  previewOnWire: Buffer;
  preview: Buffer;
}

/** Checks UTF-8 as the bytes arrive, so that an invalid byte is found the
 * moment it comes in, even in the middle of a fragment (§8.1 says to fail
 * the connection "when an endpoint is to interpret a byte stream as UTF-8
 * but finds that the byte stream is not, in fact, a valid UTF-8 stream").
 * The ranges are those of RFC 3629 §4: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
export class Utf8Validator {
  /** Continuation bytes still expected for the current character. */
  private needed = 0;
  /** Bounds for the next continuation byte; only the first one is ever narrower than 80..BF. */
  private lower = 0x80;
  private upper = 0xbf;

  /** Returns false as soon as a byte cannot continue valid UTF-8: every
   * byte through `step`. The decoder uses pushUtf8 (section 7), which asks
   * the runtime's validator first and gives the same answers. */
  push(bytes: Uint8Array): boolean {
    for (let index = 0; index < bytes.length; index++) if (!this.step(bytes[index]!)) return false;
    return true;
  }

  /** One byte through the rules of RFC 3629 §4. */
  step(byte: number): boolean {
    if (this.needed === 0) {
      if (byte < 0x80) return true;
      if (byte >= 0xc2 && byte <= 0xdf) this.needed = 1;
      else if (byte >= 0xe0 && byte <= 0xef) {
        this.needed = 2;
        if (byte === 0xe0) this.lower = 0xa0; // no overlong 3-byte forms
        if (byte === 0xed) this.upper = 0x9f; // no UTF-16 surrogates
      } else if (byte >= 0xf0 && byte <= 0xf4) {
        this.needed = 3;
        if (byte === 0xf0) this.lower = 0x90; // no overlong 4-byte forms
        if (byte === 0xf4) this.upper = 0x8f; // nothing above U+10FFFF
      } else return false;
      return true;
    }
    if (byte < this.lower || byte > this.upper) return false;
    this.lower = 0x80;
    this.upper = 0xbf;
    this.needed--;
    return true;
  }

  /** true when the bytes so far end on a character boundary. */
  get complete(): boolean {
    return this.needed === 0;
  }

  reset(): void {
    this.needed = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }
}

/** §7.4: which close codes a peer may put on the wire. 1005 and 1006 are for
 * reporting only, 1004 and 1015-2999 are reserved, 3000-4999 belong to
 * libraries and applications. */
export function closeCodeIsValid(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/** §5.3: XORs `data` with the 4-byte key, in place, as if `data` started
 * `offset` bytes into the payload. Masking and unmasking are the same
 * operation. This is the plain algorithm; the decoder and encoder use
 * maskInPlace (section 7), which gives the same bytes a word or sixteen bytes at a time. */
export function maskBytes(data: Uint8Array, key: Uint8Array, offset = 0): void {
  for (let index = 0; index < data.length; index++) data[index] ^= key[(offset + index) & 3]!;
}

// ── The encoder (§5.2) ──────────────────────────────────────────────────────
// Server frames are never masked (§5.1), so encoding is only the header.

/** The length of a header for a payload of `length` bytes: the length field
 * grows from 7 to 16 to 64 bits as the payload grows. */
export function frameHeaderSize(length: number, masked = false): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes a frame header into `target` at `at` and returns its size. */
export function writeFrameHeader(
  target: Buffer,
  at: number,
  opcode: number,
  length: number,
  fin = true,
  rsv1 = false,
  maskKey?: Uint8Array,
): number {
  target[at] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const maskBit = maskKey ? 0x80 : 0;
  let size: number;
  if (length < 126) {
    target[at + 1] = maskBit | length;
    size = 2;
  } else if (length < 65536) {
    target[at + 1] = maskBit | 126;
    target.writeUInt16BE(length, at + 2);
    size = 4;
  } else {
    target[at + 1] = maskBit | 127;
    target.writeUInt32BE(Math.floor(length / 2 ** 32), at + 2);
    target.writeUInt32BE(length >>> 0, at + 6);
    size = 10;
  }
  if (maskKey) {
    target.set(maskKey.subarray(0, 4), at + size);
    size += 4;
  }
  return size;
}

export interface EncodeOptions {
  fin?: boolean;
  rsv1?: boolean;
  /** Only clients mask; tests and the benchmark play the client. */
  maskKey?: Uint8Array;
}

/** One frame in one buffer: header then payload (masked if a key is given). */
export function encodeFrame(opcode: number, payload: Uint8Array | string, options: EncodeOptions = {}): Buffer {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  const headerSize = frameHeaderSize(length, options.maskKey !== undefined);
  const frame = Buffer.allocUnsafe(headerSize + length); // header and payload fill it exactly
  writeFrameHeader(frame, 0, opcode, length, options.fin ?? true, options.rsv1 ?? false, options.maskKey);
  if (typeof payload === "string") frame.write(payload, headerSize, "utf8");
  else frame.set(payload, headerSize);
  if (options.maskKey) maskInPlace(frame.subarray(headerSize), options.maskKey);
  return frame;
}

// ════════════════════════════════════════════════════════════════════════════
// 4. permessage-deflate (RFC 7692)
//
// Extensions ride on the bits RFC 6455 kept in reserve. permessage-deflate
// sets RSV1 on the first frame of a message to say "this payload is raw
// DEFLATE data". The sender compresses the whole message, ends it with an
// empty sync-flush block, and strips that block's last four bytes
// (00 00 FF FF), since every message ends with them; the receiver puts them
// back before inflating (§7.2.1, §7.2.2).
//
// Four parameters, agreed in the handshake, change the compressor:
//   server_no_context_takeover  the server starts every message with an empty window
//   client_no_context_takeover  the same for the client
//   server_max_window_bits N    the server refers at most 2^N bytes back
//   client_max_window_bits [N]  the same for the client (without N: "I can limit mine")
//
// "Context takeover" means the LZ77 window of earlier messages may be used to
// compress the next one: better compression, but 2^N bytes of memory per
// connection and direction, for as long as the connection lives.
//
// This server's choices: it always sends server_no_context_takeover (RFC 7692
// §7.1.1.1 allows this even when the client did not ask), because a chat room
// broadcasts: without context takeover a message is compressed once and the
// same bytes go to every member; with it, every member would need its own
// compression of every message, and 256 KiB of deflate state. Clients may keep
// their context; we keep the last 2^N bytes they sent us (at most 32 KiB,
// and less when they let us choose client_max_window_bits). All of zlib's work
// is synchronous and bounded, so messages stay in order with no queue.
// ════════════════════════════════════════════════════════════════════════════

export interface DeflateOptions {
  enabled: boolean;
  /** The window the server asks clients to use when they let it choose (8-15). */
  clientMaxWindowBits: number;
  /** The largest window the server compresses with (9-15; see compressMessage). */
  serverMaxWindowBits: number;
  /** Accept a client's offer of client_no_context_takeover (saves the 2^N bytes we keep for it). */
  clientNoContextTakeover: boolean;
  /** Outgoing messages shorter than this are sent uncompressed. */
  threshold: number;
  /** zlib level for outgoing messages, 1 (fastest) to 9 (smallest). */
  level: number;
}

/** The negotiation's view of the deflate options on the command line. */
export function deflateOptionsOf(options: Omit<CommandLineOptions, "help">): DeflateOptions {
  return {
    enabled: options.deflate,
    clientMaxWindowBits: options.deflateClientWindowBits,
    serverMaxWindowBits: options.deflateServerWindowBits,
    clientNoContextTakeover: !options.deflateClientContext,
    threshold: options.deflateThreshold,
    level: options.deflateLevel,
  };
}

export const defaultDeflateOptions: DeflateOptions = deflateOptionsOf(defaults);

/** What both sides agreed for one connection. */
export interface DeflateAgreement {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
}

export interface ExtensionOffer {
  name: string;
  params: Array<[name: string, value: string | true]>;
}

/** Parses `Sec-WebSocket-Extensions` (§9.1): a comma-separated list of
 * extensions, each with `;`-separated parameters whose values may be tokens
 * or quoted strings. A character-by-character scanner, no regular expression.
 * Returns undefined when the header is not well formed. */
export function parseExtensionOffers(header: string | undefined): ExtensionOffer[] | undefined {
  const offers: ExtensionOffer[] = [];
  if (header === undefined) return offers;
  let index = 0;
  const skipSpaces = () => {
    while (index < header.length && (header[index] === " " || header[index] === "\t")) index++;
  };
  const readToken = (): string => {
    const start = index;
    while (index < header.length && !' \t,;="'.includes(header[index]!)) index++;
    return header.slice(start, index);
  };
  const readQuoted = (): string | undefined => {
    index++; // the opening quote
    let value = "";
    while (index < header.length && header[index] !== '"') {
      if (header[index] === "\\") index++;
      value += header[index] ?? "";
      index++;
    }
    if (header[index] !== '"') return undefined;
    index++;
    return value;
  };
  for (;;) {
    skipSpaces();
    if (index >= header.length) break;
    if (header[index] === ",") {
      index++; // empty list elements are allowed (§7 of RFC 7230)
      continue;
    }
    const name = readToken();
    if (name === "") return undefined;
    const offer: ExtensionOffer = { name: name.toLowerCase(), params: [] };
    skipSpaces();
    while (header[index] === ";") {
      index++;
      skipSpaces();
      const paramName = readToken();
      if (paramName === "") return undefined;
      skipSpaces();
      let value: string | true = true;
      if (header[index] === "=") {
        index++;
        skipSpaces();
        const parsed = header[index] === '"' ? readQuoted() : readToken();
        if (parsed === undefined || parsed === "") return undefined;
        value = parsed;
        skipSpaces();
      }
      offer.params.push([paramName.toLowerCase(), value]);
    }
    offers.push(offer);
    skipSpaces();
    if (index < header.length) {
      if (header[index] !== ",") return undefined;
      index++;
    }
  }
  return offers;
}

/** RFC 7692 §7.1.2: a window size is a decimal 8-15 without leading zeros. */
function parseWindowBits(value: string): number | undefined {
  if (value.length === 0 || value.length > 2 || value[0] === "0") return undefined;
  for (const character of value) if (character < "0" || character > "9") return undefined;
  const bits = Number(value);
  return bits >= 8 && bits <= 15 ? bits : undefined;
}

/** RFC 7692 §5 and §7.1: accept the first permessage-deflate offer that is
 * acceptable; skip one with an unknown, repeated or invalid parameter.
 * Returns the agreement and the exact response header, or undefined. */
export function negotiateDeflate(
  header: string | undefined,
  options: DeflateOptions,
): { agreement: DeflateAgreement; response: string } | undefined {
  if (!options.enabled) return undefined;
  const offers = parseExtensionOffers(header);
  if (offers === undefined) return undefined;
  offerLoop: for (const offer of offers) {
    if (offer.name !== "permessage-deflate") continue; // other extensions are ignored (§9.1)
    const seen = new Set<string>();
    let clientOffersNoContext = false;
    let serverBitsLimit: number | undefined;
    let clientBits: number | true | undefined;
    for (const [name, value] of offer.params) {
      if (seen.has(name)) continue offerLoop;
      seen.add(name);
      // We always answer server_no_context_takeover (see above), asked or not.
      if (name === "server_no_context_takeover" && value === true) continue;
      else if (name === "client_no_context_takeover" && value === true) clientOffersNoContext = true;
      else if (name === "server_max_window_bits" && value !== true) {
        serverBitsLimit = parseWindowBits(value);
        if (serverBitsLimit === undefined) continue offerLoop;
      } else if (name === "client_max_window_bits") {
        if (value === true) clientBits = true;
        else {
          clientBits = parseWindowBits(value);
          if (clientBits === undefined) continue offerLoop;
        }
      } else continue offerLoop; // unknown parameter, or a value where none belongs
    }
    const agreement: DeflateAgreement = {
      serverNoContextTakeover: true,
      clientNoContextTakeover: clientOffersNoContext && options.clientNoContextTakeover,
      serverMaxWindowBits: Math.min(serverBitsLimit ?? 15, options.serverMaxWindowBits),
      // Without the parameter the client may use up to 15 bits; with it and no
      // value, we choose; with a value, it will use at most that many.
      clientMaxWindowBits:
        clientBits === undefined
          ? 15
          : clientBits === true
            ? options.clientMaxWindowBits
            : Math.min(clientBits, options.clientMaxWindowBits),
    };
    const response = ["permessage-deflate", "server_no_context_takeover"];
    if (agreement.clientNoContextTakeover) response.push("client_no_context_takeover");
    if (serverBitsLimit !== undefined || agreement.serverMaxWindowBits < 15) {
      response.push(`server_max_window_bits=${agreement.serverMaxWindowBits}`);
    }
    if (clientBits !== undefined) response.push(`client_max_window_bits=${agreement.clientMaxWindowBits}`);
    return { agreement, response: response.join("; ") };
  }
  return undefined;
}

/** The four bytes every sync-flushed deflate stream ends with (§7.2.1). */
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Compresses one message with an empty window (server_no_context_takeover).
 * Returns undefined when it should go uncompressed: zlib cannot make a raw
 * stream with a 256-byte window (it silently uses 512), so with
 * server_max_window_bits=8 we never compress, which the RFC allows. */
export function compressMessage(
  payload: Uint8Array,
  windowBits: number,
  level: number = defaults.deflateLevel,
): Buffer | undefined {
  if (windowBits < 9) return undefined;
  const compressed = deflateRawSync(payload, { windowBits, level, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return compressed.subarray(0, compressed.length - DEFLATE_TAIL.length);
}

/** The receiving half of permessage-deflate for one connection. With client
 * context takeover it keeps the last 2^N bytes the client sent: its LZ77
 * window, which the next message may refer back into. */
export class MessageInflater {
  private window: Buffer = Buffer.alloc(0);
  private readonly windowSize: number;
  private readonly maxPayload: number;

  constructor(agreement: DeflateAgreement, maxPayload: number) {
    this.windowSize = agreement.clientNoContextTakeover ? 0 : 2 ** agreement.clientMaxWindowBits;
    this.maxPayload = maxPayload;
  }

  /** Inflates one message, refusing to produce more than maxPayload bytes:
   * a few kilobytes of zeros can inflate to gigabytes. */
  inflate(data: Buffer): Buffer | Violation {
    // To let the new data refer back into the window, the window goes first,
    // as an uncompressed ("stored", RFC 1951 §3.2.4) deflate block, and is cut
    // off the output again. The block header: BFINAL=0 and BTYPE=00 in one
    // byte, then LEN and its ones' complement NLEN, little-endian.
    const window = this.window;
    const parts: Buffer[] = [];
    if (window.length > 0) {
      const storedHeader = Buffer.alloc(5);
      storedHeader.writeUInt16LE(window.length, 1);
      storedHeader.writeUInt16LE(~window.length & 0xffff, 3);
      parts.push(storedHeader, window);
    }
    parts.push(data, DEFLATE_TAIL);
    let output: Buffer;
    try {
      output = inflateRawSync(Buffer.concat(parts), {
        finishFlush: zlibConstants.Z_SYNC_FLUSH,
        maxOutputLength: window.length + this.maxPayload,
      });
    } catch (error) {
      return (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? "message_too_big" : "inflate_failed";
    }
    const message = output.subarray(window.length);
    if (message.length > this.maxPayload) return "message_too_big";
    if (this.windowSize > 0) {
      // Keep a copy of the tail: `output` may be large and should not be retained.
      const keep = Math.min(this.windowSize, output.length);
      this.window = Buffer.from(output.subarray(output.length - keep));
    }
    return message;
  }
}

/** How many bytes a compressed message may take for `length` bytes of
 * content. Incompressible data grows by the headers of its stored blocks;
 * how much depends on the sender's memory settings (python-websockets uses
 * small blocks), so this is zlib's conservative deflateBound, about +14%. */
export function deflateBound(length: number): number {
  return length + ((length + 7) >> 3) + ((length + 63) >> 6) + 5 + 64;
}

// ════════════════════════════════════════════════════════════════════════════
// 5. The session: control frames and closing (RFC 6455 §5.5, §7)
//
// Everything a WebSocket endpoint must do besides carrying messages, with
// no socket and no timer: it answers pings (§5.5.2), pings a quiet peer to
// learn whether it is still there, runs the closing handshake (§7.1.2-7.1.5),
// and fails the connection on a violation (§7.1.7). Bytes and the time go in;
// out come messages for the application, bytes to write, "end your output"
// and "destroy the socket now". The connection below only does what it is
// told. The states, each named once:
//
//   open ──we send close──────▶ closing-local ──their close──▶ (end output) ─┐
//   open ──they send close──▶ (we answer) closing-remote ──▶ (end output) ───┤
//   open ──violation: close frame and end output at once──▶ closing-local ───┤
//   any ──the TCP connection is gone──▶ closed ◀─────────────────────────────┘
//   closing-* ──no end of the TCP connection by the closing deadline──▶ abort
//
// The server ends the TCP connection first once both close frames have
// passed (§7.1.1), so TIME_WAIT stays on the server, not on the client.
// ════════════════════════════════════════════════════════════════════════════

/** §5.5.1: empty, or a code (2 bytes) then a UTF-8 reason. */
export function parseClosePayload(data: Buffer): { code: number; reason: string } | { violation: Violation } {
  if (data.length === 0) return { code: CloseCode.NoStatusReceived, reason: "" };
  if (data.length === 1) return { violation: "close_one_byte" };
  const code = data.readUInt16BE(0);
  if (!closeCodeIsValid(code)) return { violation: "close_invalid_code" };
  const reason = data.subarray(2);
  const validator = new Utf8Validator();
  if (!validator.push(reason) || !validator.complete) return { violation: "close_invalid_reason" };
  return { code, reason: reason.toString("utf8") };
}

/** A close frame's payload. The reason is cut (on a character boundary) so
 * the whole payload fits the 125 bytes of a control frame. */
export function encodeClosePayload(code: number | undefined, reason = ""): Buffer {
  if (code === undefined || code === CloseCode.NoStatusReceived) return Buffer.alloc(0);
  let reasonBytes = Buffer.from(reason, "utf8");
  if (reasonBytes.length > MAX_CONTROL_PAYLOAD - 2) {
    let end = MAX_CONTROL_PAYLOAD - 2;
    while (end > 0 && (reasonBytes[end]! & 0xc0) === 0x80) end--; // do not split a character
    reasonBytes = reasonBytes.subarray(0, end);
  }
  const payload = Buffer.alloc(2 + reasonBytes.length); // zero-filled: nothing unwritten leaves
  payload.writeUInt16BE(code, 0);
  reasonBytes.copy(payload, 2);
  return payload;
}

/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(rate: number, burst: number, now: () => number = Date.now) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.now = now;
    this.updatedAt = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1000) * this.rate);
    this.updatedAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export type SessionState = "open" | "closing-local" | "closing-remote" | "closed";

/** What the session asks of the layer that owns the socket, in order. */
export type SessionOutput =
  /** A message for the application (text: its bytes are valid UTF-8). */
  | TextMessage
  | BinaryMessage
  /** A frame as it was on the wire, for observers (only while observed). */
  | { type: "frame"; frame: FrameInfo }
  /** What a compressed message inflated to, for observers (only while observed). */
  | { type: "message-note"; note: MessageNote }
  /** Bytes to write: one complete frame (a pong, a ping, a close). */
  | { type: "write"; frame: Buffer }
  /** Nothing more will be written: half-close the TCP connection. */
  | { type: "end-output" }
  /** Destroy the socket now; `why` is for the log. */
  | { type: "abort"; why: string }
  /** The peer broke a rule: for the log (the close frame is already queued). */
  | { type: "failed"; violation: Violation };

export interface SessionOptions {
  maxPayload: number;
  maxFragments: number;
  deflate: DeflateAgreement | undefined;
  /** Ping a peer this long after the last ping; 0: never. */
  keepaliveIntervalMs: number;
  /** A peer that sends nothing this long after a ping is gone. */
  keepaliveTimeoutMs: number;
  /** How long the closing handshake and the end of TCP may take. */
  closingTimeoutMs: number;
  /** Pings and pongs a second a peer may send before they are ignored. */
  controlFrameRate: number;
}

export class WebSocketSession {
  state: SessionState = "open";
  /** The close frame the peer sent, once it has sent one. */
  peerClose: { code: number; reason: string } | undefined;
  /** When the session next needs to be told the time (`advanceTime`), or Infinity. */
  deadline = Infinity;

  private readonly options: SessionOptions;
  private readonly decoder: FrameDecoder;
  private readonly inflater: MessageInflater | undefined;
  /** Whether anyone watches frames: then compressed messages are described too. */
  private observing = false;
  private outputs: SessionOutput[] = [];
  /** What the decoder found, handled one event at a time as outputs are
   * taken: a close sent while a message is being handled then applies to
   * the messages after it, and not to those before a violation. */
  private decoded: DecoderEvent[] = [];
  private decodedIndex = 0;
  private outputEnded = false;
  /** Keepalive: when the next ping is due, and when an unanswered one means the peer is gone. */
  private nextPingAt = Infinity;
  private pongDueBy = Infinity;
  private heardSincePing = true;
  private closingDeadline = Infinity;
  /** Made at the first ping or pong: ten thousand idle connections need none. */
  private controlBudget: { answers: TokenBucket; patience: TokenBucket } | undefined;
  private readonly now: () => number;

  constructor(options: SessionOptions, now: () => number) {
    this.options = options;
    this.now = now;
    this.decoder = new FrameDecoder({
      expectMasked: true,
      maxPayload: options.maxPayload,
      maxFragments: options.maxFragments,
      allowCompression: options.deflate !== undefined,
    });
    this.inflater = options.deflate && new MessageInflater(options.deflate, options.maxPayload);
    if (options.keepaliveIntervalMs > 0) this.nextPingAt = now() + options.keepaliveIntervalMs;
    this.updateDeadline();
  }

  /** Whether data frames may still be sent: not once our close frame is out (§5.5.1). */
  get mayWriteData(): boolean {
    return this.state === "open";
  }

  /** Turns `frame` outputs on or off (they copy the first bytes of each frame). */
  observeFrames(on: boolean): void {
    this.decoder.observe(on);
    this.observing = on;
  }

  /** The next thing to do, oldest first; undefined when there is nothing. */
  takeOutput(): SessionOutput | undefined {
    while (this.outputs.length === 0 && this.decodedIndex < this.decoded.length)
      this.handle(this.decoded[this.decodedIndex++]!);
    return this.outputs.shift();
  }

  // ── Input: bytes, time, the end of the TCP connection ─────────────────────

  /** Bytes from the peer. Any byte at all proves it is still there. */
  receiveData(chunk: Buffer): void {
    if (this.state === "closed") return;
    this.heardSincePing = true;
    const events = this.decoder.receive(chunk);
    if (this.decodedIndex < this.decoded.length) {
      for (const event of events) this.decoded.push(event);
    } else {
      this.decoded = events;
      this.decodedIndex = 0;
    }
  }

  private handle(event: DecoderEvent): void {
    switch (event.type) {
      case "frame":
        return void this.outputs.push(event);
      case "binary":
      case "text":
        // After our close frame, data is read but not delivered (§5.5.1).
        if (this.state === "open") this.outputs.push(event);
        return;
      case "compressed":
        if (this.state === "open") this.inflate(event.binary, event.data);
        return;
      case "ping":
        // §5.5.2: a pong with the same payload, unless the peer floods us.
        if (this.state === "open" && this.spendControlBudget()) this.write(Opcode.Pong, event.data);
        return;
      case "pong":
        this.spendControlBudget(); // §5.5.3: a pong needs no answer, but it costs work too
        return;
      case "close":
        return this.receiveClose(event.code, event.reason);
      case "violation":
        return this.fail(event.violation);
    }
  }

  /** The clock moved on: keepalive and the closing deadline. `readingPaused`:
   * the socket layer stopped reading for backpressure, so a pong may be
   * waiting unread; a slow reader is the slow-consumer limit's business. */
  advanceTime(readingPaused: boolean): void {
    const now = this.now();
    if (now >= this.closingDeadline && this.state !== "closed") {
      this.outputs.push({
        type: "abort",
        why: `the closing handshake took more than ${this.options.closingTimeoutMs} ms`,
      });
      this.closingDeadline = Infinity;
    }
    if (this.state === "open" && now >= this.pongDueBy) {
      this.pongDueBy = Infinity;
      if (!this.heardSincePing && !readingPaused) {
        this.outputs.push({ type: "abort", why: `no pong within ${this.options.keepaliveTimeoutMs} ms` });
        this.nextPingAt = Infinity; // the peer is gone: nothing more to ask it
      }
    }
    if (this.state === "open" && now >= this.nextPingAt) {
      this.write(Opcode.Ping, Buffer.alloc(0));
      // A timeout longer than the interval: a ping still unanswered keeps its
      // deadline, or a silent peer would be given a new one with every ping.
      if (this.heardSincePing || this.pongDueBy === Infinity) this.pongDueBy = now + this.options.keepaliveTimeoutMs;
      this.heardSincePing = false;
      this.nextPingAt = now + this.options.keepaliveIntervalMs;
    }
    this.updateDeadline();
  }

  /** The TCP connection is gone, for whatever reason. */
  connectionLost(): void {
    this.state = "closed";
    this.deadline = Infinity;
  }

  // ── Input: what the application asks ──────────────────────────────────────

  /** §7.1.2: starts the closing handshake. The peer answers with its own
   * close frame, and the TCP connection is ended then, or destroyed at the
   * closing deadline. */
  close(code: number = CloseCode.Normal, reason = ""): void {
    if (this.state !== "open") return;
    this.write(Opcode.Close, encodeClosePayload(code, reason));
    this.state = "closing-local";
    this.startClosingDeadline();
  }

  /** §7.1.7 "Fail the WebSocket Connection": the close code for the rule
   * broken, from the one table `violations`; nothing more will be read, so
   * there is no answer to wait for and our output ends at once. */
  fail(violation: Violation): void {
    this.outputs.push({ type: "failed", violation });
    const { closeCode, message } = violations[violation];
    this.close(closeCode, message);
    this.endOutput();
  }

  // ── Inside ────────────────────────────────────────────────────────────────

  /** §5.5.1, §7.1.5: their close frame. If we sent ours first, this is the
   * answer; otherwise we answer with the same code. Both closes have passed:
   * the server ends the TCP connection. */
  private receiveClose(code: number, reason: string): void {
    this.peerClose = { code, reason };
    if (this.state === "open") {
      this.write(Opcode.Close, encodeClosePayload(code === CloseCode.NoStatusReceived ? CloseCode.Normal : code));
      this.state = "closing-remote";
    }
    this.endOutput();
    this.startClosingDeadline();
  }

  private inflate(binary: boolean, data: Buffer): void {
    const result = this.inflater!.inflate(data);
    if (typeof result === "string") return this.fail(result);
    if (this.observing) {
      const preview = result.subarray(0, PREVIEW_BYTES);
      const note = { compressed: true, binary, length: result.length, wireLength: data.length, preview };
      this.outputs.push({ type: "message-note", note });
    }
    if (binary) return void this.outputs.push(new BinaryMessage([result], result.length));
    if (!isUtf8(result)) return this.fail("invalid_utf8");
    this.outputs.push(new TextMessage([result], result.length));
  }

  /** Pings and pongs cost work: a peer gets `controlFrameRate` a second
   * answered; one that keeps flooding past them is failed. */
  private spendControlBudget(): boolean {
    const rate = this.options.controlFrameRate;
    this.controlBudget ??= {
      answers: new TokenBucket(rate, rate * 2, this.now),
      patience: new TokenBucket(rate, rate * 4, this.now),
    };
    if (this.controlBudget.answers.take()) return true;
    if (!this.controlBudget.patience.take()) this.fail("control_flood");
    return false;
  }

  private write(opcode: number, payload: Buffer): void {
    if (this.outputEnded) return;
    this.outputs.push({ type: "write", frame: encodeFrame(opcode, payload) });
  }

  private endOutput(): void {
    if (this.outputEnded) return;
    this.outputEnded = true;
    this.outputs.push({ type: "end-output" });
  }

  private startClosingDeadline(): void {
    if (this.closingDeadline === Infinity) this.closingDeadline = this.now() + this.options.closingTimeoutMs;
    this.updateDeadline();
  }

  private updateDeadline(): void {
    const keepalive = this.state === "open" ? Math.min(this.nextPingAt, this.pongDueBy) : Infinity;
    this.deadline = Math.min(keepalive, this.closingDeadline);
  }
}

// ════════════════════════════════════════════════════════════════════════════
// 6. The connection: one socket, driven by its session
//
// A Connection owns one TCP socket and does only I/O: it feeds the socket's
// bytes and the passing time to its session and does what the session says
// (deliver a message, write a frame, end the output, destroy the socket).
// Three concerns of its own, none of them protocol:
//   - backpressure: while the socket's buffer is full it stops reading from
//     the peer, so a peer that sends but never reads cannot make the server
//     buffer without bound;
//   - slow consumers: a peer whose unsent bytes pass maxBufferedBytes fails
//     with `too_slow` (1008), instead of letting a broadcast grow our memory;
//   - observers (--trace, the page's inspector) see every frame both ways.
// ════════════════════════════════════════════════════════════════════════════

/** What an endpoint (echo, chat) is told about its connection. */
export interface ConnectionHandler {
  /** Instead of onText and onBinary, for a handler that passes messages on
   * unchanged (the echo): the message as bytes, nothing converted or joined. */
  onBytes?(connection: Connection, message: TextMessage | BinaryMessage): void;
  onText?(connection: Connection, text: string): void;
  onBinary?(connection: Connection, data: Buffer): void;
  /** Once, when the connection is over. `code` is what the peer sent, or 1006 if it sent none. */
  onClose?(connection: Connection, code: number, reason: string): void;
}

/** Observes every frame in both directions (the protocol trace, section 8). */
export interface FrameObserver {
  received(connection: Connection, frame: FrameInfo): void;
  sent(connection: Connection, frame: FrameInfo): void;
  /** After a message's last frame: whether it was compressed, and what it was before (RFC 7692). */
  message?(connection: Connection, direction: "received" | "sent", note: MessageNote): void;
  closed?(connection: Connection): void;
}

/** A message as the application sees it, beside the frame that carried it:
 * compressed (RSV1) or not, and if not, why not. */
export interface MessageNote {
  compressed: boolean;
  binary: boolean;
  /** The message's own length, uncompressed. */
  length: number;
  /** Its payload's length in the frame(s): compressed, if it was. */
  wireLength: number;
  /** Its first bytes, uncompressed. */
  preview: Buffer;
  /** Sent uncompressed although compression was agreed: shorter than this (--deflate-threshold). */
  threshold?: number;
  /** Sent uncompressed although long enough: the agreed server_max_window_bits, too small for zlib. */
  windowBits?: number;
}

/** The same for every connection of a server: one object, shared. */
export type ConnectionOptions = Pick<
  ServerConfig,
  | "maxPayload"
  | "maxFragments"
  | "maxBufferedBytes"
  | "closingTimeoutMs"
  | "keepaliveIntervalMs"
  | "keepaliveTimeoutMs"
  | "deflateThreshold"
  | "deflateLevel"
  | "log"
> & {
  /** Told once, after the endpoint's onClose, when a connection is over. */
  onFinished?: (connection: Connection) => void;
  /** Told when a connection is failed for breaking a rule (for /metrics). */
  onViolation?: (violation: Violation) => void;
};

/** Pings and pongs a peer may send a second before they are ignored. */
const CONTROL_FRAME_RATE = 50;

/** What became of a write: queued, refused because the peer reads too
 * slowly, or dropped because the socket is gone. */
type WriteResult = "queued" | "too-slow" | "gone";

/** The sending side of a socket: writes of one turn batched into one system
 * call, reading paused while the peer does not read what we send, and the
 * slow-consumer limit. */
export class SocketWriter {
  /** Set while this turn's writes are corked (see batchWritesThisTurn). */
  batched = false;
  /** Whether reading is paused because the peer does not read (backpressure). */
  readingPaused = false;
  private unsentBeforeThisTurn = 0;
  readonly socket: Socket;
  private readonly maxBufferedBytes: number;

  constructor(socket: Socket, maxBufferedBytes: number) {
    this.socket = socket;
    this.maxBufferedBytes = maxBufferedBytes;
  }

  /** Queues the parts of one frame, unless the peer has left too much unread. */
  write(parts: Buffer[]): WriteResult {
    if (this.socket.destroyed) return "gone";
    let length = 0;
    for (const part of parts) length += part.length;
    this.noteTurnStart();
    if (this.isTooSlowFor(length)) return "too-slow";
    batchWritesThisTurn(this);
    frameGatherer.releaseFrom(this); // this connection's small frames go first: they were written first
    for (const part of parts) this.queue(part);
    return "queued";
  }

  /** Queues one frame of at most GATHER_LIMIT bytes of payload, encoded
   * behind this connection's other small frames of this turn (FrameGatherer). */
  writeSmallFrame(opcode: number, payload: string | readonly Buffer[], length: number): WriteResult {
    if (length > GATHER_LIMIT) throw new RangeError(`a frame of ${length} bytes is not small`);
    if (this.socket.destroyed) return "gone";
    this.noteTurnStart();
    if (this.isTooSlowFor(frameHeaderSize(length) + length)) return "too-slow";
    batchWritesThisTurn(this);
    frameGatherer.add(this, opcode, payload, length);
    return "queued";
  }

  /** Hands bytes to the socket, and stops reading from a peer that does not read. */
  queue(bytes: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!this.socket.write(bytes) && !this.readingPaused) {
      this.readingPaused = true;
      this.socket.pause();
    }
  }

  /** Ends the output once everything written has been queued. */
  end(): void {
    frameGatherer.releaseFrom(this);
    this.socket.end();
  }

  /** Whether the peer left bytes of earlier turns unread. */
  get isBehind(): boolean {
    return this.unsentBeforeThisTurn > 0;
  }

  /** At the first write of a turn: remembers what the peer left unread from earlier turns. */
  private noteTurnStart(): void {
    if (!this.batched) this.unsentBeforeThisTurn = this.unsent;
  }

  /** Bytes written and not yet sent: the socket's buffer, and small frames still being gathered. */
  get unsent(): number {
    return this.socket.writableLength + frameGatherer.heldFor(this);
  }

  /** The socket's buffer drained: read from the peer again. */
  resumeReading(): void {
    if (!this.readingPaused) return;
    this.readingPaused = false;
    this.socket.resume();
  }

  /** Whether queueing `length` more bytes would pass the limit. What counts
   * is what the peer left unread from earlier turns (bytes written in this
   * turn only wait for the batch to be flushed), but one turn may not queue
   * more than twice the limit either. Control frames always fit. */
  private isTooSlowFor(length: number): boolean {
    if (length <= MAX_CONTROL_PAYLOAD + 2) return false;
    const limit = this.maxBufferedBytes;
    return this.unsentBeforeThisTurn > limit || this.unsent + length > 2 * limit;
  }
}

/** Who watches a connection's frames (--trace, the page's inspector); usually nobody. */
/** Nobody watches: the one list every connection starts with (most never get another). */
const NO_OBSERVERS: readonly FrameObserver[] = Object.freeze([]);

export class FrameObservers {
  private list: readonly FrameObserver[] = NO_OBSERVERS;
  private paused = false;
  /** Told whether anyone watches, so that the decoder keeps previews only then. */
  private readonly session: { observeFrames(on: boolean): void } | undefined;

  constructor(session?: { observeFrames(on: boolean): void }) {
    this.session = session;
  }

  /** Whether a frame would be shown to anyone: checked before describing it. */
  get watching(): boolean {
    return this.list.length > 0 && !this.paused;
  }

  /** Shows every frame to `observer` from now on. */
  add(observer: FrameObserver): void {
    if (!this.list.includes(observer)) this.list = [...this.list, observer];
    this.session?.observeFrames(true);
  }

  remove(observer: FrameObserver): void {
    this.list = this.list.filter((existing) => existing !== observer);
    this.session?.observeFrames(this.list.length > 0);
  }

  has(observer: FrameObserver): boolean {
    return this.list.includes(observer);
  }

  tell(connection: Connection, event: "received" | "sent", frame: FrameInfo): void {
    if (this.paused) return;
    for (const observer of this.list) observer[event](connection, frame);
  }

  note(connection: Connection, direction: "received" | "sent", note: MessageNote): void {
    if (this.paused) return;
    for (const observer of this.list) observer.message?.(connection, direction, note);
  }

  tellClosed(connection: Connection): void {
    for (const observer of this.list) observer.closed?.(connection);
  }

  /** Does `action` without showing its frames: the inspector's reports about
   * frames must not produce reports about themselves. */
  withoutWatching<T>(action: () => T): T {
    this.paused = true;
    try {
      return action();
    } finally {
      this.paused = false;
    }
  }
}

/** A timer that fires at a clock time (Date.now), re-armed only when the time changes. */
class DeadlineTimer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private at = Infinity;
  private readonly callback: () => void;

  constructor(callback: () => void) {
    this.callback = callback;
  }

  /** Fires at `at`, instead of any earlier setting; Infinity: never. */
  set(at: number): void {
    if (at === this.at) return;
    clearTimeout(this.timer);
    this.at = at;
    if (at === Infinity) return;
    this.timer = setTimeout(DeadlineTimer.fire, Math.max(0, at - Date.now()), this);
    this.timer.unref();
  }

  /** One function for every timer (the timer comes as its argument), not a closure per setting. */
  private static fire(timer: DeadlineTimer): void {
    timer.at = Infinity;
    timer.callback();
  }
}

/** Without compression every connection of a server has the same session options: one object for all. */
const plainSessionOptions = new WeakMap<ConnectionOptions, SessionOptions>();

/** What a session needs of the server's options: seven fields, not a copy of all of them per connection. */
function sessionOptionsFor(options: ConnectionOptions, deflate: DeflateAgreement | undefined): SessionOptions {
  const shared = deflate === undefined ? plainSessionOptions.get(options) : undefined;
  if (shared !== undefined) return shared;
  const { maxPayload, maxFragments, keepaliveIntervalMs, keepaliveTimeoutMs, closingTimeoutMs } = options;
  const controlFrameRate = CONTROL_FRAME_RATE;
  const made = {
    maxPayload,
    maxFragments,
    keepaliveIntervalMs,
    keepaliveTimeoutMs,
    closingTimeoutMs,
    deflate,
    controlFrameRate,
  };
  if (deflate === undefined) plainSessionOptions.set(options, made);
  return made;
}

let nextConnectionId = 1;

/** What a connection does with messages until an endpoint takes it: nothing (one object for all). */
const NO_HANDLER: ConnectionHandler = Object.freeze({});

/** Where a socket keeps the Connection that owns it. */
const connectionOfSocket = Symbol("connection");
type OwnedSocket = Socket & { [connectionOfSocket]?: Connection };

export class Connection {
  readonly id = nextConnectionId++;
  readonly socket: Socket;
  readonly remoteAddress: string;
  readonly protocol: string | undefined;
  readonly deflate: DeflateAgreement | undefined;
  handler: ConnectionHandler = NO_HANDLER;
  /** The opening handshake as the trace tells it; kept only when someone may ask. */
  handshakeTrace: string[] | undefined;

  private readonly session: WebSocketSession;
  private readonly writer: SocketWriter;
  /** Who watches this connection's frames (--trace, the page's inspector). */
  readonly observers: FrameObservers;
  private readonly options: ConnectionOptions;
  private readonly timer = new DeadlineTimer(() => this.onDeadline());
  private finished = false;

  constructor(
    socket: Socket,
    protocol: string | undefined,
    deflate: DeflateAgreement | undefined,
    options: ConnectionOptions,
    remoteAddress = socket.remoteAddress ?? "unknown",
  ) {
    this.socket = socket;
    this.remoteAddress = remoteAddress;
    this.protocol = protocol;
    this.deflate = deflate;
    this.options = options;
    this.session = new WebSocketSession(sessionOptionsFor(options, deflate), Date.now);
    this.writer = new SocketWriter(socket, options.maxBufferedBytes);
    this.observers = new FrameObservers(this.session);

    socket.setNoDelay(true); // small frames go out now, not 40 ms later (Nagle)
    socket.setTimeout(0);
    (socket as OwnedSocket)[connectionOfSocket] = this;
    socket.on("data", Connection.onSocketData);
    socket.on("drain", Connection.onSocketDrain);
    socket.on("end", Connection.onSocketEnd);
    socket.on("error", Connection.onSocketError);
    socket.on("close", Connection.onSocketClose);
    // The peer may already have gone while the handshake was answered: then
    // "close" was emitted before we listened, and must not be waited for.
    if (socket.destroyed) process.nextTick(() => this.finish());
    this.timer.set(this.session.deadline);
  }

  // The socket's listeners: the same five functions for every connection
  // (`this` is the socket, which knows its connection), not five closures each.
  private static onSocketData(this: OwnedSocket, chunk: Buffer): void {
    this[connectionOfSocket]!.receiveBytes(chunk);
  }
  private static onSocketDrain(this: OwnedSocket): void {
    this[connectionOfSocket]!.writer.resumeReading();
  }
  private static onSocketEnd(this: OwnedSocket): void {
    this[connectionOfSocket]!.writer.end(); // the peer half-closed: finish our half, after what we wrote
  }
  private static onSocketError(this: OwnedSocket, error: Error): void {
    const connection = this[connectionOfSocket]!;
    if (connection.state === "open") connection.options.log(`connection ${connection.id}: ${error.message}`);
    this.destroy();
  }
  private static onSocketClose(this: OwnedSocket): void {
    this[connectionOfSocket]!.finish();
  }

  get state(): SessionState {
    return this.session.state;
  }

  /** The close code the peer sent, once it has sent one. */
  get closeCode(): number | undefined {
    return this.session.peerClose?.code;
  }

  /** Bytes written but not yet handed to the operating system: the socket's buffer and gathered frames. */
  get bufferedAmount(): number {
    return this.writer.unsent;
  }

  /** Sends a text message that observers do not see (the inspector's own reports). */
  sendUnobserved(text: string): boolean {
    return this.observers.withoutWatching(() => this.send(text));
  }

  // ── In: bytes and time; out: what the session asks ────────────────────────

  /** Socket bytes in; also the bytes that came with the upgrade request. */
  receiveBytes(chunk: Buffer): void {
    this.session.receiveData(chunk);
    this.act();
  }

  /** §7.1.2: starts the closing handshake (see WebSocketSession.close). */
  close(code: number = CloseCode.Normal, reason = ""): void {
    this.session.close(code, reason);
    this.act();
  }

  /** §7.1.7: the peer broke a rule (see WebSocketSession.fail). */
  fail(violation: Violation): void {
    this.session.fail(violation);
    this.act();
  }

  /** Drops the TCP connection without a closing handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Does what the session asks, in order, then sets the timer it needs. */
  private act(): void {
    for (let output = this.session.takeOutput(); output !== undefined; output = this.session.takeOutput()) {
      if (this.finished) return;
      switch (output.type) {
        case "text":
        case "binary":
          this.deliver(output);
          break;
        case "frame":
          this.observers.tell(this, "received", output.frame);
          break;
        case "message-note":
          this.observers.note(this, "received", output.note);
          break;
        case "write":
          if (this.writeBytes(output.frame) && this.observers.watching)
            this.observers.tell(this, "sent", describeSentFrame(output.frame, false));
          break;
        case "end-output":
          this.writer.end();
          break;
        case "failed": {
          const { closeCode, message } = violations[output.violation];
          this.options.log(`connection ${this.id}: closing with ${closeCode} (${output.violation}): ${message}`);
          this.options.onViolation?.(output.violation);
          break;
        }
        case "abort":
          this.options.log(`connection ${this.id}: ${output.why}; dropping it`);
          this.socket.destroy();
          break;
      }
    }
    if (!this.finished) this.timer.set(this.session.deadline);
  }

  /** The session's deadline passed: tell it the time. */
  private onDeadline(): void {
    this.session.advanceTime(this.writer.readingPaused);
    this.act();
  }

  /** Hands a message to the endpoint. An exception there is this
   * connection's problem only: it is logged and the connection closed with
   * 1011; the server and every other connection go on. */
  private deliver(message: TextMessage | BinaryMessage): void {
    const handler = this.handler;
    try {
      if (handler.onBytes) handler.onBytes(this, message);
      else if (message.type === "binary") handler.onBinary?.(this, message.data);
      else handler.onText?.(this, message.text);
    } catch (error) {
      this.options.log(`connection ${this.id}: handler failed: ${describeError(error)}`);
      this.fail("internal_error");
    }
  }

  // ── Sending ────────────────────────────────────────────────────────────────

  /** Sends one message: a string as a text frame, a Buffer as a binary frame
   * (or as text, given Opcode.Text, when its bytes are known to be UTF-8).
   * Returns false when the message was not queued (closing, or too slow). */
  send(data: string | Buffer, opcode: number = typeof data === "string" ? Opcode.Text : Opcode.Binary): boolean {
    if (!this.session.mayWriteData) return false;
    if (this.deflate !== undefined) {
      const length = typeof data === "string" ? Buffer.byteLength(data) : data.length;
      if (length >= this.options.deflateThreshold)
        return this.sendPrepared(new PreparedMessage(data, opcode === Opcode.Binary));
    }
    const written = writeFrame(this, opcode, data);
    if (written && this.observers.watching) {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      this.observers.tell(this, "sent", describeOwnFrame(opcode, bytes.length, false, bytes));
      if (this.deflate !== undefined) this.noteUncompressed(bytes, opcode === Opcode.Binary);
    }
    return written;
  }

  /** Sends a received message back as it came (the echo): its pieces go out
   * after a new header, as they are, unless it must be compressed or traced. */
  sendMessage(message: TextMessage | BinaryMessage): boolean {
    const opcode = message.type === "text" ? Opcode.Text : Opcode.Binary;
    const { pieces } = message;
    if (
      pieces.length === 1 ||
      pieces.length > MAX_PIECES_WRITTEN ||
      this.deflate !== undefined ||
      this.observers.watching
    )
      return this.send(message.data, opcode);
    if (!this.session.mayWriteData) return false;
    return writeFramePieces(this, opcode, pieces, message.length);
  }

  /** Sends a message encoded once for many connections. */
  sendPrepared(message: PreparedMessage): boolean {
    if (!this.session.mayWriteData) return false;
    const { deflateThreshold, deflateLevel } = this.options;
    const { frame, compressed } = message.frameFor(this.deflate, deflateThreshold, deflateLevel);
    const written = this.writeBytes(frame);
    if (written && this.observers.watching) {
      const sent = describeSentFrame(frame, compressed);
      this.observers.tell(this, "sent", sent);
      const { payload, binary } = message;
      const preview = payload.subarray(0, PREVIEW_BYTES);
      if (compressed)
        this.observers.note(this, "sent", {
          compressed,
          binary,
          length: payload.length,
          wireLength: sent.length,
          preview,
        });
      else if (this.deflate !== undefined) this.noteUncompressed(payload, binary);
    }
    return written;
  }

  /** Compression was agreed, and this message went without it: it was too
   * short to be worth it, or the window the client asked for is one zlib
   * cannot deflate with (compressMessage). */
  private noteUncompressed(payload: Buffer, binary: boolean): void {
    const { length } = payload;
    const preview = payload.subarray(0, PREVIEW_BYTES);
    const threshold = this.options.deflateThreshold;
    const why = length < threshold ? { threshold } : { windowBits: this.deflate?.serverMaxWindowBits };
    this.observers.note(this, "sent", { compressed: false, binary, length, wireLength: length, preview, ...why });
  }

  /** Writes the parts of one frame; a peer that left too much unread fails
   * as a slow consumer (1008) and nothing more is queued for it. */
  writeBytes(...parts: Buffer[]): boolean {
    return this.concludeWrite(this.writer.write(parts));
  }

  /** Writes one frame of at most GATHER_LIMIT bytes of payload (FrameGatherer). */
  writeSmallFrame(opcode: number, payload: string | readonly Buffer[], length: number): boolean {
    return this.concludeWrite(this.writer.writeSmallFrame(opcode, payload, length));
  }

  /** Fails a peer too slow for what was written; returns whether it was queued. */
  private concludeWrite(result: WriteResult): boolean {
    if (result === "too-slow") {
      this.options.log(`connection ${this.id}: closing a slow consumer (${this.bufferedAmount} bytes unsent)`);
      this.fail("too_slow");
    }
    return result === "queued";
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.session.connectionLost();
    this.timer.set(Infinity);
    const { code, reason } = this.session.peerClose ?? { code: CloseCode.Abnormal, reason: "" };
    this.observers.tellClosed(this);
    try {
      this.handler.onClose?.(this, code, reason);
    } catch (error) {
      this.options.log(`connection ${this.id}: close handler failed: ${describeError(error)}`);
    }
    this.options.onFinished?.(this);
  }
}

/** A FrameInfo for a frame this server sends (for the trace). `wireLength`
 * is the payload length in the frame: after compression, if compressed. */
function describeOwnFrame(opcode: number, wireLength: number, compressed: boolean, payload: Buffer): FrameInfo {
  return {
    fin: true,
    rsv1: compressed,
    rsv2: false,
    rsv3: false,
    opcode,
    masked: false,
    lengthBits: wireLength < 126 ? 7 : wireLength < 65536 ? 16 : 64,
    length: wireLength,
    maskKey: undefined,
    previewOnWire: payload.subarray(0, PREVIEW_BYTES),
    preview: payload.subarray(0, PREVIEW_BYTES),
  };
}

/** The same, read back from a whole unmasked frame this server encoded. */
function describeSentFrame(frame: Buffer, compressed: boolean): FrameInfo {
  const lengthField = frame[1]! & 0x7f;
  const headerSize = lengthField < 126 ? 2 : lengthField === 126 ? 4 : 10;
  return describeOwnFrame(frame[0]! & 0x0f, frame.length - headerSize, compressed, frame.subarray(headerSize));
}

// ════════════════════════════════════════════════════════════════════════════
// 7. Making it fast
//
// Each fast path below replaces a plain algorithm that is correct and
// simpler; the plain one is written beside it, with what the fast one gained
// when measured on this repository's 2-core machine: by
// `node --import tsx bench/fast-paths.ts` (best of several rounds; a busy
// machine moves these by a third either way), or, where its comment says so,
// by echoes of bench/load.ts run against both. test/fast-paths.test.ts checks
// that the ones that compute bytes (masking, UTF-8, joining pieces, gathering
// frames) give exactly what their plain algorithms give; the others only
// change how bytes reach the socket. Nothing here changes what goes over the
// wire.
// ════════════════════════════════════════════════════════════════════════════

// ── Frames written in one turn leave in one system call ─────────────────────
// Plain: socket.write(frame) for each frame, one write(2) each.
// Fast: cork the socket at the first write of a turn of the event loop and
// uncork it on the next tick, so an echo of ten frames that arrived in one
// TCP segment, or a burst of broadcasts, costs one write instead of ten.
// Measured: 64 frames of 1 KiB a turn to a loopback socket, 7.6× less CPU.

/** A socket whose writes are batched a turn at a time: a SocketWriter, and the Redis link's. */
interface BatchedSocket {
  batched: boolean;
  readonly socket: Socket;
}

function batchWritesThisTurn(writer: BatchedSocket): void {
  if (writer.batched) return;
  writer.batched = true;
  writer.socket.cork();
  process.nextTick(flushBatchedWrites, writer);
}

function flushBatchedWrites(writer: BatchedSocket): void {
  writer.batched = false;
  frameGatherer.releaseFrom(writer);
  writer.socket.uncork();
}

// ── A connection's small frames of one turn leave as one buffer ─────────────
// Plain: encodeFrame makes each frame a buffer of its own and each goes to
// socket.write (cork then joins them into one writev call).
// Fast: frames of up to GATHER_LIMIT bytes of payload are encoded one after
// another into a shared block instead of a buffer each. A connection's run of
// them ends when another connection writes a small frame, when this one
// writes anything else or ends its output, when the block is full, or when
// the turn ends; the run then goes to socket.write in one piece: a view of
// the block. A block is never written twice: when it is full a new one is
// taken, and the old one lives until the last view of it has been sent, as
// Node's own Buffer pool does. A view keeps its whole block alive, so a run
// goes as a copy instead when it is short (the copy is cheap) or when the
// peer left earlier turns' bytes unread (a slow reader would keep the block
// for as long as it does not read); a peer that falls behind in the middle of
// a turn keeps at most the one block of its last view.
// Measured on echoes of 64 × 1 KiB (server.ts compiled, runs alternating with
// the plain way, medians): binary 229k → 272k messages a second, text 214k →
// 262k (six runs each); 1 × 16 B binary, 580k → 756k (three runs), all with
// every run copied out. Views rather than copies, for the 64 × 1 KiB binary
// echo, measured the same way at another time: 194k → 225k (five runs each).
// On Bun the two measured the same: there, a new block costs what the copies
// save.

/** The largest payload gathered: above it a frame is a buffer of its own. */
const GATHER_LIMIT = 4 * 1024;
/** The size of a block; a run that would not fit goes out, and a new block is begun. */
const GATHER_BLOCK_SIZE = 64 * 1024;
/** Runs shorter than this go out as copies, not as views that keep a whole block alive. */
const GATHER_COPY_BELOW = GATHER_BLOCK_SIZE / 8;

class FrameGatherer {
  private block: Buffer | undefined; // made on first use
  /** How much of the block is written: runs already handed over, then the current one. */
  private used = 0;
  private runStart = 0;
  /** Whose run the block ends with: one connection's at a time. */
  private owner: SocketWriter | undefined;

  /** Encodes a frame into the block, after its owner's earlier ones. */
  add(writer: SocketWriter, opcode: number, payload: string | readonly Buffer[], length: number): void {
    const size = frameHeaderSize(length) + length;
    const fits = this.block !== undefined && this.used + size <= GATHER_BLOCK_SIZE;
    if (this.owner !== writer || !fits) this.release();
    if (!fits) {
      this.block = Buffer.allocUnsafe(GATHER_BLOCK_SIZE); // every byte is written before it is sent
      this.used = 0;
    }
    if (this.owner === undefined) {
      this.owner = writer;
      this.runStart = this.used;
    }
    const block = this.block!;
    let at = this.used + writeFrameHeader(block, this.used, opcode, length);
    if (typeof payload === "string") block.write(payload, at, "utf8");
    else for (const piece of payload) at += piece.copy(block, at);
    this.used += size;
  }

  /** How many bytes of `writer`'s the block holds, not yet handed over. */
  heldFor(writer: BatchedSocket): number {
    return this.owner === writer ? this.used - this.runStart : 0;
  }

  /** Hands `writer`'s run, if the block ends with one, to its socket. */
  releaseFrom(writer: BatchedSocket): void {
    if (this.owner === writer) this.release();
  }

  private release(): void {
    const owner = this.owner;
    if (owner === undefined) return;
    this.owner = undefined;
    const run = this.block!.subarray(this.runStart, this.used);
    owner.queue(run.length < GATHER_COPY_BELOW || owner.isBehind ? Buffer.from(run) : run);
  }
}

const frameGatherer = new FrameGatherer();

// ── A large payload is written after its header, not copied behind it ───────
// Plain: connection.writeBytes(encodeFrame(opcode, payload)): one buffer,
// every payload byte copied once. Above COPY_LIMIT the copy costs more than a
// second write call, so header and payload go out as two buffers. Measured:
// the copy of a 1 MiB frame took 0.14 ms; its header alone, 0.5 µs.

const COPY_LIMIT = 64 * 1024;

function writeFrame(connection: Connection, opcode: number, payload: string | Buffer): boolean {
  // A string has at least as many UTF-8 bytes as UTF-16 units: a long one is not measured twice.
  if (payload.length <= GATHER_LIMIT) {
    if (typeof payload !== "string") return connection.writeSmallFrame(opcode, [payload], payload.length);
    const length = Buffer.byteLength(payload);
    if (length <= GATHER_LIMIT) return connection.writeSmallFrame(opcode, payload, length);
  }
  if (typeof payload === "string" || payload.length <= COPY_LIMIT)
    return connection.writeBytes(encodeFrame(opcode, payload));
  return writeFramePieces(connection, opcode, [payload], payload.length);
}

// ── A message sent back in the pieces it came in ────────────────────────────
// Plain: join the pieces of a message into one buffer when it ends
// (Buffer.concat: a new buffer the size of the message, every byte copied),
// and send that. Fast: the message keeps its pieces (BinaryMessage and
// TextMessage join them only when someone reads `data`), and an echo writes
// them after a new header, in the same system call. Measured on 4 × 1 MiB
// binary echo (bench/load.ts's runEcho on a server run with --cpu-prof, read
// with bench/cpuprofile.ts): the join was 13 % of the server's busy time, and
// the echo went from 654 to 844 messages a second without it.

/** Above this many pieces a message is joined and sent as one buffer: a
 * write call per piece would cost more than the copy. */
const MAX_PIECES_WRITTEN = 64;

/** A frame's header, then its payload as the pieces given, in one write call (also writeFrame's large payloads). */
function writeFramePieces(connection: Connection, opcode: number, pieces: readonly Buffer[], length: number): boolean {
  if (length <= GATHER_LIMIT) return connection.writeSmallFrame(opcode, pieces, length);
  const header = Buffer.allocUnsafe(frameHeaderSize(length));
  writeFrameHeader(header, 0, opcode, length);
  return connection.writeBytes(header, ...pieces);
}

// ── A broadcast is encoded once ─────────────────────────────────────────────
// Plain: connection.send(text) for each member: the frame (and its
// compression) made again for every one of them. Measured: a 2 KiB message
// to 100 members, 83× less encoding work, and 100× less compressing.

/** A message encoded once and sent to many connections (a chat broadcast):
 * the frame bytes are made on first use and then shared. */
export class PreparedMessage {
  readonly binary: boolean;
  private readonly data: string | Buffer;
  private bytes: Buffer | undefined;
  private plainFrame: Buffer | undefined;
  private readonly compressedFrames = new Map<number, Buffer | undefined>();

  constructor(data: string | Buffer, binary = typeof data !== "string") {
    this.binary = binary;
    this.data = data;
  }

  /** The payload as bytes (made only when needed: to compress, or to trace). */
  get payload(): Buffer {
    this.bytes ??= typeof this.data === "string" ? Buffer.from(this.data, "utf8") : this.data;
    return this.bytes;
  }

  get length(): number {
    this.byteLength ??= typeof this.data === "string" ? Buffer.byteLength(this.data) : this.data.length;
    return this.byteLength;
  }
  private byteLength: number | undefined;

  /** The frame for a connection with this agreement: compressed frames differ
   * only by window size, so there is at most one per size. */
  frameFor(
    deflate: DeflateAgreement | undefined,
    threshold: number,
    level: number,
  ): { frame: Buffer; compressed: boolean } {
    if (deflate !== undefined && this.length >= threshold) {
      const bits = deflate.serverMaxWindowBits;
      if (!this.compressedFrames.has(bits)) {
        const compressed = compressMessage(this.payload, bits, level);
        this.compressedFrames.set(bits, compressed && encodeFrame(this.opcode, compressed, { rsv1: true }));
      }
      const frame = this.compressedFrames.get(bits);
      if (frame !== undefined) return { frame, compressed: true };
    }
    // Straight from the string into the frame: one copy, not two.
    this.plainFrame ??= encodeFrame(this.opcode, this.data);
    return { frame: this.plainFrame, compressed: false };
  }

  private get opcode(): number {
    return this.binary ? Opcode.Binary : Opcode.Text;
  }
}

// ── Unmasking a 32-bit word at a time ───────────────────────────────────────
// Plain: maskBytes (section 3), one XOR per byte.
// Fast: four bytes per XOR, four words per turn of the loop. Measured: 10×.

/** The key lined up for a word of payload, as one 32-bit number in this
 * machine's byte order: written as four bytes, read as one word. */
const keyBytes = new Uint8Array(4);
const keyWord = new Int32Array(keyBytes.buffer);

/** maskBytes, a 32-bit word at a time: four bytes per XOR. */
export function maskWords(data: Uint8Array, key: Uint8Array, offset = 0): void {
  const length = data.length;
  let index = 0;
  if (length >= 32) {
    // Single bytes until the data is 4-byte aligned in memory, as a word view requires.
    const head = (4 - (data.byteOffset & 3)) & 3;
    for (; index < head; index++) data[index] ^= key[(offset + index) & 3]!;
    for (let byte = 0; byte < 4; byte++) keyBytes[byte] = key[(offset + index + byte) & 3]!;
    const mask = keyWord[0]!;
    const count = (length - index) >>> 2;
    const words = new Int32Array(data.buffer, data.byteOffset + index, count);
    let word = 0;
    // Four words per turn of the loop: fewer loop checks.
    for (; word + 3 < count; word += 4) {
      words[word] ^= mask;
      words[word + 1] ^= mask;
      words[word + 2] ^= mask;
      words[word + 3] ^= mask;
    }
    for (; word < count; word++) words[word] ^= mask;
    index += count * 4;
  }
  for (; index < length; index++) data[index] ^= key[(offset + index) & 3]!;
}

// ── Unmasking sixteen bytes at a time, in WebAssembly ───────────────────────
// Plain: maskWords above, a 32-bit word per XOR in JavaScript (bufferutil, which
// ws users install, does it in C).
// Fast: a WebAssembly function XORs 16 bytes per instruction (SIMD) in its own
// memory; the piece is copied in, masked, and copied back, 64 KiB at a time.
// WebAssembly is a global of Node, Deno and Bun, so this is no dependency;
// where it is missing or cannot do SIMD, maskWords runs. Measured on 64 KiB
// pieces (what the socket hands over at a time), copies in and out included:
// 2.0× maskWords (bench/fast-paths.ts); in a 4 × 1 MiB echo, unmasking went
// from 19 % of the server's busy time to 10 %.
//
// The module in WebAssembly's text format; MASK_MODULE below is its binary
// encoding, byte for byte (each line of bytes is commented with what it says).
//
//   (module
//     (memory (export "memory") 2)                  ;; 128 KiB: a 64 KiB slice and room to spare
//     (func (export "mask") (param $length i32) (param $key i32)
//       (local $at i32) (local $key16 v128)
//       (local.set $key16 (i32x4.splat (local.get $key)))  ;; the key four times over: 16 bytes
//       (block $done
//         (loop $next
//           (br_if $done (i32.ge_u (local.get $at) (local.get $length)))
//           ;; May run up to 15 bytes past $length: they are spare memory, never copied back.
//           (v128.store (local.get $at) (v128.xor (v128.load (local.get $at)) (local.get $key16)))
//           (local.set $at (i32.add (local.get $at) (i32.const 16)))
//           (br $next)))))

const MASK_MODULE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...[0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00], // type section: one type, (i32, i32) -> ()
  ...[0x03, 0x02, 0x01, 0x00], // function section: one function, of type 0
  ...[0x05, 0x03, 0x01, 0x00, 0x02], // memory section: one memory, at least 2 pages of 64 KiB
  ...[0x07, 0x11, 0x02], // export section, 17 bytes: two exports
  ...[0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00], // "memory": memory 0
  ...[0x04, 0x6d, 0x61, 0x73, 0x6b, 0x00, 0x00], // "mask": function 0
  ...[0x0a, 0x34, 0x01, 0x32], // code section, 52 bytes: one body of 50 bytes
  ...[0x02, 0x01, 0x7f, 0x01, 0x7b], // locals: one i32 ($at, local 2), one v128 ($key16, local 3)
  ...[0x20, 0x01, 0xfd, 0x11, 0x21, 0x03], // local.get $key, i32x4.splat, local.set $key16
  ...[0x02, 0x40, 0x03, 0x40], // block $done, loop $next
  ...[0x20, 0x02, 0x20, 0x00, 0x4f, 0x0d, 0x01], // $at >= $length (unsigned): br_if $done
  ...[0x20, 0x02], // the address to store at: $at
  ...[0x20, 0x02, 0xfd, 0x00, 0x00, 0x00], // v128.load from $at (alignment hint 1, offset 0)
  ...[0x20, 0x03, 0xfd, 0x51], // local.get $key16, v128.xor
  ...[0xfd, 0x0b, 0x00, 0x00], // v128.store
  ...[0x20, 0x02, 0x41, 0x10, 0x6a, 0x21, 0x02], // $at = $at + 16
  ...[0x0c, 0x00], // br $next
  ...[0x0b, 0x0b, 0x0b], // end loop, end block, end function
]);

/** Bytes masked per call: one 64 KiB slice, a multiple of 4 so the key stays in step. */
const SIMD_SLICE = 64 * 1024;
/** Below this the copies in and out cost more than they save (measured against
 * maskWords: even at about 700 bytes, 0.85× at 512, 1.4× at 1 KiB): maskWords does it. */
const SIMD_MIN_BYTES = 1024;

interface SimdMasker {
  /** The module's memory, seen as bytes. */
  memory: Buffer;
  mask(length: number, key: number): void;
}

function loadSimdMasker(): SimdMasker | undefined {
  try {
    if (typeof WebAssembly === "undefined" || !WebAssembly.validate(MASK_MODULE)) return undefined;
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(MASK_MODULE));
    const memory = exports.memory as WebAssembly.Memory;
    return {
      memory: Buffer.from(memory.buffer, 0, SIMD_SLICE + 16),
      mask: exports.mask as (length: number, key: number) => void,
    };
  } catch {
    return undefined; // a runtime without SIMD (or that refuses the module): maskWords serves
  }
}

const simdMasker = loadSimdMasker();

/** maskBytes, sixteen bytes at a time, in WebAssembly. Returns false, and
 * changes nothing, where this runtime cannot run the module. */
export function maskSimd(data: Uint8Array, key: Uint8Array, offset = 0): boolean {
  if (simdMasker === undefined) return false;
  const { memory, mask } = simdMasker;
  // The key as WebAssembly reads a word: little-endian, starting at this offset into the payload.
  const word =
    (key[offset & 3]! |
      (key[(offset + 1) & 3]! << 8) |
      (key[(offset + 2) & 3]! << 16) |
      (key[(offset + 3) & 3]! << 24)) >>>
    0;
  for (let start = 0; start < data.length; start += SIMD_SLICE) {
    const length = Math.min(SIMD_SLICE, data.length - start);
    // A payload that fits is copied in whole: no view of it (measured with FrameDecoder's `start`).
    memory.set(length === data.length ? data : data.subarray(start, start + length), 0);
    mask(length, word);
    memory.copy(data, start, 0, length);
  }
  return true;
}

/** XORs `data` with the 4-byte key, in place, as if `data` started `offset`
 * bytes into the payload (§5.3). Masking and unmasking are the same operation.
 * What the decoder and the encoder call: the fastest of the three that runs here. */
export function maskInPlace(data: Uint8Array, key: Uint8Array, offset = 0): void {
  if (data.length >= SIMD_MIN_BYTES && maskSimd(data, key, offset)) return;
  maskWords(data, key, offset);
}

// ── UTF-8 checked by the runtime, not byte by byte ─────────────────────────
// Plain: validator.push(piece), a loop in JavaScript over every byte.
// Fast: the runtime's isUtf8 (native code) checks everything up to the last
// character's first byte; only a character cut by the end of the piece, or
// a piece that is invalid somewhere, goes through the loop. Measured on
// 108 KiB of Chinese and English: 48×.

export function pushUtf8(validator: Utf8Validator, bytes: Uint8Array): boolean {
  // First finish a character the previous piece left open (at most 3 bytes).
  let index = 0;
  while (!validator.complete && index < bytes.length) if (!validator.step(bytes[index++]!)) return false;
  if (index === bytes.length) return true;
  const rest = index === 0 ? bytes : bytes.subarray(index);
  if (isUtf8(rest)) return true;
  let last = rest.length - 1;
  while (last > 0 && rest.length - last < 4 && (rest[last]! & 0xc0) === 0x80) last--;
  if (rest[last]! >= 0xc0 && isUtf8(rest.subarray(0, last))) return validator.push(rest.subarray(last));
  return validator.push(rest); // invalid somewhere: the loop finds where
}

// ── Text made only when someone reads it ────────────────────────────────────
// Plain: the decoder hands over data.toString("utf8"), and an echo turns the
// string back into bytes. Fast: it hands over the bytes it already checked.
// Measured: 1.5 µs saved on every 1 KiB text message an echo sends back.
// The bytes themselves are joined only when someone reads `data` (see
// writeFramePieces: an echo sends the pieces as they came).

/** The pieces one message arrived in, joined into one buffer when someone asks. */
function joinPieces(pieces: readonly Buffer[], length: number): Buffer {
  return pieces.length === 1 ? pieces[0]! : pieces.length === 0 ? Buffer.alloc(0) : Buffer.concat(pieces, length);
}

/** A complete message's bytes, kept in the pieces they arrived in. */
abstract class ReceivedMessage {
  readonly pieces: readonly Buffer[];
  readonly length: number;
  private joined: Buffer | undefined;

  constructor(pieces: readonly Buffer[], length: number) {
    this.pieces = pieces;
    this.length = length;
  }

  /** The whole payload in one buffer (joined on first read, then kept). */
  get data(): Buffer {
    this.joined ??= joinPieces(this.pieces, this.length);
    return this.joined;
  }
}

/** A complete text message. Its bytes were checked as UTF-8 as they arrived;
 * the string is made only when someone reads `text` (an echo never does, and
 * turning bytes into a string and back is the costliest part of an echo). */
export class TextMessage extends ReceivedMessage {
  readonly type = "text";

  get text(): string {
    return this.data.toString("utf8");
  }
}

/** A complete binary message. */
export class BinaryMessage extends ReceivedMessage {
  readonly type = "binary";
}

// ── A message's pieces gathered into few buffers ────────────────────────────
// Plain: keep every piece and Buffer.concat them at the end: one object per
// fragment, so a message of 100,000 one-byte fragments holds 100,000 buffers
// until it ends. Measured: it holds 15, in about the same time. A memory
// limit, not a speed-up: it is what keeps the fragment flood of ws's
// CVE-2026-48779 from costing more than the bytes themselves.

/** Collects the pieces of one message. The first few pieces, and big ones,
 * are kept as they are (no copy: most messages are one piece). Once a message
 * has many small pieces they are copied into shared blocks, so that a
 * message sent as a hundred thousand one-byte fragments costs a few blocks,
 * not a hundred thousand objects. */
export class PayloadCollector {
  private parts: Buffer[] = [];
  private block: Buffer | undefined;
  private blockUsed = 0;
  length = 0;

  add(piece: Buffer): void {
    if (piece.length === 0) return;
    this.length += piece.length;
    if (piece.length >= 1024 || (this.block === undefined && this.parts.length < 8)) {
      this.sealBlock();
      this.parts.push(piece);
      return;
    }
    if (this.block === undefined || this.blockUsed + piece.length > this.block.length) {
      this.sealBlock();
      this.block = Buffer.allocUnsafe(16 * 1024);
      this.blockUsed = 0;
    }
    piece.copy(this.block, this.blockUsed);
    this.blockUsed += piece.length;
  }

  /** The whole message, in the pieces it was kept in (`length` bytes in all,
   * read before this call). Only written bytes are ever handed out. */
  takePieces(): Buffer[] {
    this.sealBlock();
    const parts = this.parts;
    this.parts = [];
    this.length = 0;
    return parts;
  }

  private sealBlock(): void {
    if (this.block !== undefined && this.blockUsed > 0) this.parts.push(this.block.subarray(0, this.blockUsed));
    this.block = undefined;
    this.blockUsed = 0;
  }
}

// ════════════════════════════════════════════════════════════════════════════
// 8. Seeing the protocol: --trace and the page's frame inspector
//
// Browsers show a WebSocket's messages, never its frames: not the FIN bit,
// not the masking key, not the handshake's arithmetic. These functions turn
// what the decoder and the encoder saw into lines a learner can read, like a
// protocol analyser. --trace prints them; the page's inspector receives them
// as `trace` messages on its own connection. They only format: nothing here
// changes what is sent.
// ════════════════════════════════════════════════════════════════════════════

/** "7f 9f 4d" (spaced) or "7f9f4d" (packed), at most `limit` bytes, then "…". */
export function toHex(bytes: Uint8Array, packed = false, limit = bytes.length): string {
  const shown = Array.from(bytes.subarray(0, limit), (byte) => byte.toString(16).padStart(2, "0"));
  return shown.join(packed ? "" : " ") + (bytes.length > limit ? "…" : "");
}

/** A payload prefix as quoted text, if it is text; undefined otherwise. */
function textPreview(preview: Buffer, totalLength: number): string | undefined {
  let end = preview.length;
  // A preview may stop in the middle of a character: back up to its start.
  if (preview.length < totalLength) {
    let start = end;
    while (start > 0 && start > end - 4 && (preview[start - 1]! & 0xc0) === 0x80) start--;
    if (start > 0 && preview[start - 1]! >= 0xc0) end = start - 1;
  }
  const bytes = preview.subarray(0, end);
  if (!isUtf8(bytes)) return undefined;
  const text = bytes.toString("utf8");
  for (const character of text) if (character < " " && character !== "\n" && character !== "\t") return undefined;
  const more = totalLength - bytes.length;
  return JSON.stringify(text) + (more > 0 ? `… (+${more} bytes)` : "");
}

/** One line per frame: every header field, then the payload. For RFC 6455
 * §5.7's masked "Hello" (shown here on two lines):
 *   ← text         FIN=1 RSV=000 opcode=0x1 MASK=1 length=5 (7-bit) key=37fa213d
 *                  masked=7f9f4d5158 unmasked=48656c6c6f "Hello" */
export function describeFrame(frame: FrameInfo, direction: "received" | "sent"): string {
  const name = opcodeNames[frame.opcode] ?? "reserved";
  const rsv = `${frame.rsv1 ? 1 : 0}${frame.rsv2 ? 1 : 0}${frame.rsv3 ? 1 : 0}`;
  const parts = [
    direction === "received" ? "←" : "→",
    name.padEnd(12),
    `FIN=${frame.fin ? 1 : 0}`,
    `RSV=${rsv}`,
    `opcode=0x${frame.opcode.toString(16)}`,
    `MASK=${frame.masked ? 1 : 0}`,
    `length=${frame.length} (${frame.lengthBits}-bit)`,
  ];
  if (frame.maskKey) {
    parts.push(
      `key=${toHex(frame.maskKey, true)}`,
      `masked=${toHex(frame.previewOnWire, true, 16)}`,
      `unmasked=${toHex(frame.preview, true, 16)}`,
    );
  } else if (frame.length > 0) {
    parts.push(`payload=${toHex(frame.preview, true, 16)}`);
  }
  if (frame.rsv1) parts.push(`(compressed: ${frame.length} bytes of deflate data)`);
  else if (frame.opcode === Opcode.Close && frame.length >= 2) {
    const code = frame.preview.readUInt16BE(0);
    parts.push(`code=${code} (${closeCodeNames[code] ?? "unknown"})`);
    const reason = textPreview(frame.preview.subarray(2), frame.length - 2);
    if (frame.length > 2 && reason !== undefined) parts.push(`reason=${reason}`);
  } else if (frame.opcode !== Opcode.Binary && frame.length > 0) {
    const text = textPreview(frame.preview, frame.length);
    if (text !== undefined) parts.push(text);
  }
  return parts.join(" ");
}

/** The line under a data frame that says what compression did: for RSV1,
 * what the deflate bytes inflate to (or were deflated from), so that a
 * browser's compressed "hi" reads as "hi"; for a short message the server
 * sent plain, why. */
export function describeMessageNote(note: MessageNote, direction: "received" | "sent"): string {
  if (!note.compressed && note.windowBits !== undefined)
    return (
      `↳ sent uncompressed: the client asked for server_max_window_bits=${note.windowBits}, ` +
      `and zlib deflates only with windows of 2^9 bytes or more`
    );
  if (!note.compressed)
    return `↳ sent uncompressed: shorter than ${note.threshold} bytes (--deflate-threshold), not worth compressing`;
  const content = note.binary
    ? `binary ${toHex(note.preview, true, 16)}`
    : (textPreview(note.preview, note.length) ?? "");
  const ratio = note.length === 0 ? 0 : Math.round((note.wireLength / note.length) * 100);
  const how =
    direction === "received"
      ? `${note.wireLength} bytes of deflate data inflate to ${note.length}`
      : `${note.length} bytes deflated to ${note.wireLength}`;
  return `↳ RSV1=1: compressed with permessage-deflate (RFC 7692 §6): ${how} (${ratio}%) ${content}`.trimEnd();
}

/** --trace=full: the frame's header and first payload bytes as a hex dump. */
export function dumpFrame(frame: FrameInfo): string[] {
  const header = Buffer.alloc(frameHeaderSize(frame.length, frame.masked));
  writeFrameHeader(header, 0, frame.opcode, frame.length, frame.fin, frame.rsv1, frame.maskKey);
  header[0] = header[0]! | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0);
  const rows = (label: string, bytes: Buffer): string[] => {
    const lines: string[] = [];
    for (let offset = 0; offset < bytes.length || offset === 0; offset += 16) {
      lines.push(`    ${(offset === 0 ? label : "").padEnd(10)}${toHex(bytes.subarray(offset, offset + 16))}`);
      if (bytes.length === 0) break;
    }
    return lines;
  };
  const lines = rows("header", header);
  if (frame.length > 0) {
    if (frame.masked) lines.push(...rows("masked", frame.previewOnWire), ...rows("unmasked", frame.preview));
    else lines.push(...rows("payload", frame.preview));
    if (frame.length > frame.preview.length)
      lines.push(`    … ${frame.length - frame.preview.length} more bytes not shown`);
  }
  return lines;
}

/** The request target with the value of `session` replaced by "…": the
 * secret that proves who a page is must not reach a log or a screen. */
export function withoutSecrets(target: string): string {
  const mark = target.indexOf("?");
  if (mark === -1) return target;
  const parameters = target
    .slice(mark + 1)
    .split("&")
    .map((parameter) => (parameterName(parameter) === "session" ? "session=…" : parameter));
  return `${target.slice(0, mark)}?${parameters.join("&")}`;
}

/** The decoded name of one `name=value` query parameter ("" if it cannot be decoded). */
function parameterName(parameter: string): string {
  const equals = parameter.indexOf("=");
  const raw = (equals === -1 ? parameter : parameter.slice(0, equals)).replaceAll("+", " ");
  try {
    return decodeURIComponent(raw);
  } catch {
    return "";
  }
}

/** The opening handshake worked by hand: the request, the key, the GUID
 * appended, the SHA-1 in hex, its base64, and the response. */
export function describeHandshake(
  request: { method?: string | undefined; url?: string | undefined; httpVersion: string; rawHeaders: string[] },
  responseHead: string,
): string[] {
  const lines = [`← ${request.method} ${withoutSecrets(request.url ?? "")} HTTP/${request.httpVersion}`];
  let key: string | undefined;
  for (let index = 0; index + 1 < request.rawHeaders.length; index += 2) {
    const name = request.rawHeaders[index]!;
    const value = request.rawHeaders[index + 1]!;
    lines.push(`←   ${name}: ${value}`);
    if (name.toLowerCase() === "sec-websocket-key") key = value.trim();
  }
  if (key !== undefined && keyIsValid(key)) {
    const sha1 = createHash("sha1")
      .update(key + WEBSOCKET_GUID)
      .digest();
    lines.push(
      `    key                ${key}`,
      `    key + GUID         ${key}${WEBSOCKET_GUID}`,
      `    SHA-1              ${toHex(sha1, true)}`,
      `    base64 of SHA-1    ${sha1.toString("base64")}   (the Sec-WebSocket-Accept value)`,
    );
  }
  for (const line of responseHead.split("\r\n")) {
    if (line === "") break;
    lines.push(line.startsWith("HTTP/") ? `→ ${line}` : `→   ${line}`);
  }
  return lines;
}

/** --trace: prints every frame of every connection, prefixed with its id. */
export class ConsoleTracer implements FrameObserver {
  private readonly full: boolean;
  private readonly print: (line: string) => void;

  constructor(full: boolean, print: (line: string) => void) {
    this.full = full;
    this.print = print;
  }

  handshake(connectionLabel: string, lines: string[]): void {
    for (const line of lines) this.print(`${connectionLabel} ${line}`);
  }

  received(connection: Connection, frame: FrameInfo): void {
    this.frame(connection, frame, "received");
  }

  sent(connection: Connection, frame: FrameInfo): void {
    this.frame(connection, frame, "sent");
  }

  closed(connection: Connection): void {
    this.print(`#${connection.id} TCP connection closed`);
  }

  message(connection: Connection, direction: "received" | "sent", note: MessageNote): void {
    this.print(`#${connection.id}   ${describeMessageNote(note, direction)}`);
  }

  private frame(connection: Connection, frame: FrameInfo, direction: "received" | "sent"): void {
    this.print(`#${connection.id} ${describeFrame(frame, direction)}`);
    if (this.full) for (const line of dumpFrame(frame)) this.print(`#${connection.id} ${line}`);
  }
}

/** The page's frame inspector: the same descriptions, sent to the page as
 * `{"type":"trace",...}` messages on its own connection, and only to a page
 * that asked. Its own messages are sent unobserved, so it never reports on
 * itself. */
export class Inspector implements FrameObserver {
  received(connection: Connection, frame: FrameInfo): void {
    this.report(connection, frame, "received");
  }

  sent(connection: Connection, frame: FrameInfo): void {
    this.report(connection, frame, "sent");
  }

  message(connection: Connection, direction: "received" | "sent", note: MessageNote): void {
    const { compressed, binary, length, wireLength, threshold, windowBits } = note;
    const fields: TraceNoteFields = { compressed, binary, length, wireLength, payload: toHex(note.preview) };
    if (threshold !== undefined) fields.threshold = threshold;
    if (windowBits !== undefined) fields.windowBits = windowBits;
    const line = describeMessageNote(note, direction);
    const report: TraceMessage = { type: "trace", direction: "note", of: direction, line, note: fields };
    connection.sendUnobserved(JSON.stringify(report));
  }

  /** Sends the opening handshake, if it was kept. */
  sendHandshake(connection: Pick<Connection, "handshakeTrace" | "sendUnobserved">): void {
    if (connection.handshakeTrace === undefined) return;
    const report: TraceMessage = { type: "trace", direction: "handshake", lines: connection.handshakeTrace };
    connection.sendUnobserved(JSON.stringify(report));
  }

  private report(connection: Connection, frame: FrameInfo, direction: "received" | "sent"): void {
    const report: TraceMessage = {
      type: "trace",
      direction,
      line: describeFrame(frame, direction),
      frame: {
        fin: frame.fin,
        rsv1: frame.rsv1,
        rsv2: frame.rsv2,
        rsv3: frame.rsv3,
        opcode: frame.opcode,
        opcodeName: opcodeNames[frame.opcode] ?? "reserved",
        masked: frame.masked,
        maskKey: frame.maskKey ? toHex(frame.maskKey, true) : null,
        lengthBits: frame.lengthBits,
        length: frame.length,
        onWire: toHex(frame.previewOnWire),
        payload: toHex(frame.preview),
      },
    };
    connection.sendUnobserved(JSON.stringify(report));
  }
}

/** One inspector serves every connection: it keeps no state of its own. */
export const inspector = new Inspector();

// ── The frame lab: type bytes, watch the decoder ────────────────────────────
// `node server.ts --decode "81 85 37 fa …"` (and the page's Frame lab) feed
// bytes a learner typed to a fresh FrameDecoder, one frame at a time, and
// print its walk: each state with the bytes it read and what every bit
// means, the payload masked and unmasked, the messages it yields, and the
// first rule broken, with its close code. The decoder decides; this only
// reads the same bytes again to name their fields.

/** At most this many bytes are decoded in the lab (the page's requests are bounded by it too). */
export const FRAME_LAB_MAX_BYTES = 64 * 1024;

/** Bytes from hex written with or without spaces (or colons, commas, 0x); a reason when it is not hex. */
export function parseHex(text: string): Buffer | string {
  const digits = text.replace(/0x/gi, "").replace(/[\s,:]/g, "");
  if (digits === "") return 'no bytes: give them as hex, e.g. "81 85 37 fa 21 3d 7f 9f 4d 51 58"';
  if (!/^[0-9a-fA-F]*$/.test(digits))
    return `not hex: ${JSON.stringify(digits.match(/[^0-9a-fA-F]/)![0])} is not a hex digit`;
  if (digits.length % 2 === 1) return `an odd number of hex digits (${digits.length}): every byte is two`;
  if (digits.length / 2 > FRAME_LAB_MAX_BYTES) return `more than ${FRAME_LAB_MAX_BYTES} bytes`;
  return Buffer.from(digits, "hex");
}

export interface FrameLabReport {
  lines: string[];
  /** valid: every frame decoded; incomplete: valid so far, the last frame needs more bytes; violation: a rule broken. */
  outcome: "valid" | "incomplete" | "violation";
}

/** The decoder's walk through `bytes`: from a client (masked, §5.1) unless `fromServer`. */
export function walkFrames(bytes: Buffer, fromServer = false): FrameLabReport {
  const decoder = new FrameDecoder({ expectMasked: !fromServer, maxPayload: FRAME_LAB_MAX_BYTES });
  const lines = [
    `${bytes.length} bytes, read as ${fromServer ? "a server's frames (unmasked, RFC 6455 §5.1)" : "a client's frames (masked, RFC 6455 §5.1)"}:`,
  ];
  let offset = 0;
  let frames = 0;
  let messages = 0;
  const bits = (byte: number) =>
    byte
      .toString(2)
      .padStart(8, "0")
      .replace(/(....)/, "$1 ");
  while (offset < bytes.length) {
    const start = offset;
    frames++;
    lines.push("", `frame ${frames}, from byte ${start}`);
    const first = bytes[offset]!;
    const second = bytes[offset + 1];
    const opcode = first & 0x0f;
    lines.push(
      `  state header     ${toHex(bytes.subarray(offset, offset + 2))}   ${bits(first)}${second === undefined ? "" : `  ${bits(second)}`}`,
      `    FIN=${first >> 7}          ${first & 0x80 ? "the last frame of its message" : "more frames of this message follow (§5.4)"}`,
      `    RSV1-3=${(first >> 6) & 1}${(first >> 5) & 1}${(first >> 4) & 1}     ` +
        (first & 0x70
          ? "set: only an agreed extension may (RSV1: permessage-deflate, RFC 7692)"
          : "no extension in use"),
      `    opcode=0x${opcode.toString(16)}     ${opcodeNames[opcode] ?? "reserved (§5.2)"}`,
    );
    let length = 0;
    let masked = false;
    let needed = 2;
    if (second !== undefined) {
      masked = (second & 0x80) !== 0;
      const length7 = second & 0x7f;
      lines.push(
        `    MASK=${masked ? 1 : 0}         ${masked ? "a masking key follows; the payload is masked (§5.3)" : "no masking key"}`,
        `    length=${length7}${" ".repeat(Math.max(1, 8 - String(length7).length))}${length7 < 126 ? "the payload's length, in the 7-bit field" : length7 === 126 ? "126: the length is in the next 2 bytes" : "127: the length is in the next 8 bytes"}`,
      );
      offset += 2;
      length = length7;
      if (length7 === 126 || length7 === 127) {
        const size = length7 === 126 ? 2 : 8;
        needed += size;
        const field = bytes.subarray(offset, offset + size);
        if (field.length === size) {
          length = size === 2 ? field.readUInt16BE(0) : Number(field.readBigUInt64BE(0));
          lines.push(`  state ${size === 2 ? "length16" : "length64"}   ${toHex(field)}   = ${length} bytes`);
        }
        offset += size;
      }
      if (masked) {
        needed += 4;
        const key = bytes.subarray(offset, offset + 4);
        if (key.length === 4) lines.push(`  state maskKey    ${toHex(key)}`);
        offset += 4;
      }
    }
    const available = Math.max(0, Math.min(length, bytes.length - offset));
    if (offset <= bytes.length && second !== undefined && needed <= bytes.length - start) {
      const onWire = bytes.subarray(offset, offset + available);
      const shown = Math.min(available, 64);
      if (masked) {
        const unmasked = Buffer.from(onWire);
        maskBytes(unmasked, bytes.subarray(offset - 4, offset));
        lines.push(
          `  state payload    masked    ${toHex(onWire, false, shown)}`,
          `                   unmasked  ${toHex(unmasked, false, shown)}   (byte i XOR key[i mod 4], §5.3)`,
        );
      } else if (length > 0) lines.push(`  state payload    ${toHex(onWire, false, shown)}`);
    }
    offset += length;
    const events = decoder.receive(bytes.subarray(start, Math.min(offset, bytes.length)));
    for (const event of events) {
      if (event.type === "violation") {
        const { closeCode, message } = violations[event.violation];
        lines.push(
          `  ✗ ${event.violation}: ${message}`,
          `    the connection is failed with close code ${closeCode} (${closeCodeNames[closeCode] ?? "?"}), §7.1.7`,
        );
        return { lines, outcome: "violation" };
      }
      messages++;
      lines.push(`  → ${describeEvent(event)}`);
    }
    if (offset > bytes.length) {
      lines.push(`  … the frame needs ${offset - bytes.length} more bytes: the decoder waits for them`);
      return { lines, outcome: "incomplete" };
    }
  }
  lines.push(
    "",
    `Valid: ${frames} frame${frames === 1 ? "" : "s"}, ${messages} message${messages === 1 ? "" : "s"} or control frame${messages === 1 ? "" : "s"}.`,
  );
  return { lines, outcome: "valid" };
}

/** What the decoder yielded, in words. */
function describeEvent(event: DecoderEvent): string {
  switch (event.type) {
    case "text":
      return `message: text ${JSON.stringify(event.text)} (${event.data.length} bytes)`;
    case "binary":
      return `message: binary, ${event.data.length} bytes: ${toHex(event.data, false, 32)}`;
    case "compressed":
      return `message: compressed (RSV1), ${event.data.length} bytes of deflate data`;
    case "ping":
    case "pong":
      return `${event.type} with ${event.data.length} bytes${event.data.length > 0 ? `: ${toHex(event.data, false, 32)}` : ""} (a control frame, §5.5)`;
    case "close":
      return `close: code ${event.code} (${closeCodeNames[event.code] ?? "?"})${event.reason ? `, reason ${JSON.stringify(event.reason)}` : ""}`;
    default:
      return event.type;
  }
}

// ════════════════════════════════════════════════════════════════════════════
// 9. The echo endpoint: /echo
//
// Every text or binary message comes back unchanged, as the same type. It is
// the smallest possible WebSocket application, the playground for learners
// and the target for conformance suites such as Autobahn.
// ════════════════════════════════════════════════════════════════════════════

export const echoHandler: ConnectionHandler = {
  onBytes: (connection, message) => void connection.sendMessage(message),
};

// ════════════════════════════════════════════════════════════════════════════
// 10. The chat room: /
//
// Everything below speaks JSON objects, never bytes; the connection above
// did the protocol. The wire contract (README, "Wire contract"):
//   client → server  {"type":"say","id","text"}  {"type":"rename","name"}  {"type":"ping","t"}
//                    {"type":"members","offset"}  {"type":"history","before"}
//   server → client  welcome, message, pong, joined, away, back, renamed, left,
//                    presence, members, history, error
// Each accepted message gets the next sequence number `seq` and is kept in a
// history (and, with --history, appended to a file before anyone sees it),
// so a client that reconnects with `since=<last seq>` gets what it missed,
// and a client that re-sends a message with the same `id` gets the stored
// copy back instead of a duplicate. `epoch` names the history a seq belongs
// to: a server that lost its history starts a new epoch, and clients know
// their old seqs mean nothing there.
// ════════════════════════════════════════════════════════════════════════════

// ── The wire contract, as types ─────────────────────────────────────────────
// What the room sends and reads, declared once. The page imports these types
// (`import type` from client.ts: erased when it is compiled, so the browser
// still loads one script) and checks every frame against them on arrival.

/** A chat message as the room numbered it; `seq` is its place in the history. */
export interface ChatMessage {
  seq: number;
  /** Chosen by the sender, so a retry is recognised and the sender knows its acknowledgement. */
  id: string;
  /** The sender's public id; "" for a message stored before ids existed. */
  sid: string;
  from: string;
  text: string;
  /** When the server accepted it, in milliseconds since 1970. */
  time: number;
}

/** Someone in the room, in `welcome`. `away`: no connection, the name held for the grace. */
export interface MemberView {
  name: string;
  sid: string;
  away?: true;
}

export interface WelcomeMessage {
  type: "welcome";
  name: string;
  /** Your own public id: a message is yours when its `sid` is this. */
  you: string;
  /** The first page of the room's members (at most MEMBER_PAGE, in the order
   * they arrived); when `memberCount` is larger, ask for more with `members`. */
  members: MemberView[];
  /** The names of `members`, for clients older than `members`. */
  users: string[];
  /** Everyone in the room, away or not; and those with a connection open. */
  memberCount: number;
  online: number;
  /** Whether joins and leaves come as one `presence` summary a second (a
   * room of more than PRESENCE_BATCH_ABOVE members) instead of one frame each. */
  presenceBatched: boolean;
  seq: number;
  /** The oldest seq the server still keeps: older pages can be asked for down to it. */
  oldestSeq: number;
  epoch: string;
  resumed: boolean;
}

/** A large room's joins and leaves of the last interval, in one frame: the
 * counts, and a few of them by name. Away and back only move `online`. */
export interface PresenceSummaryMessage {
  type: "presence";
  memberCount: number;
  online: number;
  joinedCount: number;
  joined: MemberView[];
  leftCount: number;
  left: MemberView[];
}

/** A page of the member list, from `offset` (an answer to `members`). Sent
 * unasked, from offset 0 and complete, when a large room becomes small
 * again and joins and leaves go back to one frame each. */
export interface MembersMessage {
  type: "members";
  offset: number;
  memberCount: number;
  online: number;
  presenceBatched: boolean;
  members: MemberView[];
}

/** The frame lab's answer to `decode`: the decoder's walk through the bytes, line by line. */
export interface DecodedMessage {
  type: "decoded";
  lines: string[];
  outcome: "valid" | "incomplete" | "violation";
}

/** Older messages (an answer to `history`): at most HISTORY_PAGE, oldest
 * first, all with seq < `before`; `more` when the server keeps older ones. */
export interface HistoryPageMessage {
  type: "history";
  before: number;
  messages: ChatMessage[];
  more: boolean;
}

/** joined: an identity's first connection; away / back: its last connection
 * closed / one returned within the grace; left: gone, its name free. */
export interface PresenceMessage {
  type: "joined" | "away" | "back" | "left";
  name: string;
  sid: string;
}

export interface RenamedMessage {
  type: "renamed";
  sid: string;
  from: string;
  to: string;
}

export type ErrorCode =
  | "bad_json"
  | "bad_message"
  | "unknown_type"
  | "bad_id"
  | "empty_text"
  | "text_too_long"
  | "name_taken"
  | "bad_name"
  | "bad_session"
  | "rate_limited"
  | "storage_failed";

export interface ErrorMessage {
  type: "error";
  code: ErrorCode;
  message: string;
  /** The `id` of the `say` it is about, if it is about one. */
  id?: string;
}

/** One frame as the page's inspector receives it (section 8). */
export interface TraceFrameFields {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  opcodeName: string;
  masked: boolean;
  /** The 4-byte masking key as 8 hex digits; null for an unmasked frame. */
  maskKey: string | null;
  lengthBits: 7 | 16 | 64;
  /** Payload bytes in the frame: after compression, if it was compressed. */
  length: number;
  /** The first payload bytes (at most 128) as they were on the wire, as spaced hex. */
  onWire: string;
  /** The same bytes unmasked. */
  payload: string;
}

export type TraceMessage =
  | { type: "trace"; direction: "received" | "sent"; line: string; frame: TraceFrameFields }
  | { type: "trace"; direction: "handshake"; lines: string[] }
  /** Under a data frame: what compression did (RFC 7692), as describeMessageNote says it. */
  | { type: "trace"; direction: "note"; of: "received" | "sent"; line: string; note: TraceNoteFields };

/** A message note as the page's inspector receives it. */
export interface TraceNoteFields {
  compressed: boolean;
  binary: boolean;
  length: number;
  wireLength: number;
  /** The message's first bytes (at most 128), uncompressed, as spaced hex. */
  payload: string;
  /** Why it was sent uncompressed: shorter than this many bytes. */
  threshold?: number;
  /** Or: the window the client asked for (server_max_window_bits), one zlib cannot deflate with. */
  windowBits?: number;
}

/** Everything the room sends. */
export type ServerMessage =
  | WelcomeMessage
  | ({ type: "message" } & ChatMessage)
  | { type: "pong"; t: unknown }
  | PresenceMessage
  | PresenceSummaryMessage
  | MembersMessage
  | HistoryPageMessage
  | DecodedMessage
  | RenamedMessage
  | ErrorMessage
  | TraceMessage;

/** Everything the room understands. */
export type ClientMessage =
  | { type: "say"; id: string; text: string }
  | { type: "rename"; name: string }
  | { type: "ping"; t: unknown }
  | { type: "inspect"; on: boolean }
  /** The member list from `offset` (default 0), MEMBER_PAGE at a time. */
  | { type: "members"; offset?: number }
  /** The HISTORY_PAGE messages before seq `before` (default: the newest). */
  | { type: "history"; before?: number }
  /** The frame lab: decode these bytes (hex) as a client's frames, or a server's. */
  | { type: "decode"; hex: string; from?: "client" | "server" };

export const MAX_TEXT_LENGTH = 2000;
/** Above this many members, joins and leaves are summed up once a PRESENCE_INTERVAL_MS. */
export const PRESENCE_BATCH_ABOVE = 100;
export const PRESENCE_INTERVAL_MS = 1000;
/** How many names a presence summary shows of those who joined, and of those who left. */
export const PRESENCE_SAMPLE = 10;
/** Members in a welcome, or in one answer to `members`. */
export const MEMBER_PAGE = 100;
/** Messages a first visit is sent, or one answer to `history`. */
export const HISTORY_PAGE = 100;
export const MAX_NAME_LENGTH = 32;
export const MAX_ID_LENGTH = 128;
export const defaultNames = ["小明", "小红", "小军", "小王"];

/** Counts characters the way a person does (code points, not UTF-16 units). */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** Control characters (Unicode category Cc: C0, DEL, C1), the invisible
 * "format" characters (Cf: bidirectional overrides, zero-width marks, soft
 * hyphens) and line and paragraph separators: a name with them can pretend
 * to be someone else's. A character class, no backtracking. */
const invisibleOrControl = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function hasControlCharacter(text: string): boolean {
  return invisibleOrControl.test(text);
}

/** The last `size` messages, oldest first; ids are indexed for exactly-once delivery. */
export class History {
  private messages: ChatMessage[] = [];
  private readonly byId = new Map<string, ChatMessage>();
  private readonly size: number;
  latestSeq = 0;

  constructor(size: number) {
    this.size = Math.max(1, size);
  }

  add(message: ChatMessage): void {
    this.messages.push(message);
    this.byId.set(message.id, message);
    this.latestSeq = message.seq;
    if (this.messages.length > this.size) {
      // Drop in batches so the array is not shifted on every message.
      const excess = this.messages.length - this.size;
      if (excess >= Math.max(1, this.size >> 3)) {
        for (const old of this.messages.splice(0, excess)) {
          if (this.byId.get(old.id) === old) this.byId.delete(old.id);
        }
      }
    }
  }

  /** The oldest seq still kept, or latestSeq + 1 when there is none. */
  get oldestSeq(): number {
    return this.messages[this.firstKept]?.seq ?? this.latestSeq + 1;
  }

  find(id: string): ChatMessage | undefined {
    const message = this.byId.get(id);
    return message !== undefined && message.seq >= this.oldestSeq ? message : undefined;
  }

  /** The kept messages with seq > since, oldest first. */
  since(since: number): ChatMessage[] {
    return this.messages.slice(this.indexAfter(since));
  }

  /** At most `limit` kept messages with seq < before, the newest of them,
   * oldest first; `more` when older ones are kept too. */
  before(before: number, limit: number): { messages: ChatMessage[]; more: boolean } {
    const end = this.indexAfter(before - 1);
    const start = Math.max(this.firstKept, end - limit);
    return { messages: this.messages.slice(start, end), more: start > this.firstKept };
  }

  /** The newest `limit` messages, oldest first. */
  newest(limit: number): ChatMessage[] {
    return this.before(this.latestSeq + 1, limit).messages;
  }

  /** Every kept message, oldest first. */
  kept(): ChatMessage[] {
    return this.messages.slice(this.firstKept);
  }

  /** Messages before this index are dropped already, waiting for the next batch. */
  private get firstKept(): number {
    return Math.max(0, this.messages.length - this.size);
  }

  /** The index of the first kept message with seq > `seq` (a binary search,
   * so a history loaded with gaps in its seqs still replays correctly). */
  private indexAfter(seq: number): number {
    let low = this.firstKept;
    let high = this.messages.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.messages[middle]!.seq <= seq) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/** --history FILE: one JSON object a line. The first line names the
 * history's epoch; every accepted message is appended before it is
 * broadcast, so a server killed at any moment has on disk everything it ever
 * acknowledged. The file is read from its end at start-up (only what is
 * kept is read), and rewritten with only what is kept when it has grown to
 * COMPACT_FACTOR times that, so neither start-up nor the disk grows with
 * everything that was ever said. */
export class HistoryFile {
  private descriptor: number;
  readonly path: string;
  /** Messages kept in memory (--history-size): the file is cut back to these. */
  private readonly keep: number;
  private readonly epoch: string;
  /** Message lines in the file now. */
  private messagesInFile: number;

  private constructor(path: string, descriptor: number, keep: number, epoch: string, messagesInFile: number) {
    this.path = path;
    this.descriptor = descriptor;
    this.keep = keep;
    this.epoch = epoch;
    this.messagesInFile = messagesInFile;
  }

  /** Opens (or creates) the file and reads back its epoch and its last
   * `keep` messages, oldest first. A torn last line, left by a crash in the
   * middle of a write, is cut off with a warning so the next append starts
   * on a line of its own. A file holding more than it keeps is compacted. */
  static open(
    path: string,
    keep: number,
    log: (line: string) => void,
  ): { file: HistoryFile; epoch: string; messages: ChatMessage[] } {
    rmSync(temporaryPathOf(path), { force: true }); // a compaction a crash interrupted before its rename
    // "a+": reads anywhere, but every write goes to the end of the file.
    const descriptor = openSync(path, "a+");
    dropTornLastLine(descriptor, path, log);
    const found = readEpoch(descriptor, path, log);
    const { messages, readWholeFile } = readLastMessages(descriptor, Math.max(1, keep), path, log);
    const epoch = found?.epoch ?? newEpoch();
    const file = new HistoryFile(path, descriptor, Math.max(1, keep), epoch, messages.length);
    if (found === undefined && fstatSync(descriptor).size === 0) file.append({ type: "epoch", epoch });
    else if (!found?.onFirstLine || !readWholeFile) file.compact(messages);
    return { file, epoch, messages };
  }

  /** Appends one record. writeSync: the message is in the operating system's
   * hands before anyone is told it was accepted. */
  append(record: object): void {
    const line = Buffer.from(JSON.stringify(record) + "\n", "utf8");
    const before = fstatSync(this.descriptor).size;
    let written = 0;
    try {
      while (written < line.length) written += writeSync(this.descriptor, line, written, line.length - written, null);
    } catch (error) {
      // A half-written line (a full disk) would glue the next one onto it:
      // take it back, so the file holds only whole lines.
      if (written > 0) ftruncateSync(this.descriptor, before);
      throw error;
    }
    if (!("type" in record)) this.messagesInFile++;
  }

  /** Whether the file has grown enough to be cut back to what is kept. */
  get needsCompaction(): boolean {
    return this.messagesInFile >= COMPACT_FACTOR * this.keep;
  }

  /** Rewrites the file as its epoch and `kept` (the messages in memory).
   * Each step leaves a complete history on disk if the process dies right
   * after it: the new file is whole and on disk before it replaces the old
   * one in a single rename (POSIX rename(2) is atomic), and the folder is
   * synced so the rename itself survives a power cut. */
  compact(kept: readonly ChatMessage[]): void {
    for (const step of this.compactionSteps(kept)) step();
  }

  /** The steps of a compaction, for a test to stop after any one of them as a crash would. */
  compactionSteps(kept: readonly ChatMessage[]): Array<() => void> {
    const temporary = temporaryPathOf(this.path);
    const lines = [{ type: "epoch", epoch: this.epoch }, ...kept.slice(-this.keep)];
    let newDescriptor = -1;
    return [
      () => {
        newDescriptor = openSync(temporary, "w");
        writeFileSync(newDescriptor, lines.map((line) => JSON.stringify(line) + "\n").join(""));
        fsyncSync(newDescriptor);
      },
      () => renameSync(temporary, this.path),
      () => syncFolderOf(this.path),
      () => {
        closeSync(this.descriptor);
        closeSync(newDescriptor);
        this.descriptor = openSync(this.path, "a+");
        this.messagesInFile = lines.length - 1;
      },
    ];
  }

  close(): void {
    closeSync(this.descriptor);
  }
}

/** The file is compacted when it holds this many times the messages kept. */
const COMPACT_FACTOR = 10;
/** How much of the file is read at a time, from its end backwards. */
const HISTORY_BLOCK = 64 * 1024;

function temporaryPathOf(path: string): string {
  return `${path}.compacting`;
}

function syncFolderOf(path: string): void {
  let folder: number | undefined;
  try {
    folder = openSync(dirname(path), "r");
    fsyncSync(folder);
  } catch {
    // Some systems cannot open or sync a folder; the rename is still atomic there.
  } finally {
    if (folder !== undefined) closeSync(folder);
  }
}

function readAt(descriptor: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  let read = 0;
  while (read < length) {
    const count = readSync(descriptor, buffer, read, length - read, position + read);
    if (count === 0) break; // the file shrank under us: use what was read
    read += count;
  }
  return buffer.subarray(0, read);
}

function dropTornLastLine(descriptor: number, path: string, log: (line: string) => void): void {
  const size = fstatSync(descriptor).size;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - HISTORY_BLOCK);
    const newline = readAt(descriptor, start, end - start).lastIndexOf(0x0a);
    if (newline >= 0) {
      end = start + newline + 1;
      break;
    }
    end = start;
  }
  if (end < size) {
    log(`history ${path}: the last line is incomplete (a crash during a write?); dropping ${size - end} bytes`);
    ftruncateSync(descriptor, end);
  }
}

/** One line of the file: the epoch, a message, or something else. */
function parseHistoryLine(line: string): { epoch: string } | ChatMessage | undefined {
  try {
    const record = JSON.parse(line) as Partial<ChatMessage> & { type?: string; epoch?: string };
    if (record.type === "epoch" && typeof record.epoch === "string") return { epoch: record.epoch };
    if (typeof record.seq !== "number" || typeof record.id !== "string" || typeof record.text !== "string") return;
    const sid = typeof record.sid === "string" ? record.sid : "";
    const { seq, id, text } = record;
    return { seq, id, sid, from: String(record.from), text, time: Number(record.time) };
  } catch {
    return undefined;
  }
}

/** The epoch: the first line of every file this server writes. A file
 * whose first line is not one (written by hand, or by an older version
 * that appended it later) is searched to its end, once: it is compacted
 * right after, with the epoch first. */
function readEpoch(
  descriptor: number,
  path: string,
  log: (line: string) => void,
): { epoch: string; onFirstLine: boolean } | undefined {
  let position = 0;
  let carry = "";
  let firstLine = true;
  for (
    let block = readAt(descriptor, 0, HISTORY_BLOCK);
    block.length > 0;
    block = readAt(descriptor, position, HISTORY_BLOCK)
  ) {
    position += block.length;
    const lines = (carry + block.toString("utf8")).split("\n");
    carry = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === "") continue;
      if (firstLine || line.includes('"epoch"')) {
        const parsed = parseHistoryLine(line);
        if (parsed !== undefined && "epoch" in parsed) return { epoch: parsed.epoch, onFirstLine: firstLine };
      }
      if (firstLine) log(`history ${path}: no epoch on the first line; looking for it further on`);
      firstLine = false;
    }
  }
  return undefined;
}

/** The last `keep` messages, oldest first, read backwards a block at a
 * time; and whether they are all the file holds. */
function readLastMessages(
  descriptor: number,
  keep: number,
  path: string,
  log: (line: string) => void,
): { messages: ChatMessage[]; readWholeFile: boolean } {
  const newestFirst: ChatMessage[] = [];
  let end = fstatSync(descriptor).size;
  let partial = Buffer.alloc(0); // the end of a line that begins in an earlier block
  // One message more than kept is looked for: it tells whether there are older ones.
  while (end > 0 && newestFirst.length <= keep) {
    const start = Math.max(0, end - HISTORY_BLOCK);
    let chunk = Buffer.concat([readAt(descriptor, start, end - start), partial]);
    end = start;
    partial = Buffer.alloc(0);
    if (start > 0) {
      const firstNewline = chunk.indexOf(0x0a);
      partial = firstNewline < 0 ? chunk : chunk.subarray(0, firstNewline);
      chunk = firstNewline < 0 ? Buffer.alloc(0) : chunk.subarray(firstNewline + 1);
    }
    const lines = chunk.toString("utf8").split("\n");
    for (let index = lines.length - 1; index >= 0 && newestFirst.length <= keep; index--) {
      const line = lines[index]!;
      if (line.trim() === "") continue;
      const parsed = parseHistoryLine(line);
      if (parsed === undefined) log(`history ${path}: a line is not a message; skipped`);
      else if (!("epoch" in parsed)) newestFirst.push(parsed);
    }
  }
  const readWholeFile = newestFirst.length <= keep;
  return { messages: newestFirst.slice(0, keep).reverse(), readWholeFile };
}

export function newEpoch(): string {
  return randomBytes(8).toString("hex");
}

// ── Where messages are numbered: this process, or Redis ─────────────────────

/** A message as the room hands it to its log: everything but its place. */
export type UnsequencedMessage = Omit<ChatMessage, "seq">;

/** What became of a message given to the log. An accepted one is not
 * returned: it reaches the room through `onMessage`, like every other. */
export type AppendOutcome =
  | { kind: "accepted" }
  | { kind: "duplicate"; message: ChatMessage }
  | { kind: "failed"; why: string };

/** What a log tells its room. */
export interface MessageLogEvents {
  /** Each accepted message, once, in seq order. */
  onMessage(message: ChatMessage): void;
  /** This process can no longer vouch for seqs it gave out (Redis lost or
   * rolled back the history: a new epoch; or it missed messages). */
  onHistoryBroken(why: string): void;
  /** Another server has `sid` now (undefined: no longer). */
  onRemotePresence?(host: string, sid: string, entry: HostedEntry | undefined): void;
  /** Everything another server has, read whole (at start-up, or after it re-published it). */
  onHostSnapshot?(host: string, entries: Map<string, HostedEntry>): void;
}

/** Where the room's messages get their seq and are kept. The room keeps
 * `history` (the last --history-size) for replays in either case. */
export interface MessageLog {
  readonly epoch: string;
  readonly history: History;
  /** Whether messages can be numbered now (Redis reachable). */
  readonly available: boolean;
  /** Numbers and keeps `message`, unless its id is in the history already. */
  append(message: UnsequencedMessage): AppendOutcome | Promise<AppendOutcome>;
  /** With Redis: the people of the room are shared with the other servers. */
  readonly presence?: SharedPresence;
  close(): void;
}

/** What a server has of one person: the name they hold, and whether they are away (in their grace) there. */
export interface HostedEntry {
  name: string;
  away: boolean;
}

/** The room's people across servers (Redis). */
export interface SharedPresence {
  /** This server's id among the room's servers: new at every start. */
  readonly hostId: string;
  /** Takes `name` for `sid` in the whole room; false when someone else holds it. */
  claimName(name: string, sid: string): Promise<boolean>;
  /** Gives `name` up, unless a server still has `sid` (`evenIfHosted`: a rename). */
  releaseName(name: string, sid: string, evenIfHosted?: boolean): void;
  /** Tells the other servers what this one has of `sid` now (undefined: nothing). */
  publish(sid: string, entry: HostedEntry | undefined): void;
}

/** The embedded log: this process numbers the messages, keeps them in
 * memory, and with --history appends them to a file first. */
export class LocalLog implements MessageLog {
  readonly history: History;
  readonly epoch: string;
  readonly available = true;
  private readonly file: HistoryFile | undefined;
  private readonly events: MessageLogEvents;
  private readonly log: (line: string) => void;

  constructor(
    options: { historySize: number; historyFile?: string | undefined; log: (line: string) => void },
    events: MessageLogEvents,
  ) {
    this.events = events;
    this.log = options.log;
    this.history = new History(options.historySize);
    if (options.historyFile === undefined) {
      this.epoch = newEpoch();
      return;
    }
    const { file, epoch, messages } = HistoryFile.open(options.historyFile, options.historySize, options.log);
    this.file = file;
    this.epoch = epoch;
    for (const message of messages) this.history.add(message);
    const next = this.history.latestSeq + 1;
    options.log(`history ${options.historyFile}: ${messages.length} messages kept, epoch ${epoch}, next seq ${next}`);
  }

  append(message: UnsequencedMessage): AppendOutcome {
    // Exactly once: a retried message is not sequenced again.
    const stored = this.history.find(message.id);
    if (stored !== undefined) return { kind: "duplicate", message: stored };
    const accepted: ChatMessage = { seq: this.history.latestSeq + 1, ...message };
    try {
      this.file?.append(accepted);
    } catch (error) {
      this.log(`history: could not write: ${describeError(error)}`);
      return { kind: "failed", why: describeError(error) };
    }
    this.history.add(accepted);
    this.events.onMessage(accepted);
    if (this.file?.needsCompaction) this.compactFile(this.file);
    return { kind: "accepted" };
  }

  close(): void {
    this.file?.close();
  }

  /** Cuts the file back to what is kept. A failure (a full disk) loses
   * nothing: the old file is whole until the new one replaces it. */
  private compactFile(file: HistoryFile): void {
    try {
      file.compact(this.history.kept());
    } catch (error) {
      this.log(`history: could not compact ${file.path}: ${describeError(error)}`);
    }
  }
}

// ── Who is who: sessions, public ids and names ──────────────────────────────
// A page makes a secret once per tab (`session` in the socket URL) and keeps
// it for as long as the tab lives. Everything the room knows about a person
// hangs on the *public* id derived from it, `sid`: a one-way hash, so the id
// can be shown to everyone, written to the history file and compared across
// restarts, while only the page itself can claim it. Names are not accounts:
// anyone may call themselves anything that is free. What a session protects
// is narrower and real: nobody else can take your name while you are away
// for a moment, nor see their messages marked as yours (我).

/** 16-64 characters of the base64url alphabet: 128 random bits and more. */
export function sessionIsValid(session: string): boolean {
  if (session.length < 16 || session.length > 64) return false;
  for (let index = 0; index < session.length; index++) {
    const code = session.charCodeAt(index);
    const isLetterOrDigit = (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
    if (!isLetterOrDigit && code !== 45 /* - */ && code !== 95 /* _ */) return false;
  }
  return true;
}

/** The public id of a session: base64url of the first 9 bytes (72 bits) of
 * its SHA-256. Nobody can turn it back into the secret, and the same secret
 * gives the same id on every server, after every restart. */
export function publicIdOf(session: string): string {
  return createHash("sha256").update(session).digest().subarray(0, 9).toString("base64url");
}

/** A secret for a connection that brought none (python, curl, a test): it
 * is never sent anywhere, so that identity can never come back. */
function newSecret(): string {
  return randomBytes(16).toString("base64url");
}

/** Why `name` cannot be anyone's name, or undefined when it can. */
function nameProblem(name: string): string | undefined {
  if (name === "") return "A name needs at least one character.";
  if (characterCount(name) > MAX_NAME_LENGTH || hasControlCharacter(name)) {
    return `A name has 1-${MAX_NAME_LENGTH} characters and no control characters.`;
  }
  return undefined;
}

/** What the room needs of a connection: it sends texts and prepared
 * broadcasts, fails a peer that breaks its rules, and switches the page's
 * inspector. A Connection is one; a test can hand in something simpler. */
export type RoomPeer = Pick<
  Connection,
  "id" | "handler" | "handshakeTrace" | "send" | "sendPrepared" | "sendUnobserved" | "fail" | "close" | "observers"
>;

/** One person as the room sees them: a public id, the name they hold, and
 * their open connections (several tabs sharing a session, or a reconnect
 * that arrived while the old, half-open connection was still there). */
interface Identity {
  readonly sid: string;
  name: string;
  readonly connections: Set<RoomPeer>;
  /** Whether the client chose the session: only then can it come back, so
   * only then is its name held through the grace. */
  readonly canReturn: boolean;
  /** While it has no connection: when its grace ends (clock time); else 0. */
  awayUntil: number;
}

/** The timers the room uses, handed in so tests can drive time by hand. */
export interface RoomClock {
  now(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const systemClock: RoomClock = {
  now: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs).unref(),
  clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

/**
 * Who holds which name, and who is away. A pure bookkeeper: it sends
 * nothing and keeps no timer; it answers questions and records changes, and
 * the room turns those into frames.
 *
 *   (new identity) ──first connection──▶ present ──last connection closes──▶ away
 *        away ──a connection of the same session within the grace──▶ present
 *        away ──grace over, or room for a newcomer needed──▶ gone (its name is free)
 *
 * Every identity holds exactly one name, and a name is held by at most one
 * identity, so both maps have the same size, bounded by `limit`.
 */
export class Identities {
  private readonly bySid = new Map<string, Identity>();
  private readonly byName = new Map<string, Identity>();
  /** Away identities, oldest first: every grace is as long, so this is also the order they expire in. */
  private readonly away = new Set<Identity>();
  private readonly limit: number;
  /** Where the search for a free 访客N starts: every number below it is taken. */
  private firstFreeGuest = defaultNames.length + 1;
  /** The same for a name asked for: every suffix below the hint is taken. Forgotten
   * whenever a name ending in a digit is freed, since that may be one of them. */
  private readonly firstFreeSuffix = new Map<string, number>();

  /** Whether a name is held elsewhere (by someone on another server). */
  private readonly heldElsewhere: (name: string) => boolean;

  constructor(limit: number, heldElsewhere: (name: string) => boolean = () => false) {
    this.limit = Math.max(1, limit);
    this.heldElsewhere = heldElsewhere;
  }

  get size(): number {
    return this.bySid.size;
  }

  /** Whether `name` is held, here or on another server. */
  isHeld(name: string): boolean {
    return this.byName.has(name) || this.heldElsewhere(name);
  }

  find(sid: string): Identity | undefined {
    return this.bySid.get(sid);
  }

  holderOf(name: string): Identity | undefined {
    return this.byName.get(name);
  }

  isAway(identity: Identity): boolean {
    return identity.connections.size === 0;
  }

  /** The away identity whose grace ends first. */
  oldestAway(): Identity | undefined {
    for (const identity of this.away) return identity;
    return undefined;
  }

  /** Whether a newcomer fits without sending someone away for good first. */
  hasRoom(): boolean {
    return this.bySid.size < this.limit;
  }

  add(sid: string, name: string, canReturn: boolean): Identity {
    const identity: Identity = { sid, name, connections: new Set(), canReturn, awayUntil: 0 };
    this.bySid.set(sid, identity);
    this.byName.set(name, identity);
    return identity;
  }

  rename(identity: Identity, name: string): void {
    this.byName.delete(identity.name);
    this.noteFreed(identity.name);
    identity.name = name;
    this.byName.set(name, identity);
  }

  markAway(identity: Identity, until: number): void {
    identity.awayUntil = until;
    this.away.add(identity);
  }

  markBack(identity: Identity): void {
    identity.awayUntil = 0;
    this.away.delete(identity);
  }

  remove(identity: Identity): void {
    this.bySid.delete(identity.sid);
    if (this.byName.get(identity.name) === identity) this.byName.delete(identity.name);
    this.noteFreed(identity.name);
    this.away.delete(identity);
  }

  /** A freed name may be below a search hint: move the hint back. */
  private noteFreed(name: string): void {
    if (!/\d$/.test(name)) return;
    this.firstFreeSuffix.clear();
    const guest = /^访客(\d+)$/.exec(name);
    if (guest !== null) this.firstFreeGuest = Math.min(this.firstFreeGuest, Number(guest[1]));
  }

  /** A name for someone who asked for `wanted`: it if free, else it with the
   * smallest number that is. A name held by an away identity is not free. */
  // Both searches below start where the last one ended (the plain search
  // starts at 2 or 5 every time): a crowd of 10,000 asking for one name, or
  // for none, would otherwise cost 50 million lookups.
  freeNameLike(wanted: string): string {
    if (!this.isHeld(wanted)) return wanted;
    if (this.firstFreeSuffix.size > this.limit) this.firstFreeSuffix.clear();
    for (let suffix = this.firstFreeSuffix.get(wanted) ?? 2; ; suffix++) {
      const ending = String(suffix);
      const candidate = [...wanted].slice(0, MAX_NAME_LENGTH - ending.length).join("") + ending;
      if (!this.isHeld(candidate)) {
        this.firstFreeSuffix.set(wanted, suffix);
        return candidate;
      }
    }
  }

  /** The first default name nobody holds: 小明, 小红, 小军, 小王, then 访客5, 访客6… */
  freeDefaultName(): string {
    for (const name of defaultNames) if (!this.isHeld(name)) return name;
    for (let number = this.firstFreeGuest; ; number++) {
      if (!this.isHeld(`访客${number}`)) {
        this.firstFreeGuest = number;
        return `访客${number}`;
      }
    }
  }
}

/** A change in who is in the room, as the room announces it. */
export type PresenceChange = PresenceMessage | RenamedMessage;

/**
 * Everyone in the room, on every server: each person (by sid) with the name
 * they hold and, for each server that hosts them (has one of their
 * connections, or their grace), whether they are away there. Without --redis
 * there is one host, this process; with it, every server keeps the same
 * directory from the others' announcements. Pure bookkeeping: it records
 * and answers, and returns what changed in the room's eyes:
 *
 *   nobody ──a host has them──▶ present ──every host has them away──▶ away
 *   away ──a host has them present──▶ present        any ──no host left──▶ left
 */
export class RoomDirectory {
  private readonly people = new Map<string, { name: string; hosts: Map<string, boolean> }>();
  private readonly byName = new Map<string, string>();
  private onlineCount = 0;

  /** Everyone, away or not. */
  get size(): number {
    return this.people.size;
  }

  /** Those present on at least one host. */
  get online(): number {
    return this.onlineCount;
  }

  /** The sid holding `name`, if anyone does. */
  holderOf(name: string): string | undefined {
    return this.byName.get(name);
  }

  stateOf(sid: string): "present" | "away" | undefined {
    const person = this.people.get(sid);
    if (person === undefined) return undefined;
    for (const away of person.hosts.values()) if (!away) return "present";
    return "away";
  }

  /** The name `sid` holds, if the room knows them. */
  nameOf(sid: string): string | undefined {
    return this.people.get(sid)?.name;
  }

  /** Records that `host` has `sid`, named `name`, away there or not. */
  set(host: string, sid: string, name: string, away: boolean): PresenceChange[] {
    const before = this.stateOf(sid);
    let person = this.people.get(sid);
    const changes: PresenceChange[] = [];
    if (person === undefined) {
      person = { name, hosts: new Map() };
      this.people.set(sid, person);
      this.byName.set(name, sid);
    } else if (person.name !== name) {
      changes.push({ type: "renamed", sid, from: person.name, to: name });
      if (this.byName.get(person.name) === sid) this.byName.delete(person.name);
      person.name = name;
      this.byName.set(name, sid);
    }
    person.hosts.set(host, away);
    return [...changes, ...this.transition(sid, name, before)];
  }

  /** Records that `host` no longer has `sid`. */
  unset(host: string, sid: string): PresenceChange[] {
    const person = this.people.get(sid);
    if (person === undefined || !person.hosts.has(host)) return [];
    const before = this.stateOf(sid);
    person.hosts.delete(host);
    if (person.hosts.size === 0) {
      this.people.delete(sid);
      if (this.byName.get(person.name) === sid) this.byName.delete(person.name);
    }
    return this.transition(sid, person.name, before);
  }

  /** The people `host` has. */
  sidsOf(host: string): string[] {
    const sids: string[] = [];
    for (const [sid, person] of this.people) if (person.hosts.has(host)) sids.push(sid);
    return sids;
  }

  /** At most `limit` people from the `offset`-th, in the order they arrived. */
  page(offset: number, limit: number): MemberView[] {
    const page: MemberView[] = [];
    if (offset >= this.people.size) return page;
    let index = 0;
    for (const [sid, person] of this.people) {
      if (index++ < offset) continue;
      page.push(this.stateOf(sid) === "away" ? { name: person.name, sid, away: true } : { name: person.name, sid });
      if (page.length === limit) break;
    }
    return page;
  }

  private transition(sid: string, name: string, before: "present" | "away" | undefined): PresenceMessage[] {
    const after = this.stateOf(sid);
    if (before === after) return [];
    if (before === "present") this.onlineCount--;
    if (after === "present") this.onlineCount++;
    const type = after === undefined ? "left" : before === undefined ? "joined" : after === "away" ? "away" : "back";
    return [{ type, name, sid }];
  }
}

/** How a member speaks: the JSON of the wire contract, or the plain text of
 * the tutorial's page on /text ("hello" answered "收到,hello"; lines "name:text"). */
export type Dialect = "json" | "text";

interface Member {
  identity: Identity;
  bucket: TokenBucket;
  /** Drains while messages are refused: sustained flooding closes with 1008. */
  patience: TokenBucket;
}

export interface ChatRoomOptions {
  historySize: number;
  historyFile?: string;
  messageRate: number;
  messageBurst: number;
  /** A replay longer than this many bytes is cut to its newest messages
   * (and the welcome says resumed: false), so a join never queues more than
   * a connection may hold. */
  replayBudgetBytes: number;
  /** How long a name stays with a session after its last connection closed. */
  nameGraceMs: number;
  /** At most this many identities, connected or away (--max-connections). */
  maxIdentities: number;
  /** Where messages are numbered (Redis, with --redis); this process by default. */
  messageLog?: (events: MessageLogEvents) => MessageLog;
  clock?: RoomClock;
  log: (line: string) => void;
}

/** A client's message before it is checked: any field may be missing or of any type. */
type UncheckedMessage = {
  [Field in "type" | "id" | "text" | "t" | "name" | "on" | "offset" | "before" | "hex" | "from"]?: unknown;
};

export class ChatRoom implements ConnectionHandler, MessageLogEvents {
  readonly members = new Map<RoomPeer, Member>();
  /** For /metrics: counts, never contents. */
  readonly counters = { received: 0, deliveries: 0, replayed: 0, historyResets: 0 };
  readonly identities: Identities;
  /** Everyone in the room, here and on other servers; `host` names this server in it. */
  readonly directory = new RoomDirectory();
  private readonly host: string;
  readonly log: MessageLog;
  /** Members on /text: they get chat messages as "name:text" lines, and nothing else the room says. */
  private readonly textMembers = new Set<RoomPeer>();
  /** Connections waiting for their name to be claimed on Redis, with what they sent meanwhile. */
  private readonly joining = new Map<RoomPeer, string[]>();
  /** Names another server's people hold that this directory did not know of yet (a claim failed). */
  private readonly claimedElsewhere = new Set<string>();
  private readonly options: ChatRoomOptions;
  private readonly clock: RoomClock;
  /** One timer for every grace: it wakes when the oldest one ends. */
  private graceTimer: unknown = undefined;
  /** Whether joins and leaves are summed up (see announce). */
  private presenceBatched = false;
  private pendingPresence: Omit<PresenceSummaryMessage, "type" | "memberCount" | "online"> | undefined;
  private presenceTimer: unknown = undefined;

  constructor(options: ChatRoomOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.identities = new Identities(
      options.maxIdentities,
      (name) => this.directory.holderOf(name) !== undefined || this.claimedElsewhere.has(name),
    );
    this.log = options.messageLog?.(this) ?? new LocalLog(options, this);
    this.host = this.log.presence?.hostId ?? "local";
  }

  /** Another server has `sid` now, or no longer (undefined). */
  onRemotePresence(host: string, sid: string, entry: HostedEntry | undefined): void {
    if (entry !== undefined) {
      const local = this.identities.find(sid);
      if (local !== undefined && local.name !== entry.name) this.identities.rename(local, entry.name);
    }
    this.announce(
      entry === undefined ? this.directory.unset(host, sid) : this.directory.set(host, sid, entry.name, entry.away),
    );
  }

  /** Everything another server has: what the directory had of it and is not in `entries` is gone. */
  onHostSnapshot(host: string, entries: Map<string, HostedEntry>): void {
    for (const sid of this.directory.sidsOf(host)) if (!entries.has(sid)) this.onRemotePresence(host, sid, undefined);
    for (const [sid, entry] of entries) this.onRemotePresence(host, sid, entry);
  }

  /** Records what this server has of `identity` now, tells the other servers, and announces what changed. */
  private record(identity: Identity, state: "present" | "away" | "gone", except?: RoomPeer): void {
    const { sid, name } = identity;
    const changes =
      state === "gone"
        ? this.directory.unset(this.host, sid)
        : this.directory.set(this.host, sid, name, state === "away");
    this.log.presence?.publish(sid, state === "gone" ? undefined : { name, away: state === "away" });
    this.announce(changes, except);
  }

  get epoch(): string {
    return this.log.epoch;
  }

  /** The last --history-size messages, for replays. */
  get history(): History {
    return this.log.history;
  }

  /** The log accepted a message: everyone gets it, its sender as the acknowledgement. */
  onMessage(message: ChatMessage): void {
    this.counters.deliveries += this.members.size;
    this.broadcast({ type: "message", ...message });
    for (const connection of this.textMembers) {
      const member = this.members.get(connection);
      if (member !== undefined) connection.send(this.asLine(message, member.identity));
    }
  }

  /** Everyone is sent away (1012) to come back and be welcomed again: with
   * resumed:false and the page's gap line where history was lost, instead
   * of seqs that silently mean something else. */
  onHistoryBroken(why: string): void {
    this.counters.historyResets++;
    this.options.log(`room: ${why}; every member reconnects`);
    this.closeEveryone(CloseCode.ServiceRestart, "history reset; reconnect");
  }

  /** Closes every connection in the room with `code`. */
  closeEveryone(code: number, reason: string): void {
    for (const connection of [...this.members.keys()]) connection.close(code, reason);
  }

  /** A new connection on `/`: find or make its identity, welcome it, replay what it missed. */
  join(connection: RoomPeer, query: URLSearchParams, dialect: Dialect = "json"): void {
    connection.handler = this;
    if (query.get("inspect") === "1") this.inspect(connection, true);
    const problems: Array<{ code: ErrorCode; message: string }> = [];
    const shared = this.log.presence;

    const session = query.get("session");
    const sessionIsOurs = session !== null && sessionIsValid(session);
    if (session !== null && !sessionIsOurs) {
      problems.push({
        code: "bad_session",
        message: "A session is 16-64 characters of A-Z, a-z, 0-9, - and _; you have a new identity.",
      });
    }
    const sid = publicIdOf(sessionIsOurs ? session : newSecret());
    if (shared !== undefined && this.identities.find(sid) === undefined) {
      // Another server may hold the name: it is claimed on Redis first, and
      // what the client sends meanwhile waits.
      this.joining.set(connection, []);
      void this.claimName(shared, sid, query.get("name")).then((choice) => {
        const waiting = this.joining.get(connection);
        if (waiting === undefined) return; // it closed meanwhile
        this.joining.delete(connection);
        if (choice.problem !== undefined) problems.push(choice.problem);
        this.admit(connection, query, sid, sessionIsOurs, problems, choice.name, dialect);
        for (const text of waiting) this.onText(connection, text);
      });
      return;
    }
    if (this.identities.find(sid) === undefined) this.makeRoomForNewcomer(); // before a name is chosen: it may free one
    const choice = this.identities.find(sid) === undefined ? this.chooseName(query.get("name")) : undefined;
    if (choice?.problem !== undefined) problems.push(choice.problem);
    this.admit(connection, query, sid, sessionIsOurs, problems, choice?.name, dialect);
  }

  /** A name for a newcomer, claimed in the whole room: someone the room
   * knows from another server keeps the name they hold there; a name
   * another server's person took first is counted as held, and the next tried. */
  private async claimName(
    shared: SharedPresence,
    sid: string,
    requested: string | null,
  ): Promise<{ name: string; problem?: { code: ErrorCode; message: string } }> {
    if (this.claimedElsewhere.size > 10_000) this.claimedElsewhere.clear();
    const known = this.directory.nameOf(sid);
    for (let attempt = 0; attempt < 20; attempt++) {
      const choice = known !== undefined && attempt === 0 ? { name: known } : this.chooseName(requested);
      const claimed = await shared.claimName(choice.name, sid).catch(() => true); // Redis down: the join goes on here
      if (claimed) return choice;
      this.claimedElsewhere.add(choice.name);
    }
    return this.chooseName(`访客${randomBytes(3).toString("hex")}`);
  }

  /** The connection joins as `sid`: its identity found, or made with `name`; welcomed; replayed to. */
  private admit(
    connection: RoomPeer,
    query: URLSearchParams,
    sid: string,
    canReturn: boolean,
    problems: Array<{ code: ErrorCode; message: string }>,
    name: string | undefined,
    dialect: Dialect,
  ): void {
    let identity = this.identities.find(sid);
    if (identity === undefined) {
      this.makeRoomForNewcomer();
      identity = this.identities.add(sid, name ?? this.identities.freeDefaultName(), canReturn);
    } else if (this.identities.isAway(identity)) {
      this.identities.markBack(identity);
    }
    identity.connections.add(connection);
    this.members.set(connection, {
      identity,
      bucket: new TokenBucket(this.options.messageRate, this.options.messageBurst, this.clock.now),
      patience: new TokenBucket(this.options.messageRate, this.options.messageBurst * 2, this.clock.now),
    });

    // A second connection of someone already here changes nothing anyone sees.
    if (identity.connections.size === 1) this.record(identity, "present", connection);
    if (dialect === "text") {
      // The tutorial's page knows no welcome: it is shown the newest messages as lines, and no more.
      this.textMembers.add(connection);
      for (const message of this.history.newest(HISTORY_PAGE)) connection.send(this.asLine(message, identity));
      return;
    }

    // Resume: `since` means something only in the epoch it came from.
    const sinceText = query.get("since") ?? "";
    const since = sinceText.trim() === "" ? 0 : Number(sinceText);
    const clientEpoch = query.get("epoch");
    const sinceIsValid = Number.isSafeInteger(since) && since >= 0;
    const sameEpoch = clientEpoch === null || clientEpoch === this.epoch;
    const resumed =
      sinceText.trim() !== "" &&
      sinceIsValid &&
      sameEpoch &&
      since >= this.history.oldestSeq - 1 &&
      since <= this.history.latestSeq;
    // A resume gets everything it missed; anyone else the newest page, and asks for older ones.
    const missed = resumed ? this.history.since(since) : this.history.newest(HISTORY_PAGE);
    const replay = this.encodeReplay(missed);
    const firstPage = this.directory.page(0, MEMBER_PAGE);
    this.sendTo(connection, {
      type: "welcome",
      name: identity.name,
      you: identity.sid,
      users: firstPage.map((each) => each.name),
      members: firstPage,
      memberCount: this.directory.size,
      online: this.directory.online,
      presenceBatched: this.presenceBatched,
      seq: this.history.latestSeq,
      oldestSeq: this.history.oldestSeq,
      epoch: this.epoch,
      resumed: resumed && replay.complete,
    });
    for (const problem of problems) this.sendError(connection, problem.code, problem.message);
    for (const frame of replay.frames) connection.send(frame);
    this.counters.replayed += replay.frames.length;
  }

  /** The replay as JSON texts: the newest that fit the budget, in order (a
   * client far behind gets what is most recent). */
  private encodeReplay(messages: ChatMessage[]): { frames: string[]; complete: boolean } {
    const { texts, all } = this.newestWithinBudget(messages, (message) =>
      JSON.stringify({ type: "message", ...message }),
    );
    return { frames: texts, complete: all };
  }

  /** The newest of `messages` whose encodings fit the replay budget together,
   * encoded, oldest first; only those are encoded, newest first. */
  private newestWithinBudget(
    messages: ChatMessage[],
    encode: (message: ChatMessage) => string,
  ): { texts: string[]; all: boolean } {
    const texts: string[] = [];
    let bytes = 0;
    for (let index = messages.length - 1; index >= 0; index--) {
      const text = encode(messages[index]!);
      bytes += Buffer.byteLength(text);
      if (bytes > this.options.replayBudgetBytes) return { texts: texts.reverse(), all: false };
      texts.push(text);
    }
    return { texts: texts.reverse(), all: true };
  }

  onText(connection: RoomPeer, text: string): void {
    const member = this.members.get(connection);
    if (member === undefined) {
      const waiting = this.joining.get(connection);
      if (waiting !== undefined && waiting.length < this.options.messageBurst) waiting.push(text);
      return;
    }
    if (!member.bucket.take()) {
      if (!member.patience.take()) return connection.fail("message_flood");
      return this.sendError(
        connection,
        "rate_limited",
        `Slow down: at most ${this.options.messageRate} messages a second.`,
      );
    }
    if (this.textMembers.has(connection)) return this.onLine(connection, member, text);
    let message: UncheckedMessage;
    try {
      message = JSON.parse(text) as UncheckedMessage;
    } catch {
      return this.sendError(connection, "bad_json", "That was not JSON; send one JSON object per message.");
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      return this.sendError(connection, "bad_message", 'Send one JSON object with a "type".');
    }
    switch (message.type) {
      case "say":
        return this.say(connection, member, message);
      case "rename":
        return this.rename(connection, member.identity, message.name);
      case "ping":
        return this.sendTo(connection, { type: "pong", t: message.t });
      case "inspect":
        if (typeof message.on !== "boolean")
          return this.sendError(connection, "bad_message", 'An "inspect" request has "on": true or false.');
        return this.inspect(connection, message.on);
      case "members":
        return this.sendMembers(connection, message.offset);
      case "history":
        return this.sendHistoryPage(connection, message.before);
      case "decode":
        return this.decode(connection, message.hex, message.from);
      default:
        return this.sendError(
          connection,
          "unknown_type",
          `Unknown message type ${JSON.stringify(message.type ?? null)}; ` +
            `expected "say", "rename", "ping", "members", "history", "decode" or "inspect".`,
        );
    }
  }

  /** A text frame on /text: "hello" is the tutorial page's heartbeat, answered
   * to that page alone (the tutorial's own server answered everyone); any
   * other text is said in the room like a `say`, with an id of its own. */
  private onLine(connection: RoomPeer, member: Member, text: string): void {
    if (text === "hello") return void connection.send("收到,hello");
    this.say(connection, member, { type: "say", id: randomUUID(), text });
  }

  /** A chat message as the tutorial's page shows it: "name:text", or "我:text" for its own. */
  private asLine(message: ChatMessage, reader: Identity): string {
    return `${message.sid === reader.sid && message.sid !== "" ? "我" : message.from}:${message.text}`;
  }

  /** {"type":"decode","hex","from"}: the frame lab on the page. A fresh
   * decoder for these bytes alone: nothing of this connection or the room is touched. */
  private decode(connection: RoomPeer, hex: unknown, from: unknown): void {
    const bytes = typeof hex === "string" ? parseHex(hex) : 'A "decode" request has "hex": the bytes, as hex.';
    if (typeof bytes === "string") return this.sendError(connection, "bad_message", `Frame lab: ${bytes}`);
    const { lines, outcome } = walkFrames(bytes, from === "server");
    this.sendTo(connection, { type: "decoded", lines, outcome });
  }

  /** {"type":"members","offset"}: a page of the member list. */
  private sendMembers(connection: RoomPeer, offset: unknown = 0): void {
    if (!Number.isSafeInteger(offset) || (offset as number) < 0)
      return this.sendError(connection, "bad_message", 'A "members" request has an "offset": an integer, 0 or more.');
    this.sendTo(connection, this.membersPage(offset as number));
  }

  private membersPage(offset: number): MembersMessage {
    return {
      type: "members",
      offset,
      memberCount: this.directory.size,
      online: this.directory.online,
      presenceBatched: this.presenceBatched,
      members: this.directory.page(offset, MEMBER_PAGE),
    };
  }

  /** {"type":"history","before"}: the newest HISTORY_PAGE messages before
   * seq `before`, as many as fit the replay budget. */
  private sendHistoryPage(connection: RoomPeer, before: unknown = this.history.latestSeq + 1): void {
    if (!Number.isSafeInteger(before) || (before as number) < 0)
      return this.sendError(connection, "bad_message", 'A "history" request has "before": a seq, 0 or more.');
    const page = this.history.before(before as number, HISTORY_PAGE);
    // Each counted as it stands in the answer's list: its JSON and a comma.
    const fitting = this.newestWithinBudget(page.messages, (message) => JSON.stringify(message) + ",");
    const first = page.messages.length - fitting.texts.length;
    const messages = page.messages.slice(first);
    this.counters.replayed += messages.length;
    this.sendTo(connection, { type: "history", before: before as number, messages, more: page.more || first > 0 });
  }

  /** The page's frame inspector: from now on this connection is told about
   * its own frames, starting with its handshake when that was kept. */
  private inspect(connection: RoomPeer, on: boolean): void {
    if (!on) return connection.observers.remove(inspector);
    if (connection.observers.has(inspector)) return;
    connection.observers.add(inspector);
    inspector.sendHandshake(connection);
  }

  onBinary(connection: RoomPeer): void {
    connection.fail("unsupported_data");
  }

  /** A connection ended. Its identity leaves only when it was the last one,
   * and only after the grace if the client can come back to claim it. */
  onClose(connection: RoomPeer): void {
    this.joining.delete(connection);
    this.textMembers.delete(connection);
    const member = this.members.get(connection);
    if (member === undefined) return;
    this.members.delete(connection);
    const { identity } = member;
    identity.connections.delete(connection);
    if (identity.connections.size > 0) return;
    if (!identity.canReturn || this.options.nameGraceMs <= 0) return this.endIdentity(identity);
    this.identities.markAway(identity, this.clock.now() + this.options.nameGraceMs);
    this.record(identity, "away");
    this.scheduleGraceEnd();
  }

  /** Ends the identity for good: its name is free and everyone is told it left. */
  private endIdentity(identity: Identity): void {
    this.identities.remove(identity);
    this.record(identity, "gone");
    this.log.presence?.releaseName(identity.name, identity.sid);
  }

  // ── Presence: one frame per change in a small room, a summary a second in a large one ──
  // Plain: every join is a frame to every member. A crowd of N arriving at
  // once then costs N² frames (3,000 clients: 4.5 million frames, 25 s of
  // CPU before the last is welcomed). Above PRESENCE_BATCH_ABOVE members,
  // each member gets at most one `presence` frame a PRESENCE_INTERVAL_MS.

  /** Tells the room what the directory says changed: someone joined, went
   * away, came back, left, or renamed (a rename always goes out alone). */
  private announce(changes: PresenceChange[], except?: RoomPeer): void {
    for (const change of changes) {
      if (this.directory.size > PRESENCE_BATCH_ABOVE) this.presenceBatched = true;
      if (change.type === "renamed" || !this.presenceBatched) {
        this.broadcast(change, except);
        continue;
      }
      const pending = (this.pendingPresence ??= { joinedCount: 0, joined: [], leftCount: 0, left: [] });
      if (change.type === "joined" || change.type === "left") {
        const sample = change.type === "joined" ? pending.joined : pending.left;
        if (sample.length < PRESENCE_SAMPLE) sample.push({ name: change.name, sid: change.sid });
        if (change.type === "joined") pending.joinedCount++;
        else pending.leftCount++;
      }
      this.presenceTimer ??= this.clock.setTimeout(() => this.sendPresenceSummary(), PRESENCE_INTERVAL_MS);
    }
  }

  /** The summary of the last interval; and when the room has become small,
   * the whole member list, after which changes go out one by one again. */
  private sendPresenceSummary(): void {
    this.presenceTimer = undefined;
    const pending = this.pendingPresence ?? { joinedCount: 0, joined: [], leftCount: 0, left: [] };
    this.pendingPresence = undefined;
    const counts = { memberCount: this.directory.size, online: this.directory.online };
    this.broadcast({ type: "presence", ...counts, ...pending });
    if (this.directory.size <= PRESENCE_BATCH_ABOVE) {
      this.presenceBatched = false;
      this.broadcast(this.membersPage(0));
    }
  }

  /** Arms the one grace timer for the oldest away identity, unless it is armed. */
  private scheduleGraceEnd(): void {
    if (this.graceTimer !== undefined) return;
    const oldest = this.identities.oldestAway();
    if (oldest === undefined) return;
    this.graceTimer = this.clock.setTimeout(
      () => {
        this.graceTimer = undefined;
        this.endExpiredGraces();
      },
      Math.max(0, oldest.awayUntil - this.clock.now()),
    );
  }

  private endExpiredGraces(): void {
    const now = this.clock.now();
    for (
      let oldest = this.identities.oldestAway();
      oldest !== undefined && oldest.awayUntil <= now;
      oldest = this.identities.oldestAway()
    ) {
      this.endIdentity(oldest);
    }
    this.scheduleGraceEnd();
  }

  /** Identities are bounded: a flood of new sessions ends the oldest graces
   * early. There is always one to end, since the connected identities are
   * fewer than the connections, which are bounded by the same limit. */
  private makeRoomForNewcomer(): void {
    while (!this.identities.hasRoom()) {
      const oldest = this.identities.oldestAway();
      if (oldest === undefined) return;
      this.endIdentity(oldest);
    }
  }

  /** {"type":"rename","name"}: the identity takes a free name, and everyone
   * is told once; a bad or taken name is refused and the old one stays. */
  private rename(connection: RoomPeer, identity: Identity, requested: unknown): void {
    const wanted = typeof requested === "string" ? requested.trim() : "";
    const problem = typeof requested === "string" ? nameProblem(wanted) : 'A rename needs a "name".';
    if (problem !== undefined) return this.sendError(connection, "bad_name", `${problem} You stay ${identity.name}.`);
    if (wanted === identity.name) return;
    if (this.identities.isHeld(wanted))
      return this.sendError(connection, "name_taken", `${wanted} is taken; you stay ${identity.name}.`);
    const shared = this.log.presence;
    if (shared === undefined) return this.applyRename(identity, wanted);
    void shared.claimName(wanted, identity.sid).then((claimed) => {
      if (!claimed) return this.sendError(connection, "name_taken", `${wanted} is taken; you stay ${identity.name}.`);
      // The old name is let go before the rename is announced: Redis runs this server's commands in order, so
      // whoever hears "renamed" can take the old name at once.
      shared.releaseName(identity.name, identity.sid, true);
      this.applyRename(identity, wanted);
    });
  }

  private applyRename(identity: Identity, name: string): void {
    this.identities.rename(identity, name);
    this.record(identity, this.identities.isAway(identity) ? "away" : "present");
  }

  private say(connection: RoomPeer, member: Member, message: UncheckedMessage): void {
    const { id, text } = message;
    if (typeof id !== "string" || id === "" || id.length > MAX_ID_LENGTH) {
      return this.sendError(
        connection,
        "bad_id",
        `A message needs an "id": a unique string of 1-${MAX_ID_LENGTH} characters.`,
      );
    }
    if (typeof text !== "string" || text.trim() === "")
      return this.sendError(connection, "empty_text", 'A message needs some "text".', id);
    if (text.length > MAX_TEXT_LENGTH && characterCount(text) > MAX_TEXT_LENGTH) {
      return this.sendError(connection, "text_too_long", `A message has at most ${MAX_TEXT_LENGTH} characters.`, id);
    }
    const { identity } = member;
    const outcome = this.log.append({ id, sid: identity.sid, from: identity.name, text, time: Date.now() });
    if (outcome instanceof Promise) void outcome.then((result) => this.answerSay(connection, id, result));
    else this.answerSay(connection, id, outcome);
  }

  /** A retried message gets its stored copy, to its sender only; one that
   * could not be stored gets storage_failed, and the client sends it again. */
  private answerSay(connection: RoomPeer, id: string, outcome: AppendOutcome): void {
    if (outcome.kind === "accepted") this.counters.received++;
    if (outcome.kind === "duplicate") return this.sendTo(connection, { type: "message", ...outcome.message });
    if (outcome.kind === "failed")
      this.sendError(connection, "storage_failed", "The server could not store your message; send it again.", id);
  }

  /** Picks the name for a newcomer. A requested name is trimmed, checked,
   * and made unique with a number; without one, the next free default. */
  private chooseName(requested: string | null): { name: string; problem?: { code: ErrorCode; message: string } } {
    const wanted = requested?.trim() ?? "";
    if (wanted === "") return { name: this.identities.freeDefaultName() };
    const problem = nameProblem(wanted);
    if (problem !== undefined) {
      const name = this.identities.freeDefaultName();
      return { name, problem: { code: "bad_name", message: `${problem} You are ${name}.` } };
    }
    const name = this.identities.freeNameLike(wanted);
    if (name === wanted) return { name };
    return { name, problem: { code: "name_taken", message: `${wanted} is taken; you are ${name}.` } };
  }

  private sendTo(connection: RoomPeer, message: ServerMessage): void {
    if (!this.textMembers.has(connection)) return void connection.send(JSON.stringify(message));
    // The tutorial's page shows every line it gets: only what it can read goes to it.
    if (message.type === "error") connection.send(`错误:${message.message}`);
  }

  /** An error about a `say` carries its id, so the client knows which message it was. */
  private sendError(connection: RoomPeer, code: ErrorCode, message: string, id?: string): void {
    this.sendTo(connection, id === undefined ? { type: "error", code, message } : { type: "error", code, message, id });
  }

  /** Encodes once, sends the same bytes to everyone (but `except`). */
  private broadcast(message: ServerMessage, except?: RoomPeer): void {
    const prepared = new PreparedMessage(JSON.stringify(message));
    for (const connection of this.members.keys()) {
      if (connection !== except && !this.textMembers.has(connection)) connection.sendPrepared(prepared);
    }
  }

  close(): void {
    if (this.graceTimer !== undefined) this.clock.clearTimeout(this.graceTimer);
    if (this.presenceTimer !== undefined) this.clock.clearTimeout(this.presenceTimer);
    this.graceTimer = this.presenceTimer = undefined;
    this.log.close();
  }
}

// ════════════════════════════════════════════════════════════════════════════
// 11. Many processes, one room: a Redis client (RESP2)
//
// With --redis, the room's state lives in Redis, so that any number of these
// processes serve one room. Redis speaks RESP2, a protocol as small as
// WebSocket framing and read the same way: a sans-I/O parser (bytes in,
// whole replies out), then a thin connection around it. Every command is
// an array of bulk strings; every reply starts with a type byte:
//
//   +OK\r\n            simple string        -ERR wrong\r\n     error
//   :42\r\n            integer              $5\r\nhello\r\n    bulk string ($-1: null)
//   *2\r\n$1\r\na\r\n:1\r\n   array of two ( *-1: null array, XREAD's "nothing came")
//
// Replies come back in the order commands were sent (pipelining: many
// commands may be in flight on one connection), so a reply is matched to
// its command by position alone. That is also why a command that times out
// ends the connection: its reply may still come, and every later reply
// would be matched to the wrong command.
// ════════════════════════════════════════════════════════════════════════════

/** An error reply (`-ERR …`, `-NOSCRIPT …`): Redis refused the command. */
export class RedisReplyError extends Error {
  /** The first word: ERR, NOSCRIPT, WRONGTYPE, NOAUTH… */
  readonly code: string;
  constructor(message: string) {
    super(message);
    this.code = message.split(" ", 1)[0]!;
  }
}

export type RespReply = string | number | null | RedisReplyError | RespReply[];

/** A command as RESP2 bytes: an array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | number>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const argument of args) {
    const bytes = Buffer.from(String(argument), "utf8");
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, CRLF);
  }
  return Buffer.concat(parts);
}

const CRLF = Buffer.from("\r\n");

/** The byte stream was not RESP2: the connection cannot be trusted any more. */
export class RespProtocolError extends Error {}

/** RESP2 replies from bytes that arrive in chunks of any size: a reply may be
 * split anywhere, and one chunk may hold several. Sans-I/O, like FrameDecoder. */
export class RespParser {
  private pending: Buffer = Buffer.alloc(0);

  /** Bytes in; every reply they complete out, in order. Throws RespProtocolError. */
  receive(chunk: Buffer): RespReply[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const replies: RespReply[] = [];
    let offset = 0;
    for (let parsed = readReply(this.pending, offset); parsed !== undefined; parsed = readReply(this.pending, offset)) {
      replies.push(parsed.reply);
      offset = parsed.end;
    }
    this.pending = this.pending.subarray(offset);
    return replies;
  }
}

/** One reply starting at `offset`, and where it ends; undefined until all of it has arrived. */
function readReply(buffer: Buffer, offset: number): { reply: RespReply; end: number } | undefined {
  const lineEnd = buffer.indexOf(CRLF, offset);
  if (lineEnd < 0) return undefined;
  const type = buffer[offset];
  const line = buffer.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b /* + */:
      return { reply: line, end: next };
    case 0x2d /* - */:
      return { reply: new RedisReplyError(line), end: next };
    case 0x3a /* : */:
      return { reply: integerOf(line), end: next };
    case 0x24 /* $ */: {
      const length = integerOf(line);
      if (length < 0) return { reply: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { reply: buffer.toString("utf8", next, next + length), end: next + length + 2 };
    }
    case 0x2a /* * */: {
      const count = integerOf(line);
      if (count < 0) return { reply: null, end: next };
      const items: RespReply[] = [];
      let end = next;
      for (let index = 0; index < count; index++) {
        const item = readReply(buffer, end);
        if (item === undefined) return undefined;
        items.push(item.reply);
        end = item.end;
      }
      return { reply: items, end };
    }
    default:
      throw new RespProtocolError(`not a RESP2 reply: type byte ${type}`);
  }
}

function integerOf(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RespProtocolError(`not an integer: ${JSON.stringify(text)}`);
  return value;
}

/** --redis redis://[user:password@]host:port[/db] */
export interface RedisAddress {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  db: number;
}

/** The address in a redis:// URL, or why it is not one. */
export function parseRedisUrl(text: string): RedisAddress | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `not a URL: expected redis://[user:password@]host:port[/db]`;
  }
  if (url.protocol !== "redis:") return `only redis:// is supported, not ${url.protocol}//`;
  const db = url.pathname === "" || url.pathname === "/" ? 0 : Number(url.pathname.slice(1));
  if (!Number.isSafeInteger(db) || db < 0) return `the database must be a number, 0 or more, not ${url.pathname}`;
  const port = url.port === "" ? 6379 : Number(url.port);
  return {
    host: url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
    port,
    username: url.username === "" ? undefined : decodeURIComponent(url.username),
    password: url.password === "" ? undefined : decodeURIComponent(url.password),
    db,
  };
}

/** A command waiting for its reply. */
interface PendingCommand {
  resolve(reply: RespReply): void;
  reject(error: Error): void;
  /** The reply is due by then (Date.now), or the connection is given up on. */
  dueBy: number;
}

/** One TCP connection to Redis: commands out, replies matched first in
 * first out, and a deadline for each. When a reply is late (a Redis that
 * is down, or a network that drops packets without a word), the connection
 * is destroyed and every command waiting on it fails: nothing later could
 * be matched to its command again. */
export class RedisLink {
  private readonly socket: Socket;
  private readonly parser = new RespParser();
  private readonly waiting: PendingCommand[] = [];
  private readonly timer = new DeadlineTimer(() => this.checkDeadlines());
  private closedBecause: Error | undefined;
  private readonly onClose: (why: Error) => void;
  /** This connection's socket, batched a turn at a time (section 7). */
  private readonly output: BatchedSocket;

  constructor(address: RedisAddress, onClose: (why: Error) => void) {
    this.onClose = onClose;
    this.socket = connectTcp({ host: address.host, port: address.port });
    this.output = { batched: false, socket: this.socket };
    this.socket.setNoDelay(true);
    this.socket.on("data", (chunk: Buffer) => this.receive(chunk));
    this.socket.on("error", (error) => this.end(error));
    this.socket.on("close", () => this.end(new Error("the connection to Redis closed")));
  }

  get isOpen(): boolean {
    return this.closedBecause === undefined;
  }

  /** Resolves once the TCP connection is up. */
  connected(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) return reject(this.closedBecause);
      const timer = setTimeout(() => {
        this.end(new Error(`no connection to Redis within ${timeoutMs} ms`));
        reject(this.closedBecause);
      }, timeoutMs);
      this.socket.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.once("close", () => {
        clearTimeout(timer);
        reject(this.closedBecause);
      });
    });
  }

  /** Sends one command; its reply (an error reply rejects) within `timeoutMs`. */
  send(args: ReadonlyArray<string | number>, timeoutMs: number): Promise<RespReply> {
    if (this.closedBecause !== undefined) return Promise.reject(this.closedBecause);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject, dueBy: Date.now() + timeoutMs });
      batchWritesThisTurn(this.output); // commands of one turn leave in one write, as frames do
      this.socket.write(encodeCommand(args));
      this.timer.set(this.waiting[0]!.dueBy);
    });
  }

  close(): void {
    this.end(new Error("the connection to Redis was closed"));
  }

  private receive(chunk: Buffer): void {
    let replies: RespReply[];
    try {
      replies = this.parser.receive(chunk);
    } catch (error) {
      return this.end(error instanceof Error ? error : new Error(String(error)));
    }
    for (const reply of replies) {
      const command = this.waiting.shift();
      if (command === undefined) return this.end(new RespProtocolError("a reply to no command"));
      if (reply instanceof RedisReplyError) command.reject(reply);
      else command.resolve(reply);
    }
    this.timer.set(this.waiting[0]?.dueBy ?? Infinity);
  }

  private checkDeadlines(): void {
    const oldest = this.waiting[0];
    if (oldest === undefined) return;
    if (oldest.dueBy > Date.now()) return this.timer.set(oldest.dueBy);
    this.end(new Error("Redis did not answer in time"));
  }

  private end(why: Error): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = why;
    this.timer.set(Infinity);
    this.socket.destroy();
    for (const command of this.waiting.splice(0)) command.reject(why);
    this.onClose(why);
  }
}

/** A Lua script run by its SHA1 (EVALSHA), so its text is sent once per connection. */
export class RedisScript {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash("sha1").update(source).digest("hex");
  }
}

export interface RedisClientOptions {
  /** How long a reply may take before the connection is given up on. */
  timeoutMs: number;
  /** Loaded on every new connection (a restarted Redis has forgotten them). */
  scripts: readonly RedisScript[];
}

/** A connection to Redis that is made again when it is lost. On every new
 * connection it authenticates, selects the database, learns Redis's run id
 * (new at every start of the Redis process) and loads the scripts. Nothing is
 * retried here: a caller knows whether its command may be sent twice. */
export class RedisClient {
  private readonly address: RedisAddress;
  private readonly options: RedisClientOptions;
  private link: RedisLink | undefined;
  private opening: Promise<RedisLink> | undefined;
  /** `run_id` from INFO on the current connection: a different one means Redis restarted. */
  runId = "";

  constructor(address: RedisAddress, options: RedisClientOptions) {
    this.address = address;
    this.options = options;
  }

  /** Sends a command, connecting first if there is no connection. */
  async command(args: ReadonlyArray<string | number>, extraTimeMs = 0): Promise<RespReply> {
    const link = await this.connection();
    return link.send(args, this.options.timeoutMs + extraTimeMs);
  }

  /** Runs a script. After SCRIPT FLUSH Redis answers NOSCRIPT: load it and run it once more.
   * `args` may be a function: it is asked once connected, so that it sees this connection's runId. */
  async run(
    script: RedisScript,
    keys: readonly string[],
    args: ReadonlyArray<string | number> | (() => ReadonlyArray<string | number>),
  ): Promise<RespReply> {
    const link = await this.connection();
    const call = ["EVALSHA", script.sha, keys.length, ...keys, ...(typeof args === "function" ? args() : args)];
    try {
      return await link.send(call, this.options.timeoutMs);
    } catch (error) {
      if (!(error instanceof RedisReplyError) || error.code !== "NOSCRIPT") throw error;
      await link.send(["SCRIPT", "LOAD", script.source], this.options.timeoutMs);
      return link.send(call, this.options.timeoutMs);
    }
  }

  close(): void {
    this.link?.close();
  }

  private connection(): Promise<RedisLink> {
    if (this.link?.isOpen) return Promise.resolve(this.link);
    this.opening ??= this.open().finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async open(): Promise<RedisLink> {
    const { timeoutMs, scripts } = this.options;
    const link = new RedisLink(this.address, () => {
      if (this.link === link) this.link = undefined;
    });
    await link.connected(timeoutMs);
    const { username, password, db } = this.address;
    if (password !== undefined)
      await link.send(username === undefined ? ["AUTH", password] : ["AUTH", username, password], timeoutMs);
    if (db !== 0) await link.send(["SELECT", db], timeoutMs);
    const info = await link.send(["INFO", "server"], timeoutMs);
    this.runId = /run_id:(\w+)/.exec(String(info))?.[1] ?? "";
    for (const script of scripts) await link.send(["SCRIPT", "LOAD", script.source], timeoutMs);
    this.link = link;
    return link;
  }
}

// ── The room's messages on Redis ────────────────────────────────────────────
// The same contract as LocalLog, over many processes. Redis decides the
// order: one script checks the id, takes the next seq and appends the
// message to a stream whose entry ids are `<seq>-0`, atomically. Every
// process reads that stream from the last seq it has (XREAD BLOCK on a
// connection of its own: a blocking read holds up whatever is pipelined
// behind it) and hands each message to its room once, in seq order. Its
// memory History is only a copy of the stream's tail, for replays.

/** One room's keys. The braces are a hash tag: on Redis Cluster all of a
 * room's keys live on one node, so one script may use them together. */
export function roomKeys(room: string) {
  const prefix = `chat:{${room}}:`;
  return {
    meta: `${prefix}meta`,
    stream: `${prefix}messages`,
    ids: `${prefix}ids`,
    names: `${prefix}names`,
    hosts: `${prefix}hosts`,
    presence: `${prefix}presence`,
    /** Followed by a server's id: whom that server has. */
    hostPrefix: `${prefix}host:`,
  };
}

// The state check both scripts begin with. The history was lost, and the
// epoch must change, when the meta hash is gone (a Redis without persistence
// restarted, FLUSHALL, an eviction), when the stream or the id set is gone
// while seq says messages were written, or when Redis restarted (a new run
// id) with a seq lower than one this process has seen: a restore from an
// older snapshot, which would hand out the same seqs again.
// ARGV: 1 run id, 2 the caller's epoch, 3 the highest seq it has seen, 4 a new epoch, 5 messages kept.
const checkRoomLua = `
local meta, stream, ids = KEYS[1], KEYS[2], KEYS[3]
local keep = tonumber(ARGV[5])
local epoch = redis.call('HGET', meta, 'epoch')
local seq = tonumber(redis.call('HGET', meta, 'seq') or 0)
local runid = redis.call('HGET', meta, 'runid')
local lost = (not epoch)
  or (seq > 0 and (redis.call('EXISTS', stream) == 0 or redis.call('EXISTS', ids) == 0))
  or (runid ~= ARGV[1] and epoch == ARGV[2] and seq < tonumber(ARGV[3]))
if lost then
  epoch = ARGV[4]
  seq = 0
  redis.call('DEL', stream, ids)
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0, 'runid', ARGV[1])
elseif runid ~= ARGV[1] then
  redis.call('HSET', meta, 'runid', ARGV[1])
end
`;

/** Returns {epoch, seq}. */
export const checkRoomScript = new RedisScript(checkRoomLua + "return {epoch, seq}\n");

/** ARGV 6-10: id, sid, from, text, time. Returns {epoch, seq, 1 if the id was seen (seq is then its seq)}. */
export const appendMessageScript = new RedisScript(
  checkRoomLua +
    `
local seen = redis.call('ZSCORE', ids, ARGV[6])
if seen then return {epoch, tonumber(seen), 1} end
seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('XADD', stream, 'MAXLEN', keep, seq .. '-0', 'id', ARGV[6], 'sid', ARGV[7], 'from', ARGV[8], 'text', ARGV[9], 'time', ARGV[10])
redis.call('ZADD', ids, seq, ARGV[6])
redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - keep)
return {epoch, seq, 0}
`,
);

/** How long one XREAD waits for new entries before the state is checked again. */
const READ_BLOCK_MS = 1000;
/** Entries one XREAD takes: what a turn of the event loop queues for each client is at most this many messages. */
const READ_BATCH = 100;
/** How often Redis is asked whether it is there (PING) when nothing else is said. */
const REDIS_PROBE_MS = 1000;
/** How long a server keeps its chat clients while Redis is unreachable, before it closes them with 1013. */
export const REDIS_OUTAGE_CLOSE_MS = 5000;

// ── The room's people on Redis ──────────────────────────────────────────────
// Each server publishes whom it has: a hash per server (sid → away flag and
// name) and an event on a presence stream for every change, which every
// server reads with the messages and applies to its RoomDirectory. Names are
// claimed in one hash (name → sid), so a name held on one server cannot be
// taken on another. A server proves it is alive by moving its deadline in a
// sorted set every second; a server past its deadline (killed, cut off) is
// reaped by whichever server notices first: its people are announced gone
// and their names freed, unless another server has them too.

/** How long a server counts as alive after it last said so. */
export const HOST_TTL_MS = 10_000;

// KEYS: host hash, hosts, presence stream. ARGV: host, sid, name, away (0/1), gone (0/1), alive until.
const publishHostedScript = new RedisScript(`
if ARGV[5] == '1' then redis.call('HDEL', KEYS[1], ARGV[2]) else redis.call('HSET', KEYS[1], ARGV[2], ARGV[4] .. ARGV[3]) end
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
local kind = 'set'
if ARGV[5] == '1' then kind = 'gone' end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'host', ARGV[1], 'kind', kind, 'sid', ARGV[2], 'name', ARGV[3], 'away', ARGV[4])
return 1
`);

// After a start or an outage: this server's whole hash again, its names
// claimed where free, and a "sync" event so the others reload it.
// KEYS: host hash, hosts, presence stream, names. ARGV: host, alive until, then sid, value pairs.
const syncHostScript = new RedisScript(`
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  local name = string.sub(ARGV[i + 1], 2)
  if not redis.call('HGET', KEYS[4], name) then redis.call('HSET', KEYS[4], name, ARGV[i]) end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'host', ARGV[1], 'kind', 'sync', 'sid', '', 'name', '', 'away', '0')
return 1
`);

// KEYS: names. ARGV: name, sid. 1 when the name is now the sid's.
const claimNameScript = new RedisScript(`
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`);

// KEYS: names, hosts. ARGV: name, sid, host key prefix, 1 to keep it while a server still has the sid.
const releaseNameScript = new RedisScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[4] == '1' then
  for _, host in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('HEXISTS', ARGV[3] .. host, ARGV[2]) == 1 then return 0 end
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`);

// KEYS: hosts, names, presence stream. ARGV: the dead host, now, host key prefix.
const reapHostScript = new RedisScript(`
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local entries = redis.call('HGETALL', ARGV[3] .. ARGV[1])
for i = 1, #entries, 2 do
  local sid, name = entries[i], string.sub(entries[i + 1], 2)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'host', ARGV[1], 'kind', 'gone', 'sid', sid, 'name', name, 'away', '0')
  local elsewhere = false
  for _, host in ipairs(live) do
    if redis.call('HEXISTS', ARGV[3] .. host, sid) == 1 then elsewhere = true end
  end
  if not elsewhere and redis.call('HGET', KEYS[2], name) == sid then redis.call('HDEL', KEYS[2], name) end
end
redis.call('DEL', ARGV[3] .. ARGV[1])
return 1
`);

export interface RedisLogOptions {
  address: RedisAddress;
  room: string;
  historySize: number;
  /** A reply later than this means Redis is unreachable (--redis-timeout). */
  timeoutMs: number;
  log: (line: string) => void;
  /** Told when Redis becomes reachable, and when it stops being. */
  onAvailability?: (available: boolean) => void;
}

/** One field of a stream entry, whose fields come as [name, value, name, value, …]; "" when it has none. */
function fieldOf(fields: string[], name: string): string {
  const at = fields.indexOf(name);
  return at < 0 ? "" : (fields[at + 1] ?? "");
}

/** A message from a stream entry's fields. */
function messageOfEntry(seq: number, fields: string[]): ChatMessage {
  const field = (name: string) => fieldOf(fields, name);
  return {
    seq,
    id: field("id"),
    sid: field("sid"),
    from: field("from"),
    text: field("text"),
    time: Number(field("time")),
  };
}

export class RedisLog implements MessageLog, SharedPresence {
  epoch = "";
  history: History;
  readonly hostId = randomBytes(6).toString("hex");
  /** What this server has, as last published: published again whole after an outage. */
  private readonly hosted = new Map<string, HostedEntry>();
  /** Publications, in order: one after the other. */
  private publishing: Promise<unknown> = Promise.resolve();
  /** Where this server's reading of the presence stream has got to. */
  private presenceCursor = "0-0";
  private spareEpoch = newEpoch();
  /** Whether the kept tail of the stream has been read once, at start-up. */
  private started = false;
  /** Whether the room's state in Redis can be used now. */
  available = false;
  /** The last PING's round trip (for /metrics). */
  roundTripMs = 0;
  private readonly options: RedisLogOptions;
  private readonly events: MessageLogEvents;
  private readonly keys: ReturnType<typeof roomKeys>;
  private readonly commands: RedisClient;
  private readonly reader: RedisClient;
  private closed = false;
  private readonly probe: ReturnType<typeof setInterval>;

  constructor(options: RedisLogOptions, events: MessageLogEvents) {
    this.options = options;
    this.events = events;
    this.keys = roomKeys(options.room);
    this.history = new History(options.historySize);
    const scripts = [
      checkRoomScript,
      appendMessageScript,
      publishHostedScript,
      syncHostScript,
      claimNameScript,
      releaseNameScript,
      reapHostScript,
    ];
    const clientOptions = { timeoutMs: options.timeoutMs, scripts };
    this.commands = new RedisClient(options.address, clientOptions);
    this.reader = new RedisClient(options.address, { timeoutMs: options.timeoutMs, scripts: [] });
    this.probe = setInterval(() => void this.probeRedis(), REDIS_PROBE_MS);
    this.probe.unref();
    void this.readForever();
  }

  async append(message: UnsequencedMessage): Promise<AppendOutcome> {
    if (!this.available) return { kind: "failed", why: "Redis is unavailable" };
    const args = () => [...this.stateArguments(), message.id, message.sid, message.from, message.text, message.time];
    // Appending again is safe (the id makes it idempotent): one retry, on a new connection.
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await this.commands.run(appendMessageScript, this.keyList(), args);
        const [epoch, seq, seen] = reply as [string, number, number];
        this.adoptEpoch(epoch);
        if (seen === 0) return { kind: "accepted" };
        const stored = this.history.find(message.id) ?? (await this.fetch(seq));
        return stored === undefined
          ? { kind: "failed", why: "its first copy is gone" }
          : { kind: "duplicate", message: stored };
      } catch (error) {
        if (attempt === 2 || error instanceof RedisReplyError) {
          this.noteFailure(error);
          return { kind: "failed", why: describeError(error) };
        }
      }
    }
  }

  get presence(): SharedPresence {
    return this;
  }

  async claimName(name: string, sid: string): Promise<boolean> {
    return (await this.commands.run(claimNameScript, [this.keys.names], [name, sid])) === 1;
  }

  releaseName(name: string, sid: string, evenIfHosted = false): void {
    const args = [name, sid, this.keys.hostPrefix, evenIfHosted ? "0" : "1"];
    this.enqueue(() => this.commands.run(releaseNameScript, [this.keys.names, this.keys.hosts], args));
  }

  publish(sid: string, entry: HostedEntry | undefined): void {
    if (entry === undefined) this.hosted.delete(sid);
    else this.hosted.set(sid, entry);
    const keys = [this.keys.hostPrefix + this.hostId, this.keys.hosts, this.keys.presence];
    const away = entry?.away ? "1" : "0";
    const args = () => [
      this.hostId,
      sid,
      entry?.name ?? "",
      away,
      entry === undefined ? "1" : "0",
      Date.now() + HOST_TTL_MS,
    ];
    this.enqueue(() => this.commands.run(publishHostedScript, keys, args));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.probe);
    // Leaving on purpose: everyone here is gone at once, not after HOST_TTL_MS.
    if (this.available) {
      const args = [this.hostId, 0, this.keys.hostPrefix];
      void this.commands
        .command(["ZADD", this.keys.hosts, 0, this.hostId])
        .then(() => this.commands.run(reapHostScript, [this.keys.hosts, this.keys.names, this.keys.presence], args))
        .catch(() => {})
        .finally(() => this.commands.close());
    } else this.commands.close();
    this.reader.close();
  }

  /** Runs publications one after another, in the order they were made. */
  private enqueue(send: () => Promise<unknown>): void {
    this.publishing = this.publishing.then(send).catch((error: unknown) => this.noteFailure(error));
  }

  private keyList(): string[] {
    return [this.keys.meta, this.keys.stream, this.keys.ids];
  }

  /** ARGV 1-5 of both scripts. The epoch to start if the state was lost is
   * made once and used until one is started: random bytes on every append cost. */
  private stateArguments(): Array<string | number> {
    const { runId } = this.commands;
    return [runId, this.epoch, this.history.latestSeq, this.spareEpoch, this.options.historySize];
  }

  /** Reads the stream for ever: new entries go to the room in order; between
   * reads the state is checked (a new epoch); a failure waits and tries again. */
  private async readForever(): Promise<void> {
    while (!this.closed) {
      try {
        if (!this.available) await this.catchUp();
        const cursor = `${this.history.latestSeq}-0`;
        const streams = [this.keys.stream, this.keys.presence, cursor, this.presenceCursor];
        const read = ["XREAD", "COUNT", READ_BATCH, "BLOCK", READ_BLOCK_MS, "STREAMS", ...streams];
        const reply = await this.reader.command(read, READ_BLOCK_MS);
        if (reply === null) await this.checkState();
        else
          for (const [stream, entries] of reply as Array<[string, RespReply[]]>) {
            if (stream === this.keys.stream) this.deliver(entries);
            else await this.applyPresence(entries);
          }
      } catch (error) {
        if (this.closed) return;
        this.noteFailure(error);
        await new Promise((resolve) => setTimeout(resolve, REDIS_PROBE_MS).unref());
      }
    }
  }

  /** After a start or an outage: the state, then the kept history's tail
   * that this process does not have yet, then the room is served again. */
  private async catchUp(): Promise<void> {
    await this.checkState();
    // Only at start-up is the tail taken in without telling the room (nobody
    // is there yet). After an outage, what came meanwhile is read as usual:
    // the room's members are waiting for it.
    if (!this.started) {
      this.started = true;
      const tail = await this.reader.command([
        "XREVRANGE",
        this.keys.stream,
        "+",
        "-",
        "COUNT",
        this.options.historySize,
      ]);
      this.deliver((tail as RespReply[]).slice().reverse(), { quietly: true });
    }
    await this.loadPresence();
    this.setAvailable(true);
  }

  /** Everyone the other servers have, then this server's own people published
   * again whole (Redis may have restarted without them). Events from before
   * the snapshot are read again after it: setting what is set changes nothing. */
  private async loadPresence(): Promise<void> {
    const last = (await this.commands.command(["XREVRANGE", this.keys.presence, "+", "-", "COUNT", 1])) as Array<
      [string]
    >;
    this.presenceCursor = last[0]?.[0] ?? "0-0";
    await this.reapDeadHosts();
    const hosts = (await this.commands.command(["ZRANGE", this.keys.hosts, 0, -1])) as string[];
    for (const host of hosts) if (host !== this.hostId) await this.loadHost(host);
    const pairs = [...this.hosted].flatMap(([sid, entry]) => [sid, (entry.away ? "1" : "0") + entry.name]);
    const keys = [this.keys.hostPrefix + this.hostId, this.keys.hosts, this.keys.presence, this.keys.names];
    await this.commands.run(syncHostScript, keys, () => [this.hostId, Date.now() + HOST_TTL_MS, ...pairs]);
  }

  private async loadHost(host: string): Promise<void> {
    const fields = (await this.commands.command(["HGETALL", this.keys.hostPrefix + host])) as string[];
    const entries = new Map<string, HostedEntry>();
    for (let index = 0; index + 1 < fields.length; index += 2) {
      const value = fields[index + 1]!;
      entries.set(fields[index]!, { name: value.slice(1), away: value.startsWith("1") });
    }
    this.events.onHostSnapshot?.(host, entries);
  }

  /** Presence stream entries `[id, [host, …, kind, …, sid, …, name, …, away, …]]`, from other servers. */
  private async applyPresence(entries: RespReply[]): Promise<void> {
    for (const entry of entries) {
      const [id, fields] = entry as [string, string[]];
      this.presenceCursor = id;
      const field = (name: string) => fieldOf(fields, name);
      const host = field("host");
      if (host === this.hostId) continue;
      const kind = field("kind");
      if (kind === "sync") await this.loadHost(host);
      else {
        const hosted = kind === "gone" ? undefined : { name: field("name"), away: field("away") === "1" };
        this.events.onRemotePresence?.(host, field("sid"), hosted);
      }
    }
  }

  /** Servers past their deadline are reaped: their people are gone, unless elsewhere. */
  private async reapDeadHosts(): Promise<void> {
    const now = Date.now();
    const dead = (await this.commands.command(["ZRANGEBYSCORE", this.keys.hosts, "-inf", now])) as string[];
    for (const host of dead) {
      if (host === this.hostId) continue;
      const keys = [this.keys.hosts, this.keys.names, this.keys.presence];
      await this.commands.run(reapHostScript, keys, [host, now, this.keys.hostPrefix]);
    }
  }

  private async checkState(): Promise<void> {
    const reply = await this.commands.run(checkRoomScript, this.keyList(), () => this.stateArguments());
    this.adoptEpoch((reply as [string, number])[0]);
  }

  /** Stream entries `[id, [field, value, …]]` to the room, in seq order, once each. */
  private deliver(entries: RespReply[], { quietly = false } = {}): void {
    for (const entry of entries) {
      const [id, fields] = entry as [string, string[]];
      const seq = Number(id.split("-")[0]);
      if (seq <= this.history.latestSeq) continue;
      if (!quietly && this.history.latestSeq > 0 && seq !== this.history.latestSeq + 1) {
        this.events.onHistoryBroken(
          `messages ${this.history.latestSeq + 1}-${seq - 1} were trimmed before this process read them`,
        );
      }
      const message = messageOfEntry(seq, fields);
      this.history.add(message);
      if (!quietly) this.events.onMessage(message);
    }
  }

  /** One kept message by seq, when this process has not read it yet. */
  private async fetch(seq: number): Promise<ChatMessage | undefined> {
    const reply = (await this.commands.command(["XRANGE", this.keys.stream, `${seq}-0`, `${seq}-0`])) as RespReply[];
    const [id, fields] = (reply[0] ?? []) as [string?, string[]?];
    return id === undefined || fields === undefined ? undefined : messageOfEntry(seq, fields);
  }

  /** A different epoch from Redis: everything this process had belongs to the old one. */
  private adoptEpoch(epoch: string): void {
    if (epoch === this.epoch) return;
    const first = this.epoch === "";
    this.epoch = epoch;
    this.spareEpoch = newEpoch();
    this.history = new History(this.options.historySize);
    if (!first) this.events.onHistoryBroken(`the room's history in Redis was lost or rolled back; new epoch ${epoch}`);
  }

  /** Every second: is Redis there, this server is alive, and servers that are not are reaped. */
  private async probeRedis(): Promise<void> {
    try {
      const sent = performance.now();
      await this.commands.command(["PING"]);
      this.roundTripMs = performance.now() - sent;
      if (!this.available) return;
      await this.commands.command(["ZADD", this.keys.hosts, Date.now() + HOST_TTL_MS, this.hostId]);
      await this.reapDeadHosts();
    } catch (error) {
      this.noteFailure(error);
    }
  }

  private noteFailure(error: unknown): void {
    if (this.closed) return;
    if (this.available) this.options.log(`redis: ${describeError(error)}`);
    this.setAvailable(false);
  }

  private setAvailable(available: boolean): void {
    if (available === this.available) return;
    this.available = available;
    this.options.log(available ? `redis: serving the room, epoch ${this.epoch}` : "redis: unavailable");
    this.options.onAvailability?.(available);
  }
}

// ════════════════════════════════════════════════════════════════════════════
// 12. The static page: GET / and GET /client.js
//
// Exactly two files are served, by exact path; nothing else on disk can be
// reached, whatever `..` or percent-encoding a request tries: a server that
// served its folder would hand out its own source and anything beside it.
// ════════════════════════════════════════════════════════════════════════════

const here = dirname(fileURLToPath(import.meta.url));

export const staticFiles: Record<string, { file: string; type: string }> = {
  "/": { file: "client.html", type: "text/html; charset=utf-8" },
  "/client.js": { file: "client.js", type: "text/javascript; charset=utf-8" },
};

function serveStatic(request: IncomingMessage, response: ServerResponse, path: string, directory: string): void {
  const entry = staticFiles[path];
  if (entry === undefined) return sendPlain(response, 404, `Not found: ${path}`);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return sendPlain(response, 405, `${request.method} is not allowed here; use GET or HEAD.`, { Allow: "GET, HEAD" });
  }
  let body: Buffer;
  try {
    body = readFileSync(join(directory, entry.file));
  } catch {
    return sendPlain(response, 500, `${entry.file} is missing next to server.ts (run npm run build for client.js).`);
  }
  response.writeHead(200, {
    "Content-Type": entry.type,
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy":
      "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:",
  });
  response.end(request.method === "HEAD" ? undefined : body);
}

function sendPlain(response: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  const body = text + "\n";
  response.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
    "Cache-Control": "no-cache",
    ...headers,
  });
  response.end(response.req.method === "HEAD" ? undefined : body);
}

// ════════════════════════════════════════════════════════════════════════════
// 13. The server: routing, limits, shutdown
//
// node:http parses the request; its `upgrade` event hands us the raw socket
// of a request that asks to switch protocols. Here the handshake verdict is
// written, the limits are enforced before any WebSocket state exists, and the
// Connection takes over the socket.
// ════════════════════════════════════════════════════════════════════════════

/** Everything a server is started with: the command line's options, and
 * what only a program that embeds it can give. */
export type ServerConfig = Omit<CommandLineOptions, "help"> & {
  maxFragments: number;
  staticDirectory: string;
  log: (line: string) => void;
  /** More WebSocket endpoints, by path: for programs that embed this server
   * (the crash-isolation test injects one whose handler throws). */
  extraEndpoints: ReadonlyMap<string, Endpoint>;
};

const { help: _help, ...defaultOptions } = defaults;

export const defaultConfig: ServerConfig = {
  ...defaultOptions,
  maxFragments: MAX_FRAGMENTS,
  staticDirectory: here,
  log: (line) => console.error(line),
  extraEndpoints: new Map(),
};

export interface Endpoint {
  subprotocols: readonly string[];
  /** Whether it needs the room's store: refused (503) while Redis is unreachable. */
  usesRoom?: boolean;
  open(connection: Connection, query: URLSearchParams): void;
}

export interface RunningServer {
  server: Server;
  room: ChatRoom;
  connections: Set<Connection>;
  port: number;
  /** Closes every connection with 1001, waits briefly for the handshakes, stops listening. */
  shutdown(waitMs?: number): Promise<void>;
}

/** An HTTP answer that refuses a request: a status, a one-line reason, headers. */
interface Refusal {
  status: number;
  reason: string;
  headers?: Record<string, string>;
}

/** Splits a request target into its path (compared exactly, never
 * normalised) and its query string. */
function splitTarget(target: string | undefined): { path: string; query: string } {
  const raw = target ?? "/";
  const mark = raw.indexOf("?");
  return mark === -1 ? { path: raw, query: "" } : { path: raw.slice(0, mark), query: raw.slice(mark + 1) };
}

/** The answer to anything but a WebSocket handshake at a WebSocket endpoint. */
function upgradeRequired(path: string): Refusal {
  return {
    status: 426,
    reason: `${path} is a WebSocket endpoint: connect to it with a WebSocket client.`,
    headers: { Upgrade: "websocket" },
  };
}

/** An error as one log line, with its stack when it has one. */
function describeError(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** The server: node:http's events, each handled by one named step. */
/** The peer's IP address, an IPv4 one without the "::ffff:" that dual-stack sockets give it. */
function peerAddressOf(socket: Socket): string {
  const address = socket.remoteAddress ?? "unknown";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** Ends a socket with these last bytes, and destroys it a second later if the peer has not closed its side. */
function endSocket(socket: Socket, bytes: string): void {
  socket.end(bytes);
  setTimeout(destroySocket, 1000, socket).unref();
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

/** A socket's listener ("error", "timeout") that destroys it, while nothing else owns it (`this` is the socket). */
function destroyThisSocket(this: Socket): void {
  this.destroy();
}

/** The PROXY protocol's version 1 line, as HAProxy sends it before the
 * client's bytes: "PROXY TCP4 <client> <proxy> <client port> <proxy port>\r\n"
 * (TCP6 alike; "PROXY UNKNOWN …" names nobody), at most 107 bytes. Sans-I/O:
 * the bytes so far in; how many belong to the line and whom it names out. */
export function readProxyHeader(bytes: Buffer): "incomplete" | "invalid" | { length: number; address?: string } {
  const signature = "PROXY ";
  const start = bytes.toString("latin1", 0, Math.min(bytes.length, signature.length));
  if (!signature.startsWith(start)) return { length: 0 }; // no PROXY line: the request itself
  const end = bytes.indexOf("\r\n");
  if (end < 0) return bytes.length < 107 ? "incomplete" : "invalid";
  const [, protocol, client] = bytes.toString("latin1", 0, end).split(" ");
  if (protocol === "UNKNOWN") return { length: end + 2 };
  if ((protocol === "TCP4" && isIP(client ?? "") === 4) || (protocol === "TCP6" && isIP(client ?? "") === 6))
    return { length: end + 2, address: client };
  return "invalid";
}

class ChatServer {
  readonly http: Server;
  readonly room: ChatRoom;
  readonly connections = new Set<Connection>();
  private readonly config: ServerConfig;
  private readonly endpoints: Map<string, Endpoint>;
  private readonly tracer: ConsoleTracer | undefined;
  private readonly deflateOptions: DeflateOptions;
  private readonly connectionsPerIp = new Map<string, number>();
  /** One options object for every connection: nothing per connection that need not be. */
  private readonly connectionOptions: ConnectionOptions;
  private readonly loopbackOnly: boolean;
  private outageTimer: ReturnType<typeof setTimeout> | undefined;
  /** What listens: the HTTP(S) server, or with --trust-proxy a TCP server in front of it. */
  readonly listener: TcpServer;
  /** Client addresses a trusted proxy named in a PROXY line, by the proxy's connection. */
  private readonly proxiedAddresses = new WeakMap<Socket, string>();
  private slowConsumerCloses = 0;

  constructor(config: ServerConfig) {
    const problem = combinationProblem(config);
    if (problem !== undefined) throw new Error(problem);
    this.config = config;
    this.room = new ChatRoom({
      ...config,
      replayBudgetBytes: config.maxBufferedBytes,
      maxIdentities: config.maxConnections,
      messageLog: config.redis === undefined ? undefined : (events) => this.openRedisLog(config.redis!, events),
    });
    this.endpoints = new Map<string, Endpoint>([
      ["/", { subprotocols: ["chat"], usesRoom: true, open: (connection, query) => this.room.join(connection, query) }],
      ["/echo", { subprotocols: ["echo"], open: (connection) => void (connection.handler = echoHandler) }],
      [
        "/text",
        { subprotocols: [], usesRoom: true, open: (connection, query) => this.room.join(connection, query, "text") },
      ],
      ...config.extraEndpoints,
    ]);
    this.tracer =
      config.trace === "off" ? undefined : new ConsoleTracer(config.trace === "full", (line) => console.log(line));
    this.deflateOptions = deflateOptionsOf(config);
    this.connectionOptions = {
      ...config,
      onFinished: (connection) => this.forget(connection),
      onViolation: (violation) => void (violation === "too_slow" && this.slowConsumerCloses++),
    };
    this.loopbackOnly = config.host === "localhost" || config.host === "::1" || config.host.startsWith("127.");
    const httpOptions = {
      // node:http's own limits on the request itself (huge headers; slowloris: a
      // request not complete within the timeout, checked every second, is
      // refused with 408 through onClientError). Node, Deno and Bun all keep
      // them (test/runtimes.test.ts), so no timer of ours is needed per socket.
      headersTimeout: config.handshakeTimeoutMs,
      requestTimeout: config.handshakeTimeoutMs,
      connectionsCheckingInterval: 1000,
      maxHeaderSize: 16 * 1024,
    };
    this.http =
      config.tlsCert === undefined || config.tlsKey === undefined
        ? createServer(httpOptions)
        : createHttpsServer({
            ...httpOptions,
            // The same limit on the TLS handshake that comes before the request (node:tls's default is 120 s).
            handshakeTimeout: config.handshakeTimeoutMs,
            cert: readFileSync(config.tlsCert),
            key: readFileSync(config.tlsKey),
          });
    this.listener =
      config.trustProxy.length === 0 ? this.http : createTcpServer((socket) => this.acceptFromProxy(socket));
    this.http.on("clientError", (error: Error & { code?: string }, socket: Socket) =>
      this.onClientError(error, socket),
    );
    this.http.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) =>
      this.onUpgrade(request, socket, head),
    );
    this.http.on("request", (request: IncomingMessage, response: ServerResponse) => this.onRequest(request, response));
  }

  /** --redis: the room's messages in Redis. While Redis cannot be reached,
   * new chat sockets are refused (503, so a load balancer tries another
   * server) and after REDIS_OUTAGE_CLOSE_MS the room's clients are closed
   * with 1013 "try again later"; all of it undoes itself when Redis is back. */
  private openRedisLog(url: string, events: MessageLogEvents): RedisLog {
    const address = parseRedisUrl(url);
    if (typeof address === "string") throw new Error(`--redis: ${address}`);
    const { historySize, redisTimeoutMs: timeoutMs, log } = this.config;
    return new RedisLog(
      { address, room: "main", historySize, timeoutMs, log, onAvailability: (up) => this.onRedis(up) },
      events,
    );
  }

  private onRedis(available: boolean): void {
    clearTimeout(this.outageTimer);
    if (available) return;
    this.outageTimer = setTimeout(
      () => this.room.closeEveryone(CloseCode.TryAgainLater, "Redis is unreachable; try again later"),
      REDIS_OUTAGE_CLOSE_MS,
    );
    this.outageTimer.unref();
  }

  /** Why this server cannot serve the room now, if it cannot. */
  private unavailableReason(): string | undefined {
    return this.room.log.available
      ? undefined
      : "The room's store (Redis) is unreachable from this server; try again later.";
  }

  /** --trust-proxy: a connection from a trusted proxy may begin with a PROXY
   * protocol v1 line naming the client (HAProxy's `send-proxy`); it is read
   * here, and the rest of the bytes go to the HTTP server as if nothing came
   * before them. Any other connection goes to it untouched. */
  private acceptFromProxy(socket: Socket): void {
    if (!this.config.trustProxy.includes(peerAddressOf(socket))) return void this.http.emit("connection", socket);
    let received = Buffer.alloc(0);
    socket.setTimeout(this.config.handshakeTimeoutMs, destroyThisSocket); // as for a slow request
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const header = readProxyHeader(received);
      if (header === "incomplete") return;
      socket.pause();
      socket.off("data", onData);
      socket.setTimeout(0);
      if (header === "invalid") return void socket.end(handshakeRefusal(400, "A PROXY line that could not be read."));
      if (header.address !== undefined) this.proxiedAddresses.set(socket, header.address);
      socket.unshift(received.subarray(header.length));
      this.http.emit("connection", socket);
      socket.resume();
    };
    socket.on("data", onData);
    socket.on("error", destroyThisSocket);
  }

  /** The client's address: the peer's, or what a trusted proxy said it is
   * (its PROXY line, else the last X-Forwarded-For entry, the one it added). */
  private clientAddressOf(socket: Socket, request: IncomingMessage): string {
    const peer = peerAddressOf(socket);
    if (!this.config.trustProxy.includes(peer)) return peer;
    const proxied = this.proxiedAddresses.get(socket);
    const forwarded = headerValue(request.headers, "x-forwarded-for")?.split(",").at(-1)?.trim();
    return proxied ?? (forwarded || peer);
  }

  /** A request node:http could not parse: the status that says why. */
  private onClientError(error: Error & { code?: string }, socket: Socket): void {
    if (!socket.writable) return void socket.destroy();
    const refusal: Refusal =
      error.code === "HPE_HEADER_OVERFLOW"
        ? { status: 431, reason: "The request headers are too large." }
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? { status: 408, reason: "The request took too long to arrive." }
          : { status: 400, reason: "The request could not be parsed as HTTP." };
    this.refuse(socket, refusal);
  }

  /** A request to switch protocols: refused with a status, or answered 101
   * and handed to a Connection. */
  private onUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): void {
    let opened: Connection | undefined;
    socket.on("error", destroyThisSocket); // until a Connection owns the socket
    try {
      const { path, query } = splitTarget(request.url);
      const endpoint = this.endpoints.get(path);
      if (endpoint === undefined)
        return this.refuse(
          socket,
          { status: 404, reason: `No WebSocket endpoint at ${path}; try /, /echo or /text.` },
          request,
        );
      const clientAddress = this.clientAddressOf(socket, request);
      const overLimit = this.checkLimits(clientAddress);
      if (overLimit !== undefined) return this.refuse(socket, overLimit);
      const unavailable = endpoint.usesRoom ? this.unavailableReason() : undefined;
      if (unavailable !== undefined)
        return this.refuse(socket, { status: 503, reason: unavailable, headers: { "Retry-After": "5" } });
      const verdict = checkUpgradeRequest(request, this.policyFor(endpoint));
      if (!verdict.accepted) return this.refuse(socket, verdict, request);
      socket.off("error", destroyThisSocket);
      const parameters = new URLSearchParams(query);
      opened = this.open(request, socket, verdict, parameters, clientAddress);
      endpoint.open(opened, parameters);
      if (head.length > 0) opened.receiveBytes(head); // frames that came with the request
    } catch (error) {
      this.config.log(`upgrade failed: ${describeError(error)}`);
      if (socket.destroyed) return;
      // Before the 101 the client still speaks HTTP; after it, only frames.
      if (opened === undefined)
        this.refuse(socket, { status: 500, reason: "The server failed to open this connection." });
      else opened.fail("internal_error");
    }
  }

  /** What a handshake for `endpoint` is checked against. */
  private policyFor(endpoint: Endpoint): HandshakePolicy {
    return {
      allowedOrigins: this.config.allowedOrigins,
      subprotocols: endpoint.subprotocols,
      loopbackOnly: this.loopbackOnly,
    };
  }

  /** The limits come before any WebSocket state is allocated. */
  private checkLimits(address: string): Refusal | undefined {
    const later = { "Retry-After": "5" };
    if (this.connections.size >= this.config.maxConnections) {
      return {
        status: 503,
        reason: "The server has as many connections as it accepts; try again later.",
        headers: later,
      };
    }
    if ((this.connectionsPerIp.get(address) ?? 0) >= this.config.maxConnectionsPerIp) {
      return { status: 503, reason: "Too many connections from your address; try again later.", headers: later };
    }
    return undefined;
  }

  /** §4.2.2 step 5: the 101 response; after its blank line, frames, read
   * and written by a new Connection. */
  private open(
    request: IncomingMessage,
    socket: Socket,
    verdict: Extract<HandshakeVerdict, { accepted: true }>,
    query: URLSearchParams,
    clientAddress: string,
  ): Connection {
    const deflate = negotiateDeflate(headerValue(request.headers, "sec-websocket-extensions"), this.deflateOptions);
    const response = [
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Accept: ${verdict.acceptKey}`,
    ];
    if (verdict.protocol !== undefined) response.push(`Sec-WebSocket-Protocol: ${verdict.protocol}`);
    if (deflate !== undefined) response.push(`Sec-WebSocket-Extensions: ${deflate.response}`);
    const responseHead = response.join("\r\n") + "\r\n\r\n";
    socket.write(responseHead);

    const connection = new Connection(
      socket,
      verdict.protocol,
      deflate?.agreement,
      this.connectionOptions,
      clientAddress,
    );
    if (this.tracer !== undefined || query.get("inspect") === "1")
      connection.handshakeTrace = describeHandshake(request, responseHead);
    if (this.tracer !== undefined) {
      this.tracer.handshake(`#${connection.id}`, connection.handshakeTrace!);
      connection.observers.add(this.tracer);
    }
    this.connections.add(connection);
    const address = connection.remoteAddress;
    this.connectionsPerIp.set(address, (this.connectionsPerIp.get(address) ?? 0) + 1);
    if (this.config.verbose) {
      const path = splitTarget(request.url).path;
      this.config.log(
        `connection ${connection.id} opened from ${address} on ${path}${deflate ? " (permessage-deflate)" : ""}`,
      );
    }
    return connection;
  }

  /** A connection is over: it no longer counts against the limits. */
  private forget(connection: Connection): void {
    this.connections.delete(connection);
    const address = connection.remoteAddress;
    const count = (this.connectionsPerIp.get(address) ?? 1) - 1;
    if (count <= 0) this.connectionsPerIp.delete(address);
    else this.connectionsPerIp.set(address, count);
    if (this.config.verbose)
      this.config.log(`connection ${connection.id} closed (${connection.closeCode ?? CloseCode.Abnormal})`);
  }

  /** A plain HTTP request: the two static files, and a clear answer for
   * anything that tried to be a WebSocket handshake and was not. */
  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    try {
      const { path } = splitTarget(request.url);
      if (path === "/healthz") return this.answerHealth(response);
      if (path === "/metrics") return this.answerMetrics(response);
      const wantsUpgrade = request.headers.upgrade !== undefined;
      if (!wantsUpgrade && (!this.endpoints.has(path) || staticFiles[path] !== undefined)) {
        return serveStatic(request, response, path, this.config.staticDirectory);
      }
      const endpoint = this.endpoints.get(path);
      if (endpoint === undefined) return sendPlain(response, 404, `Not found: ${path}`);
      // An upgrade node:http did not treat as one ("Connection: Upgrade"
      // missing, say): the handshake's own verdict says what was wrong.
      const verdict = wantsUpgrade ? checkUpgradeRequest(request, this.policyFor(endpoint)) : undefined;
      const refusal = verdict === undefined || verdict.accepted ? upgradeRequired(path) : verdict;
      // A failed handshake ends the connection, as the upgrade path does.
      sendPlain(response, refusal.status, refusal.reason, { ...refusal.headers, Connection: "close" });
    } catch (error) {
      this.config.log(`request failed: ${describeError(error)}`);
      if (!response.headersSent) sendPlain(response, 500, "Internal server error.");
      else response.destroy();
    }
  }

  /** GET /healthz, for load balancers: 200 while this server can serve the room, 503 with the reason when not. */
  private answerHealth(response: ServerResponse): void {
    const unavailable = this.unavailableReason();
    sendPlain(response, unavailable === undefined ? 200 : 503, unavailable ?? "ok");
  }

  /** GET /metrics, in Prometheus's text format: counts, never contents. */
  private answerMetrics(response: ServerResponse): void {
    const lines: string[] = [];
    const metric = (name: string, type: "gauge" | "counter", help: string, value: number): void =>
      void lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    const counts = this.room.counters;
    metric("chat_connections", "gauge", "Open WebSocket connections.", this.connections.size);
    metric(
      "chat_messages_received_total",
      "counter",
      "Chat messages accepted from this server's clients.",
      counts.received,
    );
    metric("chat_deliveries_total", "counter", "Chat messages written to this server's clients.", counts.deliveries);
    metric(
      "chat_replayed_messages_total",
      "counter",
      "Messages sent again after a welcome or on request.",
      counts.replayed,
    );
    metric(
      "chat_slow_consumer_closes_total",
      "counter",
      "Connections closed (1008) for reading too slowly.",
      this.slowConsumerCloses,
    );
    metric(
      "chat_epoch_changes_total",
      "counter",
      "Times the history was lost and every member reconnected.",
      counts.historyResets,
    );
    const log = this.room.log;
    if (log instanceof RedisLog) {
      metric("chat_redis_up", "gauge", "1 while Redis can be used.", log.available ? 1 : 0);
      metric("chat_redis_round_trip_seconds", "gauge", "The last PING's round trip to Redis.", log.roundTripMs / 1000);
    }
    response.writeHead(200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      "Cache-Control": "no-cache",
    });
    response.end(lines.join("\n") + "\n");
  }

  /** Writes a refusal in HTTP and ends the connection (the --trace shows it). */
  private refuse(socket: Socket, refusal: Refusal, request?: IncomingMessage): void {
    if (this.config.verbose) this.config.log(`handshake refused: ${refusal.status} ${refusal.reason}`);
    const bytes = handshakeRefusal(refusal.status, refusal.reason, refusal.headers);
    if (this.tracer && request)
      this.tracer.handshake("(refused)", [...describeHandshake(request, bytes), `→   ${refusal.reason}`]);
    endSocket(socket, bytes);
  }

  /** Closes every connection with 1001, waits up to `waitMs` for the closing handshakes, stops listening. */
  async shutdown(waitMs = 2000): Promise<void> {
    this.listener.close();
    if (this.listener !== this.http) this.http.close();
    for (const connection of this.connections) connection.close(CloseCode.GoingAway, "server shutting down");
    const deadline = Date.now() + waitMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of this.connections) connection.terminate();
    (this.http as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    clearTimeout(this.outageTimer);
    this.room.close();
  }
}

/** The kernel's queue of connections whose TCP handshake is done but that the
 * server has not accepted yet. Node's default, 511, overflows when thousands of
 * clients come at once (every page reconnecting after a restart): the kernel
 * then drops their SYNs, and each waits for its retry, 1, 3, 7 s later,
 * although the server has CPU to spare. So ask for as long a queue as the
 * kernel allows: Linux cuts the number down to net.core.somaxconn (4096 since
 * Linux 5.4). Measured with 10,000 chat clients connecting at once, the server
 * on one core: with 511 the last was welcomed after 17 and 32 s (44,000–50,000
 * SYNs dropped); with this, after 5.8–8.6 s in four runs (somaxconn is 4,096
 * here, so 12,000–23,000 SYNs were still dropped and retried). */
const LISTEN_BACKLOG = 65_535;

/** Starts a server and resolves once it listens. */
export function startServer(overrides: Partial<ServerConfig> = {}): Promise<RunningServer> {
  const config: ServerConfig = { ...defaultConfig, ...overrides };
  const chat = new ChatServer(config);
  return new Promise((resolve, reject) => {
    chat.listener.once("error", reject);
    chat.listener.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
      chat.listener.off("error", reject);
      chat.listener.on("error", (error) => config.log(`server error: ${error.message}`));
      const address = chat.listener.address();
      const port = typeof address === "object" && address !== null ? address.port : config.port;
      resolve({
        server: chat.http,
        room: chat.room,
        connections: chat.connections,
        port,
        shutdown: (waitMs) => chat.shutdown(waitMs),
      });
    });
  });
}

// ════════════════════════════════════════════════════════════════════════════
// 14. The command line
// ════════════════════════════════════════════════════════════════════════════

/** An option as --help and the README show it: "--port N", "--trace / --trace=full". */
export function optionSyntax(row: OptionRow): string {
  if (row.type === "trace") return `--${row.flag} / --${row.flag}=full`;
  return row.value === undefined ? `--${row.flag}` : `--${row.flag} ${row.value}`;
}

/** A default worth showing: numbers and words, not switches or empty lists. */
export function shownDefault(row: OptionRow): string | undefined {
  return typeof row.default === "number" || (typeof row.default === "string" && row.type !== "trace")
    ? String(row.default)
    : undefined;
}

export const helpText = [
  "Usage: npm start -- [options]                 Node 20 and later, from this folder (npm start runs tsx)",
  "       node server.ts [options]               Node 24 and later",
  "       node --experimental-strip-types server.ts [options]                  Node 22",
  "       deno run --allow-net --allow-read --allow-env server.ts [options]    Deno 2",
  "       bun server.ts [options]                Bun 1",
  "",
  "A WebSocket chat room at http://HOST:PORT/ and an echo endpoint at /echo.",
  "",
  "Options:",
  ...optionTable.map((row: OptionRow) => {
    const shown = shownDefault(row);
    const environment = row.env === undefined ? "" : `, or $${row.env}`;
    const suffix = shown === undefined ? "" : ` (default ${shown}${environment})`;
    return `  ${optionSyntax(row).padEnd(28)}${row.help}${suffix}`;
  }),
  "",
].join("\n");

/** Reads the command line (and the environment variables options name) into
 * a config; throws an Error with one clear line. */
export function parseCommandLine(
  argv: string[],
  environment: Record<string, string | undefined> = {},
): Partial<ServerConfig> & { help?: boolean } {
  // `--trace=full` reads better than a second flag; parseArgs wants one meaning per name.
  const args = argv.map((argument) =>
    argument === "--trace=full" ? "--trace-full" : argument === "--trace=frames" ? "--trace" : argument,
  );
  const parserOptions: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const row of optionTable as readonly OptionRow[]) {
    const isSwitch = row.type === "switch" || row.type === "trace";
    parserOptions[row.flag] = { type: isSwitch ? "boolean" : "string", multiple: row.type === "list" };
  }
  parserOptions["trace-full"] = { type: "boolean" };
  parserOptions.help!.short = "h";
  const { values } = parseArgs({ args, strict: true, allowPositionals: false, options: parserOptions });

  const config: Record<string, unknown> = {};
  for (const row of optionTable as readonly OptionRow[]) {
    const given = values[row.flag];
    const fromEnvironment = given === undefined && row.env !== undefined ? environment[row.env] : undefined;
    const raw = given ?? fromEnvironment;
    const name = fromEnvironment !== undefined ? `$${row.env}` : `--${row.flag}`;
    if (row.type === "trace") {
      if (values["trace-full"]) config[row.key] = "full";
      else if (given === true) config[row.key] = "frames";
    } else if (row.type === "switch") {
      if (given === true) config[row.key] = !row.default;
    } else if (row.type === "list") {
      if (Array.isArray(raw))
        config[row.key] = raw.flatMap((value) =>
          String(value)
            .split(",")
            .map((item) => item.trim())
            .filter(Boolean),
        );
    } else if (typeof raw === "string") {
      config[row.key] =
        row.type === "integer" ? readInteger(name, raw, row.min ?? 0, row.max ?? Number.MAX_SAFE_INTEGER) : raw;
    }
  }
  const redisProblem = typeof config.redis === "string" ? parseRedisUrl(config.redis) : undefined;
  if (typeof redisProblem === "string") throw new Error(`--redis: ${redisProblem}`);
  return config as Partial<ServerConfig> & { help?: boolean };
}

/** Why options that are each fine cannot go together, or undefined when they can. */
export function combinationProblem(config: Partial<ServerConfig>): string | undefined {
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined))
    return "--tls-cert and --tls-key go together: a certificate and its private key";
  // The PROXY line would have to be read before node:https takes the socket,
  // which reads the TLS handshake from the socket's handle, not from bytes
  // given back to it: terminate TLS at the proxy instead (deploy/haproxy.cfg).
  if (config.tlsCert !== undefined && (config.trustProxy?.length ?? 0) > 0)
    return "--trust-proxy cannot be used with --tls-cert: let the proxy terminate TLS, or drop --trust-proxy";
  if (config.redis !== undefined && config.historyFile !== undefined)
    return "--history cannot be used with --redis: Redis keeps the history (see the README on persistence)";
  return undefined;
}

function readInteger(name: string, value: string, minimum: number, maximum: number): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isInteger(parsed) || parsed < minimum || parsed > maximum) {
    throw new Error(`${name} takes a whole number from ${minimum} to ${maximum}, not "${value}"`);
  }
  return parsed;
}

/** How this process was started, as far as it matters for telling the user how to start it again. */
export type Launcher = { kind: "npm" } | { kind: "command"; command: string };

export function howThisWasStarted(): Launcher {
  if (process.env.npm_lifecycle_event === "start") return { kind: "npm" }; // `npm start`, not a test run by npm
  const global = globalThis as { Deno?: unknown; Bun?: unknown };
  if (global.Deno !== undefined)
    return { kind: "command", command: "deno run --allow-net --allow-read --allow-env server.ts" };
  if (global.Bun !== undefined) return { kind: "command", command: "bun server.ts" };
  return { kind: "command", command: ["node", ...process.execArgv, "server.ts"].join(" ") };
}

/** Commands that start this server on `port`, in the way it was started: `npm start --port N`
 * does not work (npm takes --port for itself), so through npm it is the environment or `--`. */
export function commandsForPort(port: number, launcher: Launcher): string[] {
  if (launcher.kind === "npm") return [`PORT=${port} npm start`, `npm start -- --port ${port}`];
  return [`${launcher.command} --port ${port}`, `PORT=${port} ${launcher.command}`];
}

/** Runs when this file is the program, not when a test imports it. */
async function main(): Promise<void> {
  let config: ReturnType<typeof parseCommandLine>;
  try {
    config = parseCommandLine(process.argv.slice(2), process.env);
    const problem = combinationProblem(config);
    if (problem !== undefined) throw new Error(problem);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`server.ts: ${message.split("\n").join(" ")} (see --help)`); // one line, always
    process.exit(2);
  }
  if (config.help) {
    process.stdout.write(helpText);
    return;
  }
  const labInput = config.decode ?? config.decodeServer;
  if (labInput !== undefined) {
    // The frame lab: exit 0 for a valid stream, 1 for a rule broken, 2 for input that is not hex.
    const bytes = parseHex(labInput);
    if (typeof bytes === "string") {
      console.error(`server.ts: ${bytes}`);
      process.exit(2);
    }
    const report = walkFrames(bytes, config.decode === undefined);
    process.stdout.write(report.lines.join("\n") + "\n");
    process.exit(report.outcome === "violation" ? 1 : 0);
  }
  let running: RunningServer;
  try {
    running = await startServer(config);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const port = config.port ?? defaults.port;
    if (code === "EADDRINUSE")
      console.error(
        `Port ${port} is already in use: stop the other server, or start this one on another port: ` +
          `${commandsForPort(port + 1, howThisWasStarted()).join("  or  ")}.`,
      );
    else if (code === "EACCES")
      console.error(`Not allowed to listen on port ${port}: choose a port above 1023 with --port.`);
    else console.error(`Could not start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  const host = config.host ?? defaults.host;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  const secure = config.tlsCert !== undefined;
  console.log(`Chat room listening on ${secure ? "https" : "http"}://${shownHost}:${running.port}/`);
  console.log(
    `  open that address in a browser, or connect a WebSocket client to ${secure ? "wss" : "ws"}://${shownHost}:${running.port}/echo`,
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1); // a second Ctrl-C: leave now
    stopping = true;
    console.log(`${signal}: closing every connection with 1001 (going away)`);
    running.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

/** Whether the module whose import.meta this is was started as the program
 * (not imported by a test or another module). */
export function isProgram(meta: ImportMeta): boolean {
  const main = (meta as ImportMeta & { main?: boolean }).main;
  if (typeof main === "boolean") return main; // Deno, Bun, Node 24+
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(resolve(entry)) === realpathSync(fileURLToPath(meta.url));
  } catch {
    return false;
  }
}

if (isProgram(import.meta)) void main();
