// A TCP proxy that cuts connections at random points, seeded: after a random
// number of bytes in one direction, inside a frame or inside the handshake
// as it falls, it delivers exactly that prefix, ends that side, and destroys
// the other, as a dropped network path would.
import { createServer, connect, type Server, type Socket } from "node:net";
import { Prng } from "../../test/support/prng.ts";

export interface ChaosOptions {
  targetPort: number;
  targetHost?: string;
  seed: number;
  /** Chance that a new connection gets cut at all. */
  cutProbability: number;
  /** A cut falls after 0..maxBytesBeforeCut bytes of the chosen direction,
   * log-uniformly: as many cuts in the handshake as deep in the stream. */
  maxBytesBeforeCut: number;
}

export class ChaosProxy {
  readonly options: ChaosOptions;
  /** New connections are cut only while this is true. */
  cutting = true;
  connections = 0;
  cuts = 0;
  cutsInsideData = 0;
  private readonly rng: Prng;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(options: ChaosOptions) {
    this.options = options;
    this.rng = new Prng(options.seed);
    this.server = createServer((client) => this.accept(client));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => {
        const address = this.server.address();
        resolve(typeof address === "object" && address !== null ? address.port : 0);
      });
    });
  }

  private accept(client: Socket): void {
    this.connections++;
    const upstream = connect(this.options.targetPort, this.options.targetHost ?? "127.0.0.1");
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Decide now, from the seed: is this connection cut, in which direction, after how many bytes?
    const cut = this.cutting && this.rng.chance(this.options.cutProbability);
    const direction = this.rng.pick(["up", "down"] as const);
    const budget = Math.floor(Math.exp(this.rng.float() * Math.log(this.options.maxBytesBeforeCut + 1))) - 1;
    let upBytes = 0;
    let downBytes = 0;
    let done = false;
    const sever = (to: Socket, from: Socket, prefix: Buffer) => {
      done = true;
      this.cuts++;
      if (prefix.length > 0) this.cutsInsideData++;
      to.end(prefix);
      from.destroy();
      setTimeout(() => to.destroy(), 200).unref();
    };
    const forward = (from: Socket, to: Socket, isUp: boolean) => {
      from.on("data", (chunk: Buffer) => {
        if (done) return;
        if (cut && (direction === "up") === isUp) {
          const sent = isUp ? upBytes : downBytes;
          if (sent + chunk.length > budget) return sever(to, from, chunk.subarray(0, budget - sent));
        }
        if (isUp) upBytes += chunk.length;
        else downBytes += chunk.length;
        if (!to.write(chunk)) {
          from.pause();
          to.once("drain", () => from.resume());
        }
      });
      from.on("end", () => {
        if (!done) to.end();
      });
    };
    forward(client, upstream, true);
    forward(upstream, client, false);
  }

  /** Cuts every open connection now (a network outage). */
  cutAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  close(): Promise<void> {
    this.cutAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
