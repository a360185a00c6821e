import net from "node:net";
import type { Logger } from "pino";
import { TransportError } from "../errors.js";
import { AsyncQueue } from "../util/async-queue.js";
import type { Codec } from "../codec/packer.js";
import type { RankChannel, RankSendOptions, RunnerChannel } from "./control-channel.js";
import { bodyLength, COPY_MAX_BYTES, encodeMessage, encodePrefix, MAX_MESSAGE_BYTES, MessageDecoder } from "./stream-framing.js";
import { WriteBatcher } from "./write-batcher.js";

/**
 * The runner's control channel on one host, over a unix stream socket in the
 * runner's private directory, with the shape of the ZeroMQ ROUTER/DEALER pair
 * it replaces there: a {@link StreamRouter} yields `[identity, ...frames]` and
 * sends to an identity; a {@link StreamDealer} names itself with its identity
 * when it connects. A round trip costs about a quarter of a zeromq.js `ipc://`
 * round trip (no I/O thread on either side; see bench/RESULTS.md), which is
 * most of an invoke's latency. Across hosts the control channel stays ZeroMQ
 * (tcp, with CURVE).
 */

/** Prefix of a unix stream control endpoint (`unix:/path/to/control.sock`). */
export const UNIX_ENDPOINT_PREFIX = "unix:";

/** What a send that completed at once returns (callers may skip racing it against a signal). */
export const SENT: Promise<void> = Promise.resolve();

/**
 * Writes `frames` to `socket` as one message. A small message is copied into
 * one buffer and the promise is already settled: a broken connection reaches
 * every caller another way (a lost peer, a rank's exit, the end of the
 * conversation). A larger one is written by reference and the promise settles
 * once the kernel has the bytes, so the frames' memory may change after it.
 * With `highWaterMark`, a small message's promise instead waits while the
 * socket holds more than that many unsent bytes (the peer reads slower than
 * we write), so a sender that awaits it cannot grow this process.
 */
export function writeMessage(socket: net.Socket, frames: readonly Buffer[], what: string, highWaterMark?: number): Promise<void> {
  return write(socket, undefined, frames, what, highWaterMark);
}

/**
 * {@link writeMessage} for a control connection: with `batch`, a small
 * message joins the batch `batcher` writes at the end of the turn
 * (write-batcher.ts); any other message first flushes that batch, so
 * messages keep their order.
 */
export function writeBatched(batcher: WriteBatcher, frames: readonly Buffer[], what: string, highWaterMark: number, batch: boolean): Promise<void> {
  return write(batcher.socket, batcher, frames, what, highWaterMark, batch);
}

function write(socket: net.Socket, batcher: WriteBatcher | undefined, frames: readonly Buffer[], what: string, highWaterMark?: number, batch = false): Promise<void> {
  if (socket.destroyed || !socket.writable) return Promise.reject(new TransportError(`${what}: the connection is closed`));
  const body = bodyLength(frames);
  if (body > MAX_MESSAGE_BYTES) return Promise.reject(new TransportError(`${what}: a message of ${body} bytes exceeds the limit of ${MAX_MESSAGE_BYTES} bytes`));
  if (body <= COPY_MAX_BYTES) {
    if (batcher && batch) batcher.push(encodeMessage(frames));
    else {
      batcher?.flush();
      socket.write(encodeMessage(frames));
    }
    if (highWaterMark !== undefined && socket.writableLength > highWaterMark) return drained(socket, what);
    return SENT;
  }
  batcher?.flush();
  return new Promise<void>((resolve, reject) => {
    const done = (error?: Error | null): void => {
      if (error) reject(new TransportError(`${what} failed: ${error.message}`, { cause: error }));
      else resolve();
    };
    socket.cork();
    socket.write(encodePrefix(frames, body));
    for (let i = 0; i < frames.length - 1; i++) socket.write(frames[i]);
    socket.write(frames[frames.length - 1], done);
    socket.uncork();
  });
}

/** Largest first message (the identity) an unnamed connection may send. */
const MAX_IDENTITY_BYTES = 256;

const drains = new WeakMap<net.Socket, Promise<void>>();

/** Resolves when `socket` has written what it holds; rejects when it closes first. One promise per socket, however many wait. */
function drained(socket: net.Socket, what: string): Promise<void> {
  let promise = drains.get(socket);
  if (promise) return promise;
  promise = new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      socket.off("close", onClose);
      drains.delete(socket);
      resolve();
    };
    const onClose = (): void => {
      socket.off("drain", onDrain);
      drains.delete(socket);
      reject(new TransportError(`${what}: the connection closed while the message waited to be written`));
    };
    socket.once("drain", onDrain);
    socket.once("close", onClose);
  });
  drains.set(socket, promise);
  return promise;
}

