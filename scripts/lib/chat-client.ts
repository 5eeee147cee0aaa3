// A reconnecting chat client for load and fault tests, speaking the room's
// wire contract (server.ts §8):
//   → {"type":"say","id","text"}
//   ← welcome {name, users, seq, epoch, resumed}, message {seq, id, from, text, time}, error, joined, left
// It keeps what the browser client keeps, in memory:
//   - a transcript, seq → id, deduplicated by seq (a replay may repeat one);
//   - an outbox of messages not yet acknowledged, by id; a message is
//     acknowledged when it comes back from the room with a seq. After a
//     reconnection everything unacknowledged is sent again with the SAME
//     id, so the room can recognise a retry and not sequence it twice;
//   - the epoch and the last seq it holds without a gap, to reconnect with
//     `?since=<seq>&epoch=<epoch>` and get exactly what it missed.
import { Prng } from "./prng.ts";
import { WsLite } from "./ws-lite.ts";

export interface ChatClientOptions {
  port: number;
  host?: string;
  name: string;
  /** The texts this client will say, in order; ids are `${idPrefix}-${index}`. */
  texts: string[];
  idPrefix: string;
  /** At most this many messages sent and not yet acknowledged. */
  window: number;
  /** At least this long between two new messages (0: as fast as the window allows). */
  intervalMs?: number;
  rng: Prng;
  /** Reconnection delay: from minDelayMs, doubling to maxDelayMs, with jitter. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Called when a message is seen for the first time; `replayed` when it came in a resume's replay. */
  onFirstSight?: (id: string, seq: number, replayed: boolean) => void;
  /** Called when one of this client's messages is put on the wire (`retry` when sent again). */
  onSent?: (id: string, retry: boolean) => void;
  /** Returns the one shared copy of an id string (saves memory with many clients). */
  intern?: (id: string) => string;
  /** Called when one of this client's own messages is acknowledged. */
  onAcknowledged?: (id: string, seq: number) => void;
  /** Do not start sending before this resolves (all clients connected, say). */
  startSending?: Promise<void>;
}

export interface ChatClientStats {
  connections: number;
  failedConnections: number;
  /** Messages received again for a seq already in the transcript (replays, retries). */
  repeatedDeliveries: number;
  /** Messages received whose seq already had another id: must stay 0. */
  conflictingDeliveries: number;
  /** Times a resume with since > 0 was not honoured (resumed: false). */
  resumesRefused: number;
  /** Times the room came back with another epoch (its history lost). */
  epochChanges: number;
  /** Messages sent again after a reconnection. */
  resends: number;
  errors: Record<string, number>;
}

