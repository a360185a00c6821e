import fs from "node:fs";
import net from "node:net";

/**
 * Death detection that costs nothing while all is well: one idle stream
 * socket per pair of ranks. When a process dies, its kernel closes the socket
 * and the peer sees `close` at once, without heartbeats (which a busy event
 * loop could miss) or ZeroMQ socket monitors (which cost a wake-up per
 * message). Over tcp a dead host is not noticed this way; ZeroMQ heartbeats
 * cover that case.
 */
export class Liveness {
  readonly #server: net.Server;
  readonly #sockets = new Map<number, net.Socket>();
  readonly #path: string | undefined;
  #onLost: (peer: number) => void = () => {};
  #closed = false;
  // Peers may connect before link() runs (they got the table first): park them.
  readonly #early: [number, net.Socket][] = [];
  #accepted: (peer: number, socket: net.Socket) => void = (peer, socket) => void this.#early.push([peer, socket]);

  private constructor(server: net.Server, path: string | undefined) {
    this.#server = server;
    this.#path = path;
    server.on("connection", (socket) => {
      // The connecting peer names itself with its rank (4 bytes).
      socket.once("data", (d: Buffer) => {
        if (d.length >= 4) this.#accepted(d.readUInt32LE(0), socket);
        else socket.destroy();
      });
      socket.on("error", () => {});
    });
  }

  /** Listens on a unix socket at `path`, or on tcp `host` (random port) when `path` is undefined. Resolves with the address to give peers. */
  static async listen(path: string | undefined, host: string): Promise<{ liveness: Liveness; address: string }> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (path) server.listen(path, resolve);
      else server.listen(0, host, resolve);
    });
    server.unref();
    const a = server.address();
    const address = typeof a === "string" ? `unix:${a}` : `tcp:${a!.family === "IPv6" ? `[${a!.address}]` : a!.address}:${a!.port}`;
    return { liveness: new Liveness(server, path), address };
  }

  /** Links with every peer: connects to higher ranks, accepts lower ones. Resolves once all `size - 1` links are up. */
  async link(rank: number, addresses: string[], signal: AbortSignal): Promise<void> {
    const expected = addresses.length - 1;
    await new Promise<void>((resolve, reject) => {
      const add = (peer: number, socket: net.Socket): void => {
        if (this.#sockets.has(peer) || peer === rank || peer >= addresses.length) return void socket.destroy();
        this.#sockets.set(peer, socket);
        socket.unref();
        socket.setKeepAlive(true, 1000);
        socket.on("close", () => {
          if (!this.#closed) this.#onLost(peer);
        });
        if (this.#sockets.size === expected) {
          signal.removeEventListener("abort", onAbort);
          resolve();
        }
      };
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#accepted = add;
      for (const [peer, socket] of this.#early.splice(0)) add(peer, socket);
      for (let peer = rank + 1; peer < addresses.length; peer++) {
        const a = addresses[peer];
        const socket = a.startsWith("unix:")
          ? net.connect(a.slice(5))
          : net.connect(Number(a.slice(a.lastIndexOf(":") + 1)), a.slice(4, a.lastIndexOf(":")).replace(/^\[|\]$/g, ""));
        socket.on("error", () => {});
        socket.once("connect", () => {
          const hello = Buffer.alloc(4);
          hello.writeUInt32LE(rank);
          socket.write(hello);
          add(peer, socket);
        });
      }
      if (expected === 0) resolve();
    });
  }

  /** Calls `listener(peer)` when the link to `peer` drops. */
  onLost(listener: (peer: number) => void): void {
    this.#onLost = listener;
  }

  /** Removes the unix socket's name (links stay up). */
  unlink(): void {
    if (this.#path) fs.rmSync(this.#path, { force: true });
  }

  /** Closes every link and the listener. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sockets.values()) s.destroy();
    this.#server.close();
    this.unlink();
  }
}