/**
 * Received messages waiting for the consumer, counted in bytes: past
 * `highWaterMark` the sockets feeding it are paused until it drains to half.
 */
class Inbox {
  readonly #queue = new AsyncQueue<Buffer[]>();
  readonly #highWaterMark: number;
  readonly #paused = new Set<net.Socket>();
  #bytes = 0;

  constructor(highWaterMark: number) {
    this.#highWaterMark = highWaterMark;
  }

  /** Queues a message `from` a socket; pauses that socket when the inbox is full. */
  push(frames: Buffer[], from: net.Socket): void {
    if (this.#queue.closed) return;
    this.#bytes += bodyLength(frames);
    this.#queue.push(frames);
    if (this.#bytes > this.#highWaterMark && !this.#paused.has(from)) {
      this.#paused.add(from);
      from.pause();
    }
  }

  end(): void {
    this.#queue.end();
    this.#paused.clear();
  }

  async next(): Promise<IteratorResult<Buffer[]>> {
    const result = await this.#queue.next();
    if (!result.done) {
      this.#bytes -= bodyLength(result.value);
      if (this.#paused.size > 0 && this.#bytes <= this.#highWaterMark / 2) {
        for (const socket of this.#paused) if (!socket.destroyed) socket.resume();
        this.#paused.clear();
      }
    }
    return result;
  }
}

const asBuffer = (frame: Buffer | Uint8Array | string): Buffer =>
  typeof frame === "string" ? Buffer.from(frame) : Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);

/** Options of {@link StreamRouter.bind} and {@link StreamDealer}. */
export interface StreamSocketOptions {
  /** Largest message accepted; a peer announcing more is disconnected. */
  maxMessageBytes: number;
  /** Unsent bytes per connection before a send waits, and unread bytes before reading pauses. */
  highWaterMark: number;
  /** The channel's codec (control-channel.ts says what it does). */
  codec: Codec;
  log: Logger;
}

/** The runner's end: accepts rank connections, each naming itself by its first message. */
export class StreamRouter implements RunnerChannel {
  readonly #server: net.Server;
  /** Named connections, each with the batch of small messages it writes at the end of the turn. */
  readonly #peers = new Map<string, WriteBatcher>();
  readonly #connections = new Set<net.Socket>();
  readonly #inbox: Inbox;
  readonly #options: StreamSocketOptions;
  /** The endpoint ranks connect to (`unix:<path>`). */
  readonly endpoint: string;
  readonly zmqSocket = undefined;
  readonly codec: Codec;
  #closed = false;

  private constructor(server: net.Server, path: string, options: StreamSocketOptions) {
    this.#server = server;
    this.#options = options;
    this.codec = options.codec;
    this.#inbox = new Inbox(options.highWaterMark);
    this.endpoint = `${UNIX_ENDPOINT_PREFIX}${path}`;
    server.on("connection", (socket) => {
      if (this.#closed) socket.destroy();
      else this.#accept(socket);
    });
  }

  /** Listens at `path` (a unix socket). @throws the listen error (path taken, too long, directory missing). */
  static async bind(path: string, options: StreamSocketOptions): Promise<StreamRouter> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new StreamRouter(server, path, options);
  }