export class ReconnectingChatClient {
  readonly options: ChatClientOptions;
  readonly transcript = new Map<number, string>();
  epoch: string | undefined;
  /** The highest seq such that every seq up to it is in the transcript. */
  contiguousSeq = 0;
  readonly stats: ChatClientStats = {
    connections: 0,
    failedConnections: 0,
    repeatedDeliveries: 0,
    conflictingDeliveries: 0,
    resumesRefused: 0,
    epochChanges: 0,
    resends: 0,
    errors: {},
  };
  /** Sent at least once, not acknowledged yet: id → text, in sending order. */
  readonly unacknowledged = new Map<string, string>();
  readonly acknowledged = new Map<string, number>();
  private nextIndex = 0;
  private socket: WsLite | undefined;
  private welcomed = false;
  /** The room's last seq when it welcomed us: messages up to it are replays. */
  private welcomeSeq = 0;
  private stopped = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private sendingAllowed: boolean;
  /** Ids sent on the current connection and not yet acknowledged. */
  private inFlight = 0;
  private lastNewAt = -Infinity;
  private paceTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ChatClientOptions) {
    this.options = options;
    this.sendingAllowed = options.startSending === undefined;
    options.startSending?.then(() => {
      this.sendingAllowed = true;
      this.pump();
    });
  }

  get name(): string {
    return this.options.name;
  }

  /** Every text said and acknowledged. */
  get done(): boolean {
    return this.nextIndex >= this.options.texts.length && this.unacknowledged.size === 0;
  }

  get connected(): boolean {
    return this.socket !== undefined && this.welcomed && this.socket.isOpen;
  }

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.paceTimer);
    this.socket?.close();
    const socket = this.socket;
    if (socket !== undefined) setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** Cuts the connection as a network failure would (no close frame). */
  dropConnection(): void {
    this.socket?.destroy();
  }

  private path(): string {
    const query = new URLSearchParams({ name: this.options.name });
    if (this.epoch !== undefined) {
      query.set("since", String(this.contiguousSeq));
      query.set("epoch", this.epoch);
    }
    return `/?${query.toString()}`;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let socket: WsLite;
    try {
      socket = await WsLite.connect({ port: this.options.port, host: this.options.host, path: this.path(), timeoutMs: 10_000 });
    } catch {
      this.stats.failedConnections++;
      return this.scheduleReconnect();
    }
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.stats.connections++;
    this.socket = socket;
    this.welcomed = false;
    this.inFlight = 0;
    socket.onClose = () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.welcomed = false;
      this.scheduleReconnect();
    };
    socket.onEvent = (event) => {
      if (event.type === "text") this.receive(event.text);
    };
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const min = this.options.minDelayMs ?? 50;
    const max = this.options.maxDelayMs ?? 1000;
    const ceiling = Math.min(max, min * 2 ** Math.min(this.attempt, 10));
    this.attempt++;
    const delay = ceiling / 2 + this.options.rng.float() * (ceiling / 2);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  private receive(text: string): void {
    let message: { type?: string; seq?: number; id?: string; epoch?: string; resumed?: boolean; code?: string };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      this.stats.errors["not-json"] = (this.stats.errors["not-json"] ?? 0) + 1;
      return;
    }
    switch (message.type) {
      case "welcome":
        this.welcomeSeq = typeof message.seq === "number" ? message.seq : 0;
        return this.welcome(message.epoch ?? "", message.resumed === true);
      case "message":
        if (typeof message.seq === "number" && typeof message.id === "string") this.message(message.seq, message.id);
        return;
      case "error": {
        const code = message.code ?? "unknown";
        this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
        return;
      }
      default:
        return; // joined, left, pong
    }
  }

  private welcome(epoch: string, resumed: boolean): void {
    if (this.epoch !== undefined && epoch !== this.epoch) {
      // The room lost its history: our seqs mean nothing there any more.
      this.stats.epochChanges++;
      this.transcript.clear();
      this.contiguousSeq = 0;
    } else if (this.epoch !== undefined && this.contiguousSeq > 0 && !resumed) this.stats.resumesRefused++;
    this.epoch = epoch;
    this.welcomed = true;
    this.attempt = 0;
    // Everything sent and not acknowledged goes again, with the same ids, in order.
    for (const [id, text] of this.unacknowledged) {
      this.stats.resends++;
      this.say(id, text, true);
    }
    this.pump();
  }

  private message(seq: number, rawId: string): void {
    const id = this.options.intern?.(rawId) ?? rawId;
    const known = this.transcript.get(seq);
    if (known !== undefined) {
      this.stats.repeatedDeliveries++;
      if (known !== id) this.stats.conflictingDeliveries++;
    } else {
      this.transcript.set(seq, id);
      while (this.transcript.has(this.contiguousSeq + 1)) this.contiguousSeq++;
      this.options.onFirstSight?.(id, seq, seq <= this.welcomeSeq);
    }
    if (this.unacknowledged.has(id)) {
      this.unacknowledged.delete(id);
      this.acknowledged.set(id, seq);
      this.inFlight = Math.max(0, this.inFlight - 1);
      this.options.onAcknowledged?.(id, seq);
      this.pump();
    }
  }

  private say(id: string, text: string, retry: boolean): void {
    if (this.socket?.sendText(JSON.stringify({ type: "say", id, text }))) {
      this.inFlight++;
      this.options.onSent?.(id, retry);
    }
  }

  /** Sends new messages while the window has room. */
  private pump(): void {
    if (!this.sendingAllowed || !this.connected) return;
    const interval = this.options.intervalMs ?? 0;
    while (this.inFlight < this.options.window && this.nextIndex < this.options.texts.length) {
      if (interval > 0) {
        // Each client starts at a random point of its interval: no synchronised bursts.
        if (this.lastNewAt === -Infinity) this.lastNewAt = performance.now() - interval + this.options.rng.float() * interval;
        const wait = this.lastNewAt + interval - performance.now();
        if (wait > 0) {
          if (this.paceTimer === undefined) {
            this.paceTimer = setTimeout(() => {
              this.paceTimer = undefined;
              this.pump();
            }, wait);
          }
          return;
        }
        this.lastNewAt = performance.now();
      }
      const index = this.nextIndex++;
      const id = `${this.options.idPrefix}-${index}`;
      const text = this.options.texts[index]!;
      this.unacknowledged.set(id, text);
      this.say(id, text, false);
    }
  }

  /** The transcript as a list of ids, in seq order, from seq 1; undefined marks a gap. */
  orderedIds(): Array<string | undefined> {
    let highest = 0;
    for (const seq of this.transcript.keys()) highest = Math.max(highest, seq);
    const ids: Array<string | undefined> = [];
    for (let seq = 1; seq <= highest; seq++) ids.push(this.transcript.get(seq));
    return ids;
  }
}
