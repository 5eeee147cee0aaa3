// A WebSocket client written for tests, on a raw TCP socket: it lets a test
// send any bytes at all (bad frames too) and see exactly what the server
// sends back. Frames from the server are read with the server's own decoder
// in client mode (expectMasked: false), which is itself tested separately.
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { FrameDecoder, encodeFrame, Opcode, type DecoderEvent } from "../server.ts";

export interface RawClientOptions {
  path?: string;
  headers?: Record<string, string>;
  /** Raw request to send instead of a well-formed one. */
  request?: string;
  maxPayload?: number;
  /** Allow RSV1 (when the test negotiates permessage-deflate itself). */
  allowCompression?: boolean;
}

export interface HandshakeResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export class RawClient {
  readonly socket: Socket;
  readonly events: DecoderEvent[] = [];
  handshake: HandshakeResult | undefined;
  closed = false;
  private pending = Buffer.alloc(0);
  private decoder: FrameDecoder;
  private waiters = new Set<() => void>();

  private constructor(socket: Socket, options: RawClientOptions) {
    this.socket = socket;
    this.decoder = new FrameDecoder({
      expectMasked: false,
      maxPayload: options.maxPayload ?? 64 * 1024 * 1024,
      allowCompression: options.allowCompression ?? false,
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => {
      this.closed = true;
      this.notify();
    });
    socket.on("error", () => {});
  }

  /** Opens a TCP connection and sends the upgrade request; resolves once the
   * status line and headers of the answer have arrived. */
  static async open(port: number, options: RawClientOptions = {}): Promise<RawClient> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.setNoDelay(true);
    const client = new RawClient(socket, options);
    const key = randomBytes(16).toString("base64");
    const headers: Record<string, string> = {
      Host: `127.0.0.1:${port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": key,
      "Sec-WebSocket-Version": "13",
      ...options.headers,
    };
    const request =
      options.request ??
      `GET ${options.path ?? "/echo"} HTTP/1.1\r\n` +
        Object.entries(headers)
          .filter(([, value]) => value !== "")
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join("") +
        "\r\n";
    socket.write(request);
    await client.waitFor(() => client.handshake !== undefined || client.closed, 5000, "handshake response");
    return client;
  }

  private onData(chunk: Buffer): void {
    if (this.handshake === undefined) {
      this.pending = Buffer.concat([this.pending, chunk]);
      const end = this.pending.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = this.pending.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(head[0]!.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = this.pending.subarray(end + 4);
      this.handshake = { status, headers, body: status === 101 ? "" : rest.toString("utf8") };
      this.pending = Buffer.alloc(0);
      if (status === 101 && rest.length > 0) this.events.push(...this.decoder.receive(Buffer.from(rest)));
    } else if (this.handshake.status === 101) {
      this.events.push(...this.decoder.receive(Buffer.from(chunk)));
    } else {
      this.handshake.body += chunk.toString("utf8");
    }
    this.notify();
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
        reject(new Error(`timed out waiting for ${what}; events so far: ${JSON.stringify(this.events.map(describe))}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for the next event of this type (after `from`, default: any seen so far counts) and returns it. */
  async next<T extends DecoderEvent["type"]>(type: T, timeoutMs = 5000): Promise<Extract<DecoderEvent, { type: T }>> {
    const start = this.consumed[type] ?? 0;
    let found: DecoderEvent | undefined;
    await this.waitFor(() => {
      const matching = this.events.filter((event) => event.type === type);
      found = matching[start];
      return found !== undefined;
    }, timeoutMs, `a ${type} event`);
    this.consumed[type] = start + 1;
    return found as Extract<DecoderEvent, { type: T }>;
  }
  private consumed: Partial<Record<string, number>> = {};

  /** Sends raw bytes. */
  write(bytes: Uint8Array | string): void {
    this.socket.write(bytes);
  }

  /** Sends one masked frame, as a client must. */
  sendFrame(opcode: number, payload: Uint8Array | string = "", options: { fin?: boolean; rsv1?: boolean } = {}): void {
    this.socket.write(encodeFrame(opcode, payload, { ...options, maskKey: randomBytes(4) }));
  }

  sendText(text: string): void {
    this.sendFrame(Opcode.Text, text);
  }

  /** Waits until the server closes the TCP connection. */
  waitForClose(timeoutMs = 5000): Promise<void> {
    return this.waitFor(() => this.closed, timeoutMs, "the TCP connection to close");
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function describe(event: DecoderEvent): unknown {
  switch (event.type) {
    case "text":
      return { text: event.text.slice(0, 200) };
    case "binary":
    case "ping":
    case "pong":
      return { [event.type]: event.data.length };
    default:
      return event;
  }
}
