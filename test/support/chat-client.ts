// The one chat client of the tests and the scripts, on top of RawClient: it
// speaks the chat room's JSON wire contract (README, "Wire contract").
//
//   ChatClient               one connection: reads the server's messages in
//                            order (next, expect, sync), says things, and
//                            keeps everything it received (received,
//                            messages) for tests that look at it as a whole.
//   ReconnectingChatClient   many ChatClient connections over time, as the
//                            page makes them: an outbox resent with the same
//                            ids, resume with since and epoch; for the load
//                            and fault tests and npm run loadtest.
//   useChatRooms             the servers, clients and temporary folder of a
//                            test file, all gone after it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { after } from "node:test";
import type { ChatMessage, DecoderEvent, ServerConfig, WelcomeMessage } from "../../server.ts";
import { serveInProcess, type InProcessServer } from "./in-process.ts";
import type { Prng } from "./prng.ts";
import { RawClient } from "./raw-client.ts";
import { spawnServer, type SpawnedServer } from "./spawn.ts";

/** A JSON message as received, before it is checked to be one of the wire contract's (server.ts: ServerMessage). */
export interface ReceivedMessage {
  type: string;
  [field: string]: unknown;
}

/** The wire contract's own types (server.ts), as this client checks them. */
export type Welcome = WelcomeMessage;
export type StoredMessage = ChatMessage;

// The checks below build their failure messages only when they fail: a
// welcome lists every member, and a flood test reads thousands of them.

export function parseServerMessage(text: string): ReceivedMessage {
  const value: unknown = JSON.parse(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) assert.fail(`not a JSON object: ${text}`);
  const message = value as ReceivedMessage;
  if (typeof message.type !== "string") assert.fail(`no type in ${text}`);
  return message;
}

export function asWelcome(message: ReceivedMessage): Welcome {
  const wrong = (what: string) => assert.fail(`${what}: ${JSON.stringify(message).slice(0, 2000)}`);
  if (message.type !== "welcome") wrong("expected a welcome");
  if (typeof message.name !== "string") wrong("name is a string");
  if (!Array.isArray(message.users) || !message.users.every((user) => typeof user === "string"))
    wrong("users is a list of names");
  if (typeof message.you !== "string" || message.you.length === 0) wrong("you is our public id");
  if (!Array.isArray(message.members)) wrong("members is a list");
  for (const member of message.members as unknown[]) {
    const { name, sid } = member as { name?: unknown; sid?: unknown };
    if (typeof name !== "string" || typeof sid !== "string") wrong("a member has a name and a sid");
  }
  if (!Number.isSafeInteger(message.seq)) wrong("seq is an integer");
  if (typeof message.epoch !== "string" || message.epoch.length === 0) wrong("epoch is a string, not empty");
  if (typeof message.resumed !== "boolean") wrong("resumed is a boolean");
  return message as unknown as Welcome;
}

export function asStored(message: ReceivedMessage): StoredMessage {
  const { seq, id, sid, from, text, time } = message;
  if (message.type !== "message") assert.fail(`expected a message, got ${JSON.stringify(message)}`);
  if (
    typeof seq !== "number" ||
    typeof id !== "string" ||
    typeof from !== "string" ||
    typeof text !== "string" ||
    typeof time !== "number" ||
    typeof sid !== "string"
  ) {
    assert.fail(`a message has seq, id, sid (its sender's), from, text and time: ${JSON.stringify(message)}`);
  }
  return { seq, id, sid, from, text, time };
}

export function isClose(event: DecoderEvent): event is Extract<DecoderEvent, { type: "close" }> {
  return event.type === "close";
}

/** `name=…` for a join query. */
export function nameQuery(name: string): string {
  return `name=${encodeURIComponent(name)}`;
}

let nextPing = 1;
let nextId = 1;

export interface JoinOptions {
  /** Skip joined/left/away/back in next() (for tests where presence is only noise). */
  ignorePresence?: boolean;
  host?: string;
  /** How long the handshake and the welcome may take (default 5 s). */
  timeoutMs?: number;
  /** Answer the server's pings and close frames (RawClient's respond). */
  respond?: boolean;
}

