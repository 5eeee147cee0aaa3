// The few parts of `ws` (8.x) that bench/ws-server.ts uses. `ws` ships no
// types of its own and @types/ws is not a dependency of this project, so
// they are declared here, narrowly, instead of importing it as `any`.
declare module "ws" {
  import type { EventEmitter } from "node:events";
  import type { IncomingMessage, Server as HttpServer } from "node:http";

  export type RawData = Buffer | ArrayBuffer | Buffer[];

  export interface PerMessageDeflateOptions {
    threshold?: number;
    serverNoContextTakeover?: boolean;
    clientNoContextTakeover?: boolean;
    serverMaxWindowBits?: number;
    clientMaxWindowBits?: number;
    concurrencyLimit?: number;
  }

  export interface ServerOptions {
    server?: HttpServer;
    noServer?: boolean;
    perMessageDeflate?: boolean | PerMessageDeflateOptions;
    maxPayload?: number;
    clientTracking?: boolean;
  }

  export class WebSocket extends EventEmitter {
    static readonly OPEN: 1;
    readonly readyState: 0 | 1 | 2 | 3;
    send(
      data: string | Buffer,
      options?: { binary?: boolean; compress?: boolean },
      callback?: (error?: Error) => void,
    ): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    on(event: "message", listener: (data: RawData, isBinary: boolean) => void): this;
    on(event: "close", listener: (code: number, reason: Buffer) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
  }

  export class WebSocketServer extends EventEmitter {
    constructor(options: ServerOptions, callback?: () => void);
    on(event: "connection", listener: (socket: WebSocket, request: IncomingMessage) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
    close(callback?: (error?: Error) => void): void;
  }
}
