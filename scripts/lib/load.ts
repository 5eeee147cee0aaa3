// A load run on the chat room: C reconnecting clients
// (test/support/chat-client.ts) each say M messages, and then every
// transcript is compared. Shared by test/load.test.ts and scripts/loadtest.ts.
import { ReconnectingChatClient } from "../../test/support/chat-client.ts";
import { Prng } from "../../test/support/prng.ts";
import { waitUntil } from "../../test/support/wait.ts";

export interface LoadOptions {
  port: number;
  host?: string;
  clients: number;
  messagesPerClient: number;
  /** Characters per message (the room accepts up to 2000). */
  textLength: number;
  /** Messages each client may have unacknowledged at once. */
  window: number;
  /** Milliseconds between two new messages of one client (0: only the window limits). */
  intervalMs?: number;
  seed: number;
  /** Clients connected at once while the room fills up. */
  connectBatch?: number;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** Latencies in 0.1 ms buckets up to 120 s: percentiles without keeping every sample. */
export class LatencyHistogram {
  private readonly buckets = new Uint32Array(1_200_001);
  count = 0;
  max = 0;

  record(milliseconds: number): void {
    const bucket = Math.min(this.buckets.length - 1, Math.max(0, Math.round(milliseconds * 10)));
    this.buckets[bucket]!++;
    this.count++;
    this.max = Math.max(this.max, milliseconds);
  }

  percentile(fraction: number): number {
    if (this.count === 0) return NaN;
    const wanted = Math.ceil(this.count * fraction);
    let seen = 0;
    for (let bucket = 0; bucket < this.buckets.length; bucket++) {
      seen += this.buckets[bucket]!;
      if (seen >= wanted) return bucket / 10;
    }
    return this.max;
  }
}

export class LoadRun {
  readonly options: LoadOptions;
  readonly clients: ReconnectingChatClient[] = [];
  readonly latency = new LatencyHistogram();
  /** When each id was first put on the wire. */
  private readonly sentAt = new Map<string, number>();
  private readonly ids = new Map<string, string>();
  private releaseSending: () => void = () => {};
  private readonly sendingReleased = new Promise<void>((resolve) => (this.releaseSending = resolve));
  acknowledged = 0;
  /** First sightings of a message by a client: one per client per message when all goes well. */
  deliveries = 0;
  replayedDeliveries = 0;
  startedSendingAt = 0;
  finishedAt = 0;

  constructor(options: LoadOptions) {
    this.options = options;
    const rng = new Prng(options.seed);
    const filler = [..."abcdefghijklmnopqrstuvwxyz 0123456789 éü 中文 😀"];
    for (let index = 0; index < options.clients; index++) {
      const prefix = `c${index}`;
      const texts: string[] = [];
      for (let message = 0; message < options.messagesPerClient; message++) {
        const characters = [...`${prefix} says #${message}:`];
        while (characters.length < options.textLength) characters.push(filler[rng.below(filler.length)]!);
        texts.push(characters.slice(0, Math.max(options.textLength, 1)).join(""));
      }
      this.clients.push(
        new ReconnectingChatClient({
          port: options.port,
          host: options.host,
          name: `load${index}`,
          idPrefix: prefix,
          texts,
          window: options.window,
          intervalMs: options.intervalMs,
          rng: new Prng(rng.uint32()),
          minDelayMs: options.minDelayMs,
          maxDelayMs: options.maxDelayMs,
          startSending: this.sendingReleased,
          intern: (id) => {
            const known = this.ids.get(id);
            if (known !== undefined) return known;
            this.ids.set(id, id);
            return id;
          },
          onSent: (id) => {
            if (!this.sentAt.has(id)) this.sentAt.set(id, performance.now());
          },
          onAcknowledged: () => this.acknowledged++,
          onFirstSight: (id, _seq, replayed) => {
            this.deliveries++;
            if (replayed) this.replayedDeliveries++;
            const sent = this.sentAt.get(id);
            if (sent !== undefined) this.latency.record(performance.now() - sent);
          },
        }),
      );
    }
  }

  get totalMessages(): number {
    return this.options.clients * this.options.messagesPerClient;
  }

  /** Connects every client (in batches) and, once all are in the room, lets them talk. */
  async start(connectTimeoutMs = 60_000): Promise<void> {
    const batch = this.options.connectBatch ?? 50;
    for (let index = 0; index < this.clients.length; index += batch) {
      const group = this.clients.slice(index, index + batch);
      for (const client of group) client.start();
      const what = `clients ${index}-${index + group.length - 1} to join`;
      await waitUntil(() => group.every((client) => client.connected), connectTimeoutMs, what);
    }
    this.startedSendingAt = performance.now();
    this.releaseSending();
  }

  /** Every message acknowledged, and every client holding all of them. */
  get complete(): boolean {
    const total = this.totalMessages;
    return this.clients.every((client) => client.done && client.contiguousSeq >= total);
  }

  async waitUntilComplete(timeoutMs: number): Promise<void> {
    await waitUntil(() => this.complete, timeoutMs, "every client to have every message");
    this.finishedAt = performance.now();
  }