export class ChatClient {
  readonly raw: RawClient;
  welcome!: Welcome;
  private readonly ignorePresence: boolean;
  /** Index into raw.events of the next event not read yet. */
  private position = 0;
  /** What received() and messages() have parsed so far, and up to which event. */
  private readonly parsed: ReceivedMessage[] = [];
  private readonly stored: StoredMessage[] = [];
  private eventsParsed = 0;

  private constructor(raw: RawClient, ignorePresence: boolean) {
    this.raw = raw;
    this.ignorePresence = ignorePresence;
  }

  /** Opens ws://127.0.0.1:port/?query and reads the welcome. */
  static async join(port: number, query = "", options: JoinOptions = {}): Promise<ChatClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const raw = await RawClient.open(port, {
      path: query === "" ? "/" : `/?${query}`,
      host: options.host,
      timeoutMs,
      respond: options.respond,
    });
    if (raw.handshake?.status !== 101) {
      raw.destroy();
      throw new Error(`handshake failed: ${JSON.stringify(raw.handshake)}`);
    }
    const client = new ChatClient(raw, options.ignorePresence ?? false);
    try {
      client.welcome = asWelcome(await client.next(timeoutMs));
    } catch (error) {
      raw.destroy();
      throw error;
    }
    return client;
  }

  /** Sends one text frame; false when the connection can no longer send. */
  send(message: object | string): boolean {
    return this.raw.sendText(typeof message === "string" ? message : JSON.stringify(message));
  }

  say(id: string, text: string): boolean {
    return this.send({ type: "say", id, text });
  }

  /** Says `text` with a new unique id, and returns the id. */
  sayText(text: string): string {
    const id = `${this.welcome.you}-${nextId++}`;
    this.say(id, text);
    return id;
  }

  /** Says something and returns the broadcast copy that comes back: the acknowledgement. */
  async sayAndAck(id: string, text: string): Promise<StoredMessage> {
    this.say(id, text);
    return asStored(await this.expect("message"));
  }

  /** The replayed messages: everything up to a ping's pong, all of type message. */
  async replay(): Promise<StoredMessage[]> {
    return (await this.sync()).map(asStored);
  }

  /** The next JSON text frame from the server (other frames are skipped). */
  async next(timeoutMs = 5000): Promise<ReceivedMessage> {
    let found: string | undefined;
    await this.raw.waitFor(
      () => {
        while (this.position < this.raw.events.length) {
          const event = this.raw.events[this.position++]!;
          if (
            event.type === "text" &&
            !(this.ignorePresence && /^\{"type":"(joined|left|away|back)"/.test(event.text))
          ) {
            found = event.text;
            return true;
          }
        }
        return this.raw.closed;
      },
      timeoutMs,
      "a JSON message",
    );
    if (found === undefined) {
      const close = this.raw.events.find(isClose);
      throw new Error(`the connection closed instead of sending a message; close: ${JSON.stringify(close)}`);
    }
    return parseServerMessage(found);
  }

  async expect(type: string): Promise<ReceivedMessage> {
    const message = await this.next();
    assert.equal(message.type, type, `expected a ${type}, got ${JSON.stringify(message)}`);
    return message;
  }

  /** A barrier: pings, and returns every message that arrived before the
   * pong. Whatever the server sent this client because of something it
   * handled earlier is in the list, since it writes to a socket in order. */
  async sync(): Promise<ReceivedMessage[]> {
    const t = nextPing++;
    this.send({ type: "ping", t });
    const before: ReceivedMessage[] = [];
    for (;;) {
      const message = await this.next();
      if (message.type === "pong" && message.t === t) return before;
      before.push(message);
    }
  }

  /** Every JSON message received so far, read or not, the welcome first. */
  received(): ReceivedMessage[] {
    this.parseNewEvents();
    return [...this.parsed];
  }

  /** Every chat message received so far, in arrival order. */
  messages(): StoredMessage[] {
    this.parseNewEvents();
    return [...this.stored];
  }

  /** Parses the events that arrived since the last call, once each: tests poll these lists. */
  private parseNewEvents(): void {
    const { events } = this.raw;
    for (; this.eventsParsed < events.length; this.eventsParsed++) {
      const event = events[this.eventsParsed]!;
      if (event.type !== "text") continue;
      const message = parseServerMessage(event.text);
      this.parsed.push(message);
      if (message.type === "message") this.stored.push(asStored(message));
    }
  }

  /** Waits until a chat message with this text has arrived, and returns it. */
  async waitForMessage(text: string, timeoutMs = 10_000): Promise<StoredMessage> {
    const find = () => this.messages().find((message) => message.text === text);
    await this.raw.waitFor(() => find() !== undefined, timeoutMs, `the message ${JSON.stringify(text)}`);
    return find()!;
  }

  /** The code of the server's close frame, once it arrives. */
  async closeCode(timeoutMs = 5000): Promise<number> {
    await this.raw.waitFor(() => this.raw.events.some(isClose), timeoutMs, "a close frame");
    return this.raw.events.find(isClose)!.code;
  }

  /** From now on hands every text frame not read yet to `handler` instead of keeping it. */
  listen(handler: (text: string) => void): void {
    const skip = this.position;
    let index = 0;
    this.raw.onEvent = (event) => {
      if (index++ < skip) return;
      if (event.type === "text") handler(event.text);
    };
  }

  /** Leaves politely: a close frame, then waits for the server to end the TCP connection. */
  async leave(): Promise<void> {
    if (this.raw.closed) return;
    this.raw.close(1000);
    this.raw.socket.end();
    await this.raw.waitForClose();
  }

  destroy(): void {
    this.raw.destroy();
  }
}

