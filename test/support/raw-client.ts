// The one WebSocket client of the tests, the scripts and the live fuzzer: a
// raw TCP socket, so a test can send any bytes at all (bad requests, bad
// frames, half a request line) and see exactly what the server sends back.
// Frames from the server are read with server.ts's own decoder in client mode
// (expectMasked: false), which is itself tested and fuzzed separately.
//
//   RawClient.open(port, options)     sends the request, resolves once the
//                                      answer's head arrived (any status), or
//                                      at once with `awaitAnswer: false`;
//   RawClient.connect(port, options)  the same, but only a valid 101 (§4.1:
//                                      the Sec-WebSocket-Accept, no extension
//                                      nobody offered) resolves; anything
//                                      else rejects with a HandshakeError.
//
// What arrives is kept in `events`, in order, for `next()` and `waitFor()`;
// or, once `onEvent` is set, handed to it and not kept (many clients in one
// process). With `respond: true` the client behaves as a polite peer: it
// answers pings (§5.5.2) and a close frame (§5.5.1), and fails the connection
// on a frame it cannot read (§7.1.7).
import { connect, type Socket } from "node:net";
import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { Buffer } from "node:buffer";
import { FrameDecoder, Opcode, encodeClosePayload, encodeFrame, type DecoderEvent } from "../../server.ts";

/** RFC 6455 §1.3, written out here rather than imported: the check must not share a typo with the server. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export interface RawClientOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Connect from this local address (any of 127.0.0.0/8 works on Linux). */
  localAddress?: string;
  /** Default /echo. */
  path?: string;
  /** Headers added to (or replacing) the standard ones; "" leaves a header out. */
  headers?: Record<string, string>;
  /** Bytes to send instead of a well-formed request (frames may follow it in the same write). */
  request?: string | Uint8Array;
  /** false: resolve as soon as the request is written (slowloris, keep-alive tests). */
  awaitAnswer?: boolean;
  /** Offer permessage-deflate (RFC 7692 §5). */
  offerDeflate?: boolean;
  /** Accept RSV1 frames. Default: when the answer agreed to permessage-deflate. */
  allowCompression?: boolean;
  maxPayload?: number;
  /** How long the answer's head may take (default 10 s). */
  timeoutMs?: number;
  /** Answer pings and the server's close, and fail on a violation, as a well-behaved client does. */
  respond?: boolean;
  /** Keep our half of the TCP connection open after the server's FIN (allowHalfOpen). */
  halfOpen?: boolean;
}

export interface HandshakeResult {
  status: number;
  headers: Record<string, string>;
  /** What followed the head of a non-101 answer, as UTF-8 (see bodyBytes). */
  readonly body: string;
  readonly bodyBytes: Buffer;
}

