import type { Logger } from "pino";
import { Dealer, Router } from "zeromq";
import { SerialSender } from "./serial-sender.js";
import { StreamDealer, StreamRouter, UNIX_ENDPOINT_PREFIX } from "./stream-sockets.js";

/**
 * The control channel between a runner and its ranks: one interface, two
 * transports. On one host it is a unix stream socket ({@link StreamRouter} /
 * {@link StreamDealer}); across hosts, or when asked for, ZeroMQ ROUTER/DEALER.
 *
 * Flow control is part of the interface:
 * - `send` resolves once the message is handed to the transport, and waits
 *   while the peer's outgoing buffer holds more than the channel's high-water
 *   mark ({@link CONTROL_HIGH_WATER_MARK} bytes on a unix socket; ZeroMQ's own
 *   send high-water mark, in messages, on ZeroMQ).
 * - Received messages wait in an inbox of at most that many bytes: past it the
 *   channel stops reading the socket until the consumer catches up, so a peer
 *   that sends faster than the consumer handles cannot grow this process.
 */
export interface ControlChannel<Message> extends AsyncIterable<Message> {
  /** True once {@link close} ran (or the transport closed). */
  readonly closed: boolean;
  /** Closes the channel; the iteration ends. Idempotent. */
  close(): void;
}

/** The runner's end: yields `[identity, body]` from each rank; sends to an identity. */
export interface RunnerChannel extends ControlChannel<Buffer[]> {
  /** The endpoint ranks connect to (`unix:<path>`, `ipc://...` or `tcp://...`). */
  readonly endpoint: string;
  /** Sends `frames[1..]` to the rank named `frames[0]`; rejects when no such rank is connected. */
  send(frames: Buffer[]): Promise<void>;
  /** Rejects every send still waiting (the channel is closing). */
  abortSends(error: unknown): void;
  /** The ZeroMQ ROUTER underneath, when the transport is ZeroMQ (fal's `get_zmq_socket`). */
  readonly zmqSocket: Router | undefined;
}

/** A rank's end: one connection to the runner. */
export interface RankChannel extends ControlChannel<Buffer[]> {
  /** Connects to `endpoint`; sends before the connection is up wait for it. */
  connect(endpoint: string): void;
  /** Sends one message to the runner. */
  send(frames: Buffer[]): Promise<void>;
  /** Rejects every send still waiting (the rank is exiting). */
  abortSends(error: unknown): void;
}

/**
 * Bytes a unix control connection may hold unsent, and a channel's inbox
 * unread, before `send` waits or reading pauses. Large enough that a burst of
 * small stream items never waits; small enough that a peer that stops
 * reading costs this process at most a few of them.
 */
export const CONTROL_HIGH_WATER_MARK = 1024 * 1024;

/** ZeroMQ's high-water marks are in messages; this many keeps a burst of small messages moving. */
const ZMQ_HIGH_WATER_MARK_MESSAGES = 10_000;

/** Options of {@link openRunnerChannel}. */
export interface RunnerChannelOptions {
  /** Largest message accepted from a rank, bytes. */
  maxMessageBytes: number;
  /** ZeroMQ CURVE server secret key (tcp off loopback). */
  curveSecretKey?: string | undefined;
  log: Logger;
}

/**
 * Binds the runner's control channel at `bind`: `unix:<path>` for the unix
 * stream transport, anything else (`ipc://`, `tcp://`) for ZeroMQ.
 * @throws the bind error (address taken, directory missing).
 */
export async function openRunnerChannel(bind: string, options: RunnerChannelOptions): Promise<RunnerChannel> {
  if (bind.startsWith(UNIX_ENDPOINT_PREFIX)) {
    return StreamRouter.bind(bind.slice(UNIX_ENDPOINT_PREFIX.length), { maxMessageBytes: options.maxMessageBytes, highWaterMark: CONTROL_HIGH_WATER_MARK, log: options.log });
  }
  const router = new Router({
    linger: 0,
    mandatory: true,
    maxMessageSize: options.maxMessageBytes,
    sendHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    receiveHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    ...(options.curveSecretKey ? { curveServer: true, curveSecretKey: options.curveSecretKey } : {}),
  });
  try {
    await router.bind(bind);
  } catch (error) {
    router.close();
    throw error;
  }
  return new ZmqRunnerChannel(router);
}

/** Options of {@link createRankChannel}. */
export interface RankChannelOptions {
  /** The name the runner knows this rank by. */
  routingId: string;
  /** The runner's control endpoint; decides the transport. */
  endpoint: string;
  /** Largest message accepted from the runner, bytes. */
  maxMessageBytes: number;
  /** How long `close()` lets written messages drain, ms. */
  lingerMs: number;
  curve?: { serverKey: string; publicKey: string; secretKey: string } | undefined;
  log: Logger;
}

/** A rank's control channel for `options.endpoint`, not yet connected. */
export function createRankChannel(options: RankChannelOptions): RankChannel {
  if (options.endpoint.startsWith(UNIX_ENDPOINT_PREFIX)) {
    return new StreamDealer(options.routingId, {
      maxMessageBytes: options.maxMessageBytes,
      highWaterMark: CONTROL_HIGH_WATER_MARK,
      lingerMs: options.lingerMs,
      log: options.log,
    });
  }
  const { curve } = options;
  const dealer = new Dealer({
    routingId: options.routingId,
    linger: options.lingerMs,
    maxMessageSize: options.maxMessageBytes,
    sendHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    receiveHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    ...(curve ? { curveServerKey: curve.serverKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey } : {}),
  });
  return new ZmqRankChannel(dealer);
}

/**
 * ZeroMQ's sockets already have the shape: a send waits at the send
 * high-water mark, and the receive queue is read only as fast as the
 * consumer iterates. zeromq.js takes one send at a time, hence the queue.
 */
class ZmqRunnerChannel implements RunnerChannel {
  readonly #router: Router;
  readonly #sender: SerialSender;
  readonly endpoint: string;

  constructor(router: Router) {
    this.#router = router;
    this.#sender = new SerialSender(router);
    this.endpoint = router.lastEndpoint ?? "";
  }

  get closed(): boolean {
    return this.#router.closed;
  }

  get zmqSocket(): Router {
    return this.#router;
  }

  send(frames: Buffer[]): Promise<void> {
    return this.#sender.send(frames);
  }

  abortSends(error: unknown): void {
    this.#sender.abort(error);
  }

  close(): void {
    if (!this.#router.closed) this.#router.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    return this.#router[Symbol.asyncIterator]();
  }
}

class ZmqRankChannel implements RankChannel {
  readonly #dealer: Dealer;
  readonly #sender: SerialSender;

  constructor(dealer: Dealer) {
    this.#dealer = dealer;
    this.#sender = new SerialSender(dealer);
  }

  get closed(): boolean {
    return this.#dealer.closed;
  }

  connect(endpoint: string): void {
    this.#dealer.connect(endpoint);
  }

  send(frames: Buffer[]): Promise<void> {
    return this.#sender.send(frames);
  }

  abortSends(error: unknown): void {
    this.#sender.abort(error);
  }

  close(): void {
    if (!this.#dealer.closed) this.#dealer.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    return this.#dealer[Symbol.asyncIterator]();
  }
}