  get closed(): boolean {
    return this.#closed;
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    let identity: string | undefined;
    let identityFrame: Buffer | undefined;
    const decoder = new MessageDecoder(
      (frames) => {
        if (identityFrame) {
          this.#inbox.push([identityFrame, ...frames], socket);
          return;
        }
        const name = frames[0]?.toString("latin1") ?? "";
        if (frames.length !== 1 || name === "" || this.#peers.has(name)) {
          this.#options.log.warn({ identity: name }, "refused a control connection: no identity, or one already connected");
          decoder.stop();
          socket.destroy();
          return;
        }
        identity = name;
        identityFrame = Buffer.from(frames[0]!); // a copy: a view would keep the first chunk alive
        this.#peers.set(name, new WriteBatcher(socket));
        decoder.setMaxBytes(this.#options.maxMessageBytes);
      },
      (why) => {
        this.#options.log.warn({ identity, why }, "dropped a control connection that sent a malformed message");
        socket.destroy();
      },
      // Until it names itself a connection is nobody: it may not make us hold more than a name.
      MAX_IDENTITY_BYTES,
    );
    socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    socket.on("error", () => {});
    this.#connections.add(socket);
    socket.on("close", () => {
      this.#connections.delete(socket);
      if (identity !== undefined && this.#peers.get(identity)?.socket === socket) this.#peers.delete(identity);
    });
  }

  /**
   * Sends `frames[1..]` to the peer named `frames[0]`; rejects when no such
   * peer is connected. Settles at once for small messages (copied) while the
   * connection holds less than the high-water mark unsent, else once it
   * drains; a large message settles once the kernel has its bytes.
   */
  send(frames: Array<Buffer | Uint8Array | string>): Promise<void> {
    const [identity, ...rest] = frames.map(asBuffer);
    const name = identity?.toString("latin1") ?? "";
    const peer = this.#peers.get(name);
    if (!peer) return Promise.reject(new TransportError(`no control connection from ${JSON.stringify(name)}`));
    // Everything the runner sends may wait for the end of the turn: the runner's
    // own code (the gateway's, under load many requests a turn), not a worker's, runs meanwhile.
    return writeBatched(peer, rest, `send to ${name}`, this.#options.highWaterMark, true);
  }

  /** Sends waiting for a drain reject when their connection closes; nothing else is queued here. */
  abortSends(): void {}

  /** Closes the listener and every connection; the iteration ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // What was sent before the close goes out first, as if each message had been written when it was sent.
    for (const peer of this.#peers.values()) peer.flush();
    // Every connection, named or not.
    for (const socket of this.#connections) socket.destroy();
    this.#connections.clear();
    this.#peers.clear();
    this.#server.close();
    this.#inbox.end();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    return { next: () => this.#inbox.next() };
  }
}

/** A rank's end: one connection to the runner's {@link StreamRouter}. */
export class StreamDealer implements RankChannel {
  readonly #routingId: string;
  readonly #options: StreamSocketOptions & { lingerMs: number };
  readonly #inbox: Inbox;
  #socket: net.Socket | undefined;
  /** Small messages written at the end of the turn, in one write. */
  #batcher: WriteBatcher | undefined;
  #closed = false;
  readonly codec: Codec;

  constructor(routingId: string, options: StreamSocketOptions & { lingerMs: number }) {
    this.#routingId = routingId;
    this.#options = options;
    this.codec = options.codec;
    this.#inbox = new Inbox(options.highWaterMark);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Connects to `endpoint` (`unix:<path>`) and names itself; messages sent before the connection is up wait for it. */
  connect(endpoint: string): void {
    if (!endpoint.startsWith(UNIX_ENDPOINT_PREFIX)) throw new TransportError(`not a unix stream endpoint: ${endpoint}`);
    const socket = net.connect(endpoint.slice(UNIX_ENDPOINT_PREFIX.length));
    this.#socket = socket;
    socket.setNoDelay(true);
    const decoder = new MessageDecoder(
      (frames) => this.#inbox.push(frames, socket),
      (why) => {
        this.#options.log.warn({ why }, "the control connection sent a malformed message; closing it");
        socket.destroy();
      },
      this.#options.maxMessageBytes,
    );
    socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    socket.on("error", (error) => {
      if (!this.#closed) this.#options.log.warn({ err: error }, "control connection error");
    });
    // The runner closing its end is the end of the conversation.
    socket.on("close", () => this.#inbox.end());
    socket.write(encodeMessage([Buffer.from(this.#routingId, "latin1")]));
    this.#batcher = new WriteBatcher(socket);
  }

  /**
   * Sends one message (with `batch`, a small one waits for the end of the
   * turn: see {@link RankSendOptions}); settles at once for small messages
   * (copied) while the connection holds less than the high-water mark
   * unsent, else once it drains; a large message settles once the kernel has
   * its bytes.
   */
  send(frames: Array<Buffer | Uint8Array | string>, options?: RankSendOptions): Promise<void> {
    if (!this.#batcher) return Promise.reject(new TransportError("the control connection is not open"));
    return writeBatched(this.#batcher, frames.map(asBuffer), "send to the runner", this.#options.highWaterMark, options?.batch === true);
  }

  /** Sends waiting for a drain reject when the connection closes; nothing else is queued here. */
  abortSends(): void {}

  /** Ends the connection after what is written (for at most `lingerMs`); the iteration ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const socket = this.#socket;
    if (socket && !socket.destroyed) {
      this.#batcher?.flush();
      socket.end();
      setTimeout(() => socket.destroy(), this.#options.lingerMs).unref();
    }
    this.#inbox.end();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    return { next: () => this.#inbox.next() };
  }
}
