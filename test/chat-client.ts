// A small chat client for tests, on top of RawClient: it speaks the chat
// room's JSON wire contract and reads the server's messages in order.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { after } from "node:test";
import { encodeClosePayload, Opcode, type DecoderEvent } from "../server.ts";
import { startServer, type RunningServer } from "./helpers.ts";
import { RawClient } from "./raw-client.ts";

export interface ServerMessage {
  type: string;
  [field: string]: unknown;
}

export interface Welcome {
  type: "welcome";
  name: string;
  /** Our own public id: the `sid` of our messages and presence notices. */
  you: string;
  users: string[];
  members: Array<{ name: string; sid: string; away?: true }>;
  seq: number;
  epoch: string;
  resumed: boolean;
}

export interface StoredMessage {
  seq: number;
  id: string;
  sid: string;
  from: string;
  text: string;
  time: number;
}

export function parseServerMessage(text: string): ServerMessage {
  const value: unknown = JSON.parse(text);
  assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), `not a JSON object: ${text}`);
  const message = value as ServerMessage;
  assert.equal(typeof message.type, "string", `no type in ${text}`);
  return message;
}

export function asWelcome(message: ServerMessage): Welcome {
  assert.equal(message.type, "welcome", `expected a welcome, got ${JSON.stringify(message)}`);
  assert.equal(typeof message.name, "string");
  assert.ok(Array.isArray(message.users) && message.users.every((user) => typeof user === "string"), "users is a list of names");
  assert.ok(typeof message.you === "string" && message.you.length > 0, "you is our public id");
  assert.ok(Array.isArray(message.members), "members is a list");
  for (const member of message.members as unknown[]) {
    const { name, sid } = member as { name?: unknown; sid?: unknown };
    assert.ok(typeof name === "string" && typeof sid === "string", `a member has a name and a sid: ${JSON.stringify(member)}`);
  }
  assert.ok(Number.isSafeInteger(message.seq), "seq is an integer");
  assert.equal(typeof message.epoch, "string");
  assert.ok((message.epoch as string).length > 0, "epoch is not empty");
  assert.equal(typeof message.resumed, "boolean");
  return message as unknown as Welcome;
}

export function isClose(event: DecoderEvent): event is Extract<DecoderEvent, { type: "close" }> {
  return event.type === "close";
}

let nextPing = 1;

export class ChatClient {
  readonly raw: RawClient;
  welcome!: Welcome;
  /** Skip joined/left notices in next() (for tests where presence is only noise). */
  private readonly ignorePresence: boolean;
  /** Index into raw.events of the next event not read yet. */
  private position = 0;

  private constructor(raw: RawClient, ignorePresence: boolean) {
    this.raw = raw;
    this.ignorePresence = ignorePresence;
  }

  /** Opens ws://127.0.0.1:port/?query and reads the welcome. */
  static async join(port: number, query = "", options: { ignorePresence?: boolean } = {}): Promise<ChatClient> {
    const raw = await RawClient.open(port, { path: query === "" ? "/" : `/?${query}` });
    if (raw.handshake?.status !== 101) {
      raw.destroy();
      throw new Error(`handshake failed: ${JSON.stringify(raw.handshake)}`);
    }
    const client = new ChatClient(raw, options.ignorePresence ?? false);
    client.welcome = asWelcome(await client.next());
    return client;
  }

  send(message: object | string): void {
    this.raw.sendText(typeof message === "string" ? message : JSON.stringify(message));
  }

  say(id: string, text: string): void {
    this.send({ type: "say", id, text });
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
  async next(timeoutMs = 5000): Promise<ServerMessage> {
    let found: string | undefined;
    await this.raw.waitFor(
      () => {
        while (this.position < this.raw.events.length) {
          const event = this.raw.events[this.position++]!;
          if (event.type === "text" && !(this.ignorePresence && /^\{"type":"(joined|left|away|back)"/.test(event.text))) {
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
      throw new Error(`the connection closed instead of sending a message; close: ${JSON.stringify(this.raw.events.find(isClose))}`);
    }
    return parseServerMessage(found);
  }

  async expect(type: string): Promise<ServerMessage> {
    const message = await this.next();
    assert.equal(message.type, type, `expected a ${type}, got ${JSON.stringify(message)}`);
    return message;
  }

  /** A barrier: pings, and returns every message that arrived before the
   * pong. Whatever the server sent this client because of something it
   * handled earlier is in the list, since it writes to a socket in order. */
  async sync(): Promise<ServerMessage[]> {
    const t = nextPing++;
    this.send({ type: "ping", t });
    const before: ServerMessage[] = [];
    for (;;) {
      const message = await this.next();
      if (message.type === "pong" && message.t === t) return before;
      before.push(message);
    }
  }

  /** The code of the server's close frame, once it arrives. */
  async closeCode(timeoutMs = 5000): Promise<number> {
    await this.raw.waitFor(() => this.raw.events.some(isClose), timeoutMs, "a close frame");
    return this.raw.events.find(isClose)!.code;
  }

  /** Leaves politely: a close frame, then waits for the server to end the TCP connection. */
  async leave(): Promise<void> {
    if (this.raw.closed) return;
    this.raw.sendFrame(Opcode.Close, encodeClosePayload(1000));
    this.raw.socket.end();
    await this.raw.waitForClose();
  }

  destroy(): void {
    this.raw.destroy();
  }
}

export function asStored(message: ServerMessage): StoredMessage {
  assert.equal(message.type, "message", `expected a message, got ${JSON.stringify(message)}`);
  const { seq, id, sid, from, text, time } = message;
  assert.ok(typeof seq === "number" && typeof id === "string" && typeof from === "string" && typeof text === "string" && typeof time === "number");
  assert.ok(typeof sid === "string", `a message carries its sender's sid: ${JSON.stringify(message)}`);
  return { seq, id, sid, from, text, time };
}


/**
 * The servers, chat clients and temporary folder of one test file, all gone
 * after it (the servers by SIGKILL). `args` go to every server started.
 */
export function useChatRooms(options: { folderPrefix: string; args?: readonly string[]; ignorePresence?: boolean }) {
  const directory = mkdtempSync(joinPath(tmpdir(), options.folderPrefix));
  const servers = new Set<RunningServer>();
  const clients = new Set<ChatClient>();
  after(async () => {
    for (const client of clients) client.destroy();
    await Promise.all([...servers].map((server) => server.stop("SIGKILL")));
    rmSync(directory, { recursive: true, force: true });
  });
  return {
    directory,
    async start(args: string[] = []): Promise<RunningServer> {
      const server = await startServer([...(options.args ?? []), ...args]);
      servers.add(server);
      return server;
    },
    async kill(server: RunningServer): Promise<void> {
      await server.stop("SIGKILL");
      servers.delete(server);
    },
    async join(server: RunningServer, query = ""): Promise<ChatClient> {
      const client = await ChatClient.join(server.port, query, { ignorePresence: options.ignorePresence ?? false });
      clients.add(client);
      return client;
    },
  };
}
