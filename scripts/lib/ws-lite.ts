// A small WebSocket client (RFC 6455, client side) for load tests and the
// live fuzzer: many of them fit in one process. It checks the handshake
// answer (§4.1: status 101, Sec-WebSocket-Accept), masks what it sends
// (§5.3), answers pings (§5.5.2) and close frames (§5.5.1), and reads the
// server's frames with server.ts's decoder in client mode (expectMasked:
// false), which is itself fuzzed separately.
import { connect, type Socket } from "node:net";
import { Buffer } from "node:buffer";
import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { FrameDecoder, Opcode, encodeClosePayload, encodeFrame, type DecoderEvent } from "../../server.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export interface WsLiteOptions {
  port: number;
  host?: string;
  path?: string;
  headers?: Record<string, string>;
  /** Connect from this local address (any of 127.0.0.0/8 works on Linux). */
  localAddress?: string;
  /** Offer permessage-deflate (RFC 7692) and accept RSV1 frames. */
  offerDeflate?: boolean;
  maxPayload?: number;
  timeoutMs?: number;
}

export class HandshakeError extends Error {
  readonly status: number | undefined;
  readonly headers: Record<string, string>;
  constructor(message: string, status: number | undefined, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** A pool of random mask keys: one randomFillSync per 1024 frames. */
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

export class WsLite {
  readonly socket: Socket;
  readonly responseHeaders: Record<string, string>;
  /** Events that arrived before anyone listened (the frames that came with the 101). */
  private early: DecoderEvent[] = [];
  private eventListener: ((event: DecoderEvent) => void) | undefined;
  /** Called once when the TCP connection is over; `code` is the server's close code, 1006 without one. */
  onClose: ((code: number, reason: string) => void) | undefined;
  closed = false;
  closeCode = 1006;
  closeReason = "";
  private readonly decoder: FrameDecoder;
  private sentClose = false;

  private constructor(socket: Socket, headers: Record<string, string>, decoder: FrameDecoder) {
    this.socket = socket;
    this.responseHeaders = headers;
    this.decoder = decoder;
  }

  /** Opens the connection; resolves after a valid 101, rejects with HandshakeError otherwise. */
  static connect(options: WsLiteOptions): Promise<WsLite> {
    const host = options.host ?? "127.0.0.1";
    const key = randomBytes(16).toString("base64");
    const socket = connect({ port: options.port, host, localAddress: options.localAddress });
    socket.setNoDelay(true);
    const headers: Record<string, string> = {
      Host: `${host}:${options.port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": key,
      "Sec-WebSocket-Version": "13",
      ...(options.offerDeflate ? { "Sec-WebSocket-Extensions": "permessage-deflate" } : {}),
      ...options.headers,
    };
    const request =
      `GET ${options.path ?? "/"} HTTP/1.1\r\n` +
      Object.entries(headers)
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("") +
      "\r\n";
    return new Promise<WsLite>((resolve, reject) => {
      let pending: Buffer = Buffer.alloc(0);
      let settled = false;
      const timer = setTimeout(() => fail(new HandshakeError("the handshake timed out", undefined)), options.timeoutMs ?? 10_000);
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const onData = (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        const end = pending.indexOf("\r\n\r\n");
        if (end === -1) {
          if (pending.length > 64 * 1024) fail(new HandshakeError("the response head is too long", undefined));
          return;
        }
        const lines = pending.subarray(0, end).toString("latin1").split("\r\n");
        const status = Number(lines[0]!.split(" ")[1]);
        const responseHeaders: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          if (colon > 0) responseHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        if (status !== 101) return fail(new HandshakeError(`the server answered ${status}`, status, responseHeaders));
        const accept = createHash("sha1").update(key + GUID).digest("base64");
        if (responseHeaders["sec-websocket-accept"] !== accept) {
          return fail(new HandshakeError("wrong Sec-WebSocket-Accept (§4.1)", status, responseHeaders));
        }
        const deflate = (responseHeaders["sec-websocket-extensions"] ?? "").includes("permessage-deflate");
        if (deflate && !options.offerDeflate) return fail(new HandshakeError("an extension nobody offered (§9.1)", status, responseHeaders));
        settled = true;
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("close", onEarlyClose);
        const decoder = new FrameDecoder({ expectMasked: false, maxPayload: options.maxPayload ?? 64 * 1024 * 1024, allowCompression: deflate });
        const client = new WsLite(socket, responseHeaders, decoder);
        client.listen();
        resolve(client);
        const rest = pending.subarray(end + 4);
        if (rest.length > 0) client.receive(Buffer.from(rest));
      };
      const onEarlyClose = () => fail(new HandshakeError("the connection closed during the handshake", undefined));
      socket.on("data", onData);
      socket.on("close", onEarlyClose);
      socket.on("error", (error) => fail(error));
      socket.write(request);
    });
  }

  private listen(): void {
    this.socket.on("data", (chunk: Buffer) => this.receive(chunk));
    this.socket.on("close", () => {
      if (this.closed) return;
      this.closed = true;
      this.onClose?.(this.closeCode, this.closeReason);
    });
    this.socket.on("error", () => {});
  }

  private receive(chunk: Buffer): void {
    for (const event of this.decoder.receive(chunk)) {
      if (event.type === "ping") this.sendFrame(Opcode.Pong, event.data);
      else if (event.type === "close") {
        this.closeCode = event.code;
        this.closeReason = event.reason;
        if (!this.sentClose) this.sendFrame(Opcode.Close, encodeClosePayload(event.code === 1005 ? 1000 : event.code));
        this.sentClose = true;
        // §7.1.1: the server closes TCP first; we only end our half.
        this.socket.end();
      } else if (event.type === "violation") {
        this.closeCode = event.closeCode;
        this.socket.destroy();
      }
      if (this.eventListener === undefined) this.early.push(event);
      else this.eventListener(event);
    }
  }

  /** Receives each event from the server (text, binary, compressed, ping, pong, close, violation),
   * starting with those that arrived before this was called. */
  set onEvent(listener: (event: DecoderEvent) => void) {
    this.eventListener = listener;
    const early = this.early;
    this.early = [];
    for (const event of early) listener(event);
  }

  get isOpen(): boolean {
    return !this.closed && !this.sentClose && !this.socket.destroyed;
  }

  sendFrame(opcode: number, payload: Uint8Array | string, fin = true): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(encodeFrame(opcode, payload, { fin, maskKey: nextMaskKey() }));
    return true;
  }

  sendText(text: string): boolean {
    if (!this.isOpen) return false;
    return this.sendFrame(Opcode.Text, text);
  }

  /** Starts the closing handshake (§7.1.2). */
  close(code = 1000, reason = ""): void {
    if (this.sentClose) return;
    this.sentClose = true;
    this.sendFrame(Opcode.Close, encodeClosePayload(code, reason));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when the TCP connection is over. */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("close", () => resolve()));
  }
}