  stop(): void {
    for (const client of this.clients) client.stop();
  }

  progress(): string {
    const holding = this.clients.reduce((least, client) => Math.min(least, client.contiguousSeq), Infinity);
    const connected = this.clients.filter((client) => client.connected).length;
    return (
      `acknowledged ${this.acknowledged}/${this.totalMessages}, every client holds ≥ ${holding}, ` +
      `${connected}/${this.clients.length} connected`
    );
  }

  /** Everything that is wrong with the final transcripts; empty when all is well. */
  verify(options: { exactlyOnceOnTheWire?: boolean } = {}): string[] {
    const problems: string[] = [];
    const add = (problem: string) => {
      if (problems.length < 20) problems.push(problem);
    };
    const reference = this.clients[0]!.orderedIds();
    const gaps = reference.filter((id) => id === undefined).length;
    if (gaps > 0) add(`${this.clients[0]!.name}'s transcript has ${gaps} gap(s)`);
    if (reference.length !== this.totalMessages)
      add(`the room sequenced ${reference.length} messages; ${this.totalMessages} were said`);
    const seen = new Map<string, number>();
    reference.forEach((id, index) => {
      if (id === undefined) return;
      const earlier = seen.get(id);
      if (earlier !== undefined) add(`message ${id} was sequenced twice: seq ${earlier} and seq ${index + 1}`);
      seen.set(id, index + 1);
    });
    for (const client of this.clients) {
      for (let message = 0; message < this.options.messagesPerClient; message++) {
        const id = `${client.options.idPrefix}-${message}`;
        if (!seen.has(id)) add(`message ${id} was lost`);
        const acknowledgedAt = client.acknowledged.get(id);
        if (acknowledgedAt === undefined) add(`message ${id} was never acknowledged`);
        else if (seen.get(id) !== acknowledgedAt)
          add(`message ${id} was acknowledged as seq ${acknowledgedAt} but is seq ${seen.get(id)}`);
      }
      const ids = client.orderedIds();
      if (ids.length !== reference.length || ids.some((id, index) => id !== reference[index])) {
        const first = ids.findIndex((id, index) => id !== reference[index]);
        add(
          `${client.name}'s transcript differs from ${this.clients[0]!.name}'s (length ${ids.length} vs ` +
            `${reference.length}, first difference at seq ${first + 1})`,
        );
      }
      // Order on the wire: on one connection the room sends in seq order, and a
      // resume continues where the last connection ended, so the seqs a client
      // saw for the first time came 1, 2, 3, … (the transcript above is by seq
      // and cannot tell).
      const firstOutOfOrder = client.firstSightings.findIndex((seq, index) => seq !== index + 1);
      if (firstOutOfOrder !== -1 || client.firstSightings.length !== reference.length) {
        const around = client.firstSightings.slice(Math.max(0, firstOutOfOrder - 2), firstOutOfOrder + 3);
        add(
          `${client.name} saw seqs first in the order …${around.join(", ")}… (position ${firstOutOfOrder + 1}), not ` +
            `1, 2, 3, …`,
        );
      }
      if (client.stats.conflictingDeliveries > 0)
        add(`${client.name} received ${client.stats.conflictingDeliveries} seq(s) with two different ids`);
      if (client.stats.epochChanges > 0)
        add(`${client.name} saw the room's epoch change ${client.stats.epochChanges} time(s)`);
      if (options.exactlyOnceOnTheWire && client.stats.repeatedDeliveries > 0) {
        add(`${client.name} received ${client.stats.repeatedDeliveries} message(s) more than once`);
      }
    }
    return problems;
  }

  summary(): {
    clients: number;
    messages: number;
    deliveries: number;
    seconds: number;
    deliveriesPerSecond: number;
    p50: number;
    p99: number;
    max: number;
    connections: number;
    failedConnections: number;
    resends: number;
    repeatedDeliveries: number;
    replayedDeliveries: number;
    resumesRefused: number;
    errors: Record<string, number>;
  } {
    const seconds = ((this.finishedAt || performance.now()) - this.startedSendingAt) / 1000;
    const errors: Record<string, number> = {};
    let connections = 0;
    let failedConnections = 0;
    let resends = 0;
    let repeatedDeliveries = 0;
    let resumesRefused = 0;
    for (const client of this.clients) {
      connections += client.stats.connections;
      failedConnections += client.stats.failedConnections;
      resends += client.stats.resends;
      repeatedDeliveries += client.stats.repeatedDeliveries;
      resumesRefused += client.stats.resumesRefused;
      for (const [code, count] of Object.entries(client.stats.errors)) errors[code] = (errors[code] ?? 0) + count;
    }
    return {
      clients: this.options.clients,
      messages: this.totalMessages,
      deliveries: this.deliveries,
      seconds,
      deliveriesPerSecond: this.deliveries / seconds,
      p50: this.latency.percentile(0.5),
      p99: this.latency.percentile(0.99),
      max: this.latency.max,
      connections,
      failedConnections,
      resends,
      repeatedDeliveries,
      replayedDeliveries: this.replayedDeliveries,
      resumesRefused,
      errors,
    };
  }
}