// ── The reconnecting client of the load and fault tests ─────────────────────
// It keeps what the browser client keeps, in memory:
//   - a transcript, seq → id, deduplicated by seq (a replay may repeat one);
//   - an outbox of messages not yet acknowledged, by id; a message is
//     acknowledged when it comes back from the room with a seq. After a
//     reconnection everything unacknowledged is sent again with the SAME
//     id, so the room can recognise a retry and not sequence it twice;
//   - the epoch and the last seq it holds without a gap, to reconnect with
//     `?since=<seq>&epoch=<epoch>` and get exactly what it missed.
//   - the order in which it saw each seq first: on one connection the room
//     sends in seq order, and a resume continues where the last one ended,
//     so that order must be 1, 2, 3, … whatever was cut or killed.

export interface ReconnectingOptions {
  /** The server's port; a function is asked again at every attempt (several servers of one room). */
  port: number | (() => number);
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

export interface ReconnectingStats {
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

/** What several talkers hold as acknowledged, checked for what the wire
 * contract promises: never two ids for one seq, the epoch kept, each id with
 * one seq, `expected` messages in all, and no two messages at one seq.
 * Returns each id's seq. */
export function assertEachAcknowledgedOnce(
  talkers: readonly ReconnectingChatClient[],
  expected: number,
): Map<string, number> {
  const acknowledged = new Map<string, number>();
  for (const talker of talkers) {
    assert.equal(talker.stats.conflictingDeliveries, 0, "never two ids for one seq");
    assert.equal(talker.stats.epochChanges, 0, "the room was kept: no new epoch");
    for (const [id, seq] of talker.acknowledged) {
      assert.ok([undefined, seq].includes(acknowledged.get(id)), `${id} has one seq`);
      acknowledged.set(id, seq);
    }
  }
  assert.equal(acknowledged.size, expected, "every message acknowledged once");
  assert.equal(new Set(acknowledged.values()).size, expected, "no two messages share a seq");
  return acknowledged;
}

export class ReconnectingChatClient {
  readonly options: ReconnectingOptions;
  readonly transcript = new Map<number, string>();
  /** Each seq in the order it was first seen, across connections. */
  readonly firstSightings: number[] = [];
  epoch: string | undefined;
  /** The highest seq such that every seq up to it is in the transcript. */
  contiguousSeq = 0;
  readonly stats: ReconnectingStats = {
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
  private client: ChatClient | undefined;
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

  constructor(options: ReconnectingOptions) {
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
    return this.client !== undefined && this.client.raw.isOpen;
  }

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.paceTimer);
    const client = this.client;
    if (client === undefined) return;
    client.raw.close(1000);
    setTimeout(() => client.destroy(), 1000).unref(); // if the server does not finish the close
  }

