import net from "node:net";
import type * as zmq from "zeromq";
import { TransportError } from "../errors.js";
import { encodeMessage, MessageDecoder } from "../transport/stream-framing.js";
import { zeromq } from "../transport/zeromq.js";
import { AsyncQueue } from "../util/async-queue.js";
import { abortable } from "./abortable.js";

/**
 * The two ends of a rendezvous, with the shape of the ZeroMQ ROUTER (rank 0)
 * and DEALER (the others) that carry it across hosts: rank 0 receives
 * `[peer, ...frames]` and sends to a peer by the id it came with.
 *
 * When every rank is on one host (a runner's own ranks), the rendezvous goes
 * over a unix socket in the runner's private directory instead: no ZeroMQ to
 * load (10-15 ms of every rank's start, and its I/O threads), no port, and a
 * follower that starts before rank 0 listens connects again within
 * milliseconds (ZeroMQ waits its 100 ms reconnect interval).
 */
export interface RendezvousSocket {
  send(frames: Buffer[]): Promise<unknown>;
  /** The next message; rejects once the socket is closed. */
  receive(): Promise<Buffer[]>;
  close(): void;
}

/** Where the rendezvous meets: rank 0's tcp endpoint, or a unix socket path on one host. */
export type RendezvousAddress = { tcp: string; ipv6: boolean } | { unix: string };

/** Binds rank 0's end. @throws TransportError when the address cannot be bound. */
export async function bindRendezvous(address: RendezvousAddress, maxMessageBytes: number): Promise<RendezvousSocket> {
  if ("unix" in address) return UnixRendezvousRouter.bind(address.unix, maxMessageBytes);
  const router = new (zeromq().Router)({ linger: 2000, ipv6: address.ipv6, maxMessageSize: maxMessageBytes });
  try {
    await router.bind(address.tcp);
  } catch (cause) {
    router.close();
    throw new TransportError(`rank 0 cannot bind the rendezvous at ${address.tcp}: ${(cause as Error).message}`, { cause });
  }
  return zmqSocket(router);
}

/** Connects a follower's end; messages sent before the connection is up wait for it. */
export function connectRendezvous(address: RendezvousAddress, maxMessageBytes: number, signal: AbortSignal): RendezvousSocket {
  if ("unix" in address) return new UnixRendezvousDealer(address.unix, maxMessageBytes, signal);
  const dealer = new (zeromq().Dealer)({ linger: 1000, ipv6: address.ipv6, maxMessageSize: maxMessageBytes });
  dealer.connect(address.tcp);
  return zmqSocket(dealer);
}

/** One send in flight at a time, as zeromq.js requires; a failed send does not stall the next. */
function zmqSocket(socket: zmq.Router | zmq.Dealer): RendezvousSocket {
  return {
    send: (frames) => socket.send(frames),
    receive: () => socket.receive(),
    close: () => socket.close(),
  };
}

const CLOSED = (): TransportError => new TransportError("the rendezvous socket is closed");

/** Rank 0's end on one host: accepts followers, each known by a number of its own. */
class UnixRendezvousRouter implements RendezvousSocket {
  readonly #server: net.Server;
  readonly #peers = new Map<string, net.Socket>();
  readonly #inbox = new AsyncQueue<Buffer[]>();
  readonly #maxBytes: number;
  #next = 0;

  private constructor(server: net.Server, maxBytes: number) {
    this.#server = server;
    this.#maxBytes = maxBytes;
    server.on("connection", (socket) => this.#accept(socket));
  }

  static async bind(path: string, maxBytes: number): Promise<UnixRendezvousRouter> {
    const server = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (cause) {
      throw new TransportError(`rank 0 cannot bind the rendezvous at unix:${path}: ${(cause as Error).message}`, { cause });
    }
    return new UnixRendezvousRouter(server, maxBytes);
  }

  #accept(socket: net.Socket): void {
    const id = String(this.#next++);
    const idFrame = Buffer.from(id);
    this.#peers.set(id, socket);
    // A malformed or oversized message drops the connection, as ZeroMQ drops an oversized one.
    const decoder = new MessageDecoder((frames) => this.#inbox.push([idFrame, ...frames]), () => socket.destroy(), this.#maxBytes);
    socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    socket.on("error", () => {});
    socket.on("close", () => this.#peers.delete(id));
  }

  send(frames: Buffer[]): Promise<unknown> {
    const [id, ...rest] = frames;
    const socket = this.#peers.get(id?.toString() ?? "");
    if (!socket || socket.destroyed) return Promise.reject(new TransportError(`rendezvous peer ${id?.toString()} is not connected`));
    socket.write(encodeMessage(rest));
    return Promise.resolve();
  }

  async receive(): Promise<Buffer[]> {
    const next = await this.#inbox.next();
    if (next.done) throw CLOSED();
    return next.value;
  }

  close(): void {
    this.#inbox.end();
    for (const socket of this.#peers.values()) socket.end();
    this.#peers.clear();
    this.#server.close();
  }
}

/** Retries a connection refused because rank 0 is not listening yet, this soon at first. */
const FIRST_RETRY_MS = 2;
const MAX_RETRY_MS = 50;

/** A follower's end on one host. */
class UnixRendezvousDealer implements RendezvousSocket {
  readonly #inbox = new AsyncQueue<Buffer[]>();
  readonly #connected: Promise<net.Socket>;
  #closed = false;
  #socket: net.Socket | undefined;

  constructor(path: string, maxBytes: number, signal: AbortSignal) {
    this.#connected = this.#connect(path, maxBytes, signal);
    // Failures reach the caller through receive(); none may go unhandled meanwhile.
    this.#connected.catch((error: unknown) => this.#inbox.fail(error));
  }

  async #connect(path: string, maxBytes: number, signal: AbortSignal): Promise<net.Socket> {
    for (let wait = FIRST_RETRY_MS; ; wait = Math.min(wait * 2, MAX_RETRY_MS)) {
      if (this.#closed) throw CLOSED();
      const attempt = net.connect(path);
      try {
        await abortable(
          new Promise<void>((resolve, reject) => {
            attempt.once("connect", resolve);
            attempt.once("error", reject);
          }),
          signal,
        );
      } catch (error) {
        attempt.destroy();
        const code = (error as NodeJS.ErrnoException).code;
        // Rank 0 has not bound its socket yet (ENOENT) or not started listening on it (ECONNREFUSED).
        if (code !== "ENOENT" && code !== "ECONNREFUSED") throw error;
        await abortable(new Promise((resolve) => setTimeout(resolve, wait)), signal);
        continue;
      }
      if (this.#closed) {
        attempt.destroy();
        throw CLOSED();
      }
      const decoder = new MessageDecoder((frames) => this.#inbox.push(frames), () => attempt.destroy(), maxBytes);
      attempt.on("data", (chunk: Buffer) => decoder.push(chunk));
      attempt.on("error", () => {});
      attempt.on("close", () => this.#inbox.end());
      this.#socket = attempt;
      return attempt;
    }
  }

  send(frames: Buffer[]): Promise<unknown> {
    return this.#connected.then((socket) => {
      if (socket.destroyed) throw CLOSED();
      socket.write(encodeMessage(frames));
    });
  }

  async receive(): Promise<Buffer[]> {
    const next = await this.#inbox.next();
    if (next.done) throw CLOSED();
    return next.value;
  }

  close(): void {
    this.#closed = true;
    this.#inbox.end();
    this.#socket?.end();
  }
}