/** The server did not accept the WebSocket (status undefined: no HTTP answer at all). */
export class HandshakeError extends Error {
  readonly status: number | undefined;
  readonly headers: Record<string, string>;
  constructor(message: string, status: number | undefined, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** A pool of random mask keys (§5.3): one randomFillSync per 1024 frames. */
const maskPool = Buffer.alloc(4096);
let maskOffset = maskPool.length;
function nextMaskKey(): Buffer {
  if (maskOffset >= maskPool.length) {
    randomFillSync(maskPool);
    maskOffset = 0;
  }
  const key = maskPool.subarray(maskOffset, maskOffset + 4);
  maskOffset += 4;
  return key;
}

/** Every client not closed yet, by the port it went to: what a stopped test server still owes. */
const live = new Map<number, Set<RawClient>>();

export class RawClient {
  readonly socket: Socket;
  readonly port: number;
  /** What arrived, in order, until `onEvent` is set. */
  readonly events: DecoderEvent[] = [];
  handshake: HandshakeResult | undefined;
  /** The key sent in Sec-WebSocket-Key (undefined for a raw `request`). */
  readonly key: string | undefined;
  /** The TCP connection is over. */
  closed = false;
  /** The server ended its half (FIN). */
  ended = false;
  /** The server's close code (1006 until a close frame arrives), and its reason. */
  closeCode = 1006;
  closeReason = "";
  /** Called once when the TCP connection is over. */
  onClose: ((code: number, reason: string) => void) | undefined;
  private readonly options: RawClientOptions;
  private head: Buffer = Buffer.alloc(0);
  private body: Buffer[] = [];
  private decoder: FrameDecoder | undefined;
  private listener: ((event: DecoderEvent) => void) | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly consumed: Partial<Record<string, number>> = {};
  private sentClose = false;

  private constructor(socket: Socket, port: number, key: string | undefined, options: RawClientOptions) {
    this.socket = socket;
    this.port = port;
    let clients = live.get(port);
    if (clients === undefined) live.set(port, (clients = new Set()));
    clients.add(this);
    this.key = key;
    this.options = options;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => {
      this.ended = true;
      this.notify();
    });
    socket.on("close", () => {
      this.closed = true;
      live.get(port)?.delete(this);
      this.notify();
      this.onClose?.(this.closeCode, this.closeReason);
    });
    socket.on("error", () => {});
  }

  /** Opens a TCP connection to 127.0.0.1:port and sends the upgrade request (or `request`). */
  static async open(port: number, options: RawClientOptions = {}): Promise<RawClient> {
    const host = options.host ?? "127.0.0.1";
    const socket = connect({
      port,
      host,
      localAddress: options.localAddress,
      allowHalfOpen: options.halfOpen ?? false,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", (error) => {
        socket.destroy();
        reject(error);
      });
    });
    let key: string | undefined;
    let request = options.request;
    if (request === undefined) {
      key = randomBytes(16).toString("base64");
      const headers: Record<string, string> = {
        Host: `${host}:${port}`,
        Upgrade: "websocket",
        Connection: "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        ...(options.offerDeflate ? { "Sec-WebSocket-Extensions": "permessage-deflate" } : {}),
        ...options.headers,
      };
      if (options.headers?.["Sec-WebSocket-Key"] !== undefined) key = options.headers["Sec-WebSocket-Key"];
      request =
        `GET ${options.path ?? "/echo"} HTTP/1.1\r\n` +
        Object.entries(headers)
          .filter(([, value]) => value !== "")
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join("") +
        "\r\n";
    }
    const client = new RawClient(socket, port, key, options);
    socket.write(request);
    if (options.awaitAnswer === false) return client;
    try {
      await client.waitFor(
        () => client.handshake !== undefined || client.closed,
        options.timeoutMs ?? 10_000,
        "the answer to the request",
      );
    } catch (error) {
      client.destroy();
      throw error;
    }
    return client;
  }

  /** Opens a WebSocket: resolves after a valid 101 (§4.1), rejects with a HandshakeError otherwise. */
  static async connect(port: number, options: RawClientOptions = {}): Promise<RawClient> {
    let client: RawClient;
    try {
      client = await RawClient.open(port, { ...options, awaitAnswer: true });
    } catch (error) {
      if (error instanceof Error && /timed out/.test(error.message))
        throw new HandshakeError("the handshake timed out", undefined);
      throw error;
    }
    const fail = (message: string): never => {
      client.destroy();
      throw new HandshakeError(message, client.handshake?.status, client.handshake?.headers);
    };
    const answer = client.handshake;
    if (answer === undefined) return fail("the connection closed during the handshake");
    if (answer.status !== 101) return fail(`the server answered ${answer.status}`);
    const accept = createHash("sha1")
      .update(client.key + GUID)
      .digest("base64");
    if (answer.headers["sec-websocket-accept"] !== accept) return fail("wrong Sec-WebSocket-Accept (§4.1)");
    if (client.deflate && !options.offerDeflate && options.headers?.["Sec-WebSocket-Extensions"] === undefined) {
      return fail("an extension nobody offered (§9.1)");
    }
    return client;
  }

  /** The answer agreed to permessage-deflate. */
  get deflate(): boolean {
    return (this.handshake?.headers["sec-websocket-extensions"] ?? "").includes("permessage-deflate");
  }

  private onData(chunk: Buffer): void {
    if (this.handshake === undefined) {
      this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (this.head.length > 64 * 1024) this.destroy(); // no head is that long
        return;
      }
      const lines = this.head.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]!.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = this.head.subarray(end + 4);
      this.head = Buffer.alloc(0);
      const body = this.body;
      this.handshake = {
        status,
        headers,
        get bodyBytes() {
          return Buffer.concat(body);
        },
        get body() {
          return Buffer.concat(body).toString("utf8");
        },
      };
      if (status === 101) {
        this.decoder = new FrameDecoder({
          expectMasked: false,
          maxPayload: this.options.maxPayload ?? 64 * 1024 * 1024,
          allowCompression: this.options.allowCompression ?? this.deflate,
        });
        if (rest.length > 0) this.receive(rest);
      } else if (rest.length > 0) body.push(rest);
    } else if (this.decoder !== undefined) {
      this.receive(chunk);
    } else {
      this.body.push(chunk);
    }
    this.notify();
  }

  private receive(chunk: Buffer): void {
    for (const event of this.decoder!.receive(chunk)) {
      if (event.type === "close") {
        this.closeCode = event.code;
        this.closeReason = event.reason;
      }
      if (this.options.respond) {
        if (event.type === "ping") this.sendFrame(Opcode.Pong, event.data);
        else if (event.type === "close") {
          this.close(event.code === 1005 ? 1000 : event.code);
          this.socket.end(); // §7.1.1: the server closes TCP first; we only end our half
        } else if (event.type === "violation") {
          this.closeCode = event.closeCode;
          this.socket.destroy();
        }
      }
      if (this.listener === undefined) this.events.push(event);
      else this.listener(event);
    }
  }

  /** Hands every event to `listener` from now on, starting with those kept so far; keeps none. */
  set onEvent(listener: (event: DecoderEvent) => void) {
    this.listener = listener;
    for (const event of this.events.splice(0)) listener(event);
  }

  private notify(): void {
    for (const waiter of this.waiters) waiter();
  }

  /** Resolves when `condition` holds (checked on every arrival), or rejects after timeoutMs. */
  waitFor(condition: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (condition()) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const seen = JSON.stringify(this.events.slice(-20).map(describe));
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the last events: ${seen}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** The next event of this type not returned before (from the start of `events`). */
  async next<T extends DecoderEvent["type"]>(type: T, timeoutMs = 5000): Promise<Extract<DecoderEvent, { type: T }>> {
    const start = this.consumed[type] ?? 0;
    let found: DecoderEvent | undefined;
    await this.waitFor(
      () => {
        found = this.events.filter((event) => event.type === type)[start];
        return found !== undefined;
      },
      timeoutMs,
      `a ${type} event`,
    );
    this.consumed[type] = start + 1;
    return found as Extract<DecoderEvent, { type: T }>;
  }

  /** The server's close frames so far. */
  closeFrames(): Array<Extract<DecoderEvent, { type: "close" }>> {
    return this.events.filter((event): event is Extract<DecoderEvent, { type: "close" }> => event.type === "close");
  }

  get isOpen(): boolean {
    return !this.closed && !this.sentClose && !this.socket.destroyed;
  }

  /** Sends raw bytes. */
  write(bytes: Uint8Array | string): void {
    this.socket.write(bytes);
  }

  /** Sends one masked frame, as a client must (§5.3); false when the socket can no longer write. */
  sendFrame(
    opcode: number,
    payload: Uint8Array | string = "",
    options: { fin?: boolean; rsv1?: boolean } = {},
  ): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(encodeFrame(opcode, payload, { ...options, maskKey: nextMaskKey() }));
    return true;
  }

  sendText(text: string): boolean {
    return this.sendFrame(Opcode.Text, text);
  }

  /** Starts the closing handshake (§7.1.2), once. */
  close(code = 1000, reason = ""): void {
    if (this.sentClose) return;
    this.sentClose = true;
    this.sendFrame(Opcode.Close, encodeClosePayload(code, reason));
  }

  /** Waits until the TCP connection is over. */
  waitForClose(timeoutMs = 5000): Promise<void> {
    return this.waitFor(() => this.closed, timeoutMs, "the TCP connection to close");
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Destroys every client still connected to `port` (a half-open one would keep a test process alive). */
  static destroyAllTo(port: number): void {
    for (const client of live.get(port) ?? []) client.destroy();
    live.delete(port);
  }
}

const prefixes = new Map<string, Buffer>();

/** Whether `event` is a text message starting with the ASCII `prefix`, read from its bytes: a
 * load test's thousands of messages need not each become a string. */
export function textStartsWith(event: DecoderEvent, prefix: string): boolean {
  if (event.type !== "text") return false;
  let bytes = prefixes.get(prefix);
  if (bytes === undefined) prefixes.set(prefix, (bytes = Buffer.from(prefix, "latin1")));
  return event.data.length >= bytes.length && event.data.subarray(0, bytes.length).equals(bytes);
}

/** The first `count` bytes of a text message, as Latin-1 (enough to read `"seq":42`). */
export function textHead(event: Extract<DecoderEvent, { type: "text" }>, count: number): string {
  return event.data.toString("latin1", 0, Math.min(count, event.data.length));
}

function describe(event: DecoderEvent): unknown {
  switch (event.type) {
    case "text":
      return { text: event.text.slice(0, 200) };
    case "binary":
    case "ping":
    case "pong":
    case "compressed":
      return { [event.type]: event.data.length };
    default:
      return event;
  }
}