  /** Cuts the connection as a network failure would (no close frame). */
  dropConnection(): void {
    this.client?.destroy();
  }

  private query(): string {
    const query = new URLSearchParams({ name: this.options.name });
    if (this.epoch !== undefined) {
      query.set("since", String(this.contiguousSeq));
      query.set("epoch", this.epoch);
    }
    return query.toString();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let client: ChatClient;
    try {
      const { port } = this.options;
      client = await ChatClient.join(typeof port === "number" ? port : port(), this.query(), {
        host: this.options.host,
        timeoutMs: 10_000,
        respond: true,
      });
    } catch {
      this.stats.failedConnections++;
      return this.scheduleReconnect();
    }
    if (this.stopped) {
      client.destroy();
      return;
    }
    this.stats.connections++;
    this.client = client;
    this.inFlight = 0;
    this.welcome(client.welcome);
    client.raw.onClose = () => this.connectionEnded(client);
    client.listen((text) => this.receive(text));
    if (client.raw.closed) this.connectionEnded(client);
  }

  private connectionEnded(client: ChatClient): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.scheduleReconnect();
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
    let message: { type?: string; seq?: number; id?: string; code?: string };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      this.stats.errors["not-json"] = (this.stats.errors["not-json"] ?? 0) + 1;
      return;
    }
    switch (message.type) {
      case "message":
        if (typeof message.seq === "number" && typeof message.id === "string") this.message(message.seq, message.id);
        return;
      case "error": {
        const code = message.code ?? "unknown";
        this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
        return;
      }
      default:
        return; // joined, left, away, back, pong
    }
  }

  private welcome(welcome: Welcome): void {
    this.welcomeSeq = welcome.seq;
    if (this.epoch !== undefined && welcome.epoch !== this.epoch) {
      // The room lost its history: our seqs mean nothing there any more.
      this.stats.epochChanges++;
      this.transcript.clear();
      this.firstSightings.length = 0;
      this.contiguousSeq = 0;
    } else if (this.epoch !== undefined && this.contiguousSeq > 0 && !welcome.resumed) this.stats.resumesRefused++;
    this.epoch = welcome.epoch;
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
      this.firstSightings.push(seq);
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
    if (this.client?.raw.isOpen && this.client.say(id, text)) {
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
        if (this.lastNewAt === -Infinity) {
          this.lastNewAt = performance.now() - interval + this.options.rng.float() * interval;
        }
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

// ── The rooms of a test file ────────────────────────────────────────────────

type AnyServer = InProcessServer | SpawnedServer;

/**
 * The servers, chat clients and temporary folder of one test file, all gone
 * after it. `config` goes to every in-process server started, `args` to
 * every spawned one.
 */
export function useChatRooms(options: {
  folderPrefix: string;
  config?: Partial<ServerConfig>;
  args?: readonly string[];
  ignorePresence?: boolean;
}) {
  const directory = mkdtempSync(joinPath(tmpdir(), options.folderPrefix));
  const servers = new Set<AnyServer>();
  const clients = new Set<ChatClient>();
  const stopOne = async (server: AnyServer): Promise<void> => {
    servers.delete(server);
    if ("child" in server) await server.stop("SIGKILL");
    else await server.stop();
  };
  after(async () => {
    for (const client of clients) client.destroy();
    await Promise.all([...servers].map(stopOne));
    rmSync(directory, { recursive: true, force: true });
  });
  return {
    directory,
    /** A server in this process. */
    async start(config: Partial<ServerConfig> = {}): Promise<InProcessServer> {
      const server = await serveInProcess({ ...options.config, ...config });
      servers.add(server);
      return server;
    },
    /** A server process, for the tests that kill it. */
    async spawn(args: string[] = []): Promise<SpawnedServer> {
      const server = await spawnServer([...(options.args ?? []), ...args]);
      servers.add(server);
      return server;
    },
    /** SIGKILL for a process; for a server in this process, everything closed at once. */
    stop: stopOne,
    async join(server: { port: number }, query = ""): Promise<ChatClient> {
      const client = await ChatClient.join(server.port, query, { ignorePresence: options.ignorePresence ?? false });
      clients.add(client);
      return client;
    },
  };
}
