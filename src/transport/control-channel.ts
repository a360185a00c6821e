import type { Logger } from "pino";
import { Context, Dealer, Router } from "zeromq";
import { splitFrame, TCP_FRAME_LIMIT } from "./frame-pieces.js";
import { SerialSender } from "./serial-sender.js";
import { watchFailedHandshakes, ZapHandler } from "./zap.js";
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

/** The runner's end: yields `[identity, ...body]` from each rank (over tcp a large body comes in pieces, to join); sends to an identity. */
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
  /** ZeroMQ CURVE server secret key (every tcp endpoint, loopback included). */
  curveSecretKey?: string | undefined;
  /** With CURVE: the only client public keys let in (the ones the runner gave its ranks). */
  clientKeys?: readonly string[];
  /** Hears of every connection refused at the handshake (the caller rate-limits its log). */
  onDenied?: (address: string, why: string) => void;
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
  const curveSecretKey = options.curveSecretKey;
  const onDenied = options.onDenied ?? (() => {});
  // Its own context: a ZAP handler judges every socket of its context, and
  // another runner in this process has keys of its own.
  const context = curveSecretKey ? new Context() : undefined;
  let zap: ZapHandler | undefined;
  let router: Router | undefined;
  try {
    if (context) {
      zap = await ZapHandler.bind(context, options.log, onDenied);
      zap.allow(options.clientKeys ?? []);
    }
    router = new Router({
      ...(context ? { context } : {}),
      linger: 0,
      mandatory: true,
      // Over tcp every frame is small (ranks send large messages in pieces):
      // libzmq reads a whole frame before the CURVE handshake judges it, so
      // this is all a peer without the keys can make the runner buffer per connection.
      maxMessageSize: curveSecretKey ? TCP_FRAME_LIMIT : options.maxMessageBytes,
      sendHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
      receiveHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
      ...(curveSecretKey ? { curveServer: true, curveSecretKey } : {}),
    });
    if (curveSecretKey) watchFailedHandshakes(router, onDenied);
    await router.bind(bind);
  } catch (error) {
    router?.close();
    zap?.close();
    throw error;
  }
  return new ZmqRunnerChannel(router, zap);
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
  // Over tcp the runner takes frames of MAX_TCP_FRAME_BYTES at most (see frame-pieces.ts): larger messages go in pieces.
  return new ZmqRankChannel(dealer, options.endpoint.startsWith("tcp://"));
}

/**
 * ZeroMQ's sockets already have the shape: a send waits at the send
 * high-water mark, and the receive queue is read only as fast as the
 * consumer iterates. zeromq.js takes one send at a time, hence the queue.
 */
class ZmqRunnerChannel implements RunnerChannel {
  readonly #router: Router;
  readonly #zap: ZapHandler | undefined;
  readonly #sender: SerialSender;
  readonly endpoint: string;

  /** `zap`: over tcp, admits only the CURVE keys this runner gave its ranks; closed with the channel. */
  constructor(router: Router, zap: ZapHandler | undefined) {
    this.#router = router;
    this.#zap = zap;
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
    this.#zap?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    return this.#router[Symbol.asyncIterator]();
  }
}

class ZmqRankChannel implements RankChannel {
  readonly #dealer: Dealer;
  readonly #sender: SerialSender;
  readonly #pieces: boolean;

  /** `pieces`: send large messages as frames of at most MAX_TCP_FRAME_BYTES (the runner joins them). */
  constructor(dealer: Dealer, pieces: boolean) {
    this.#dealer = dealer;
    this.#sender = new SerialSender(dealer);
    this.#pieces = pieces;
  }

  get closed(): boolean {
    return this.#dealer.closed;
  }

  connect(endpoint: string): void {
    this.#dealer.connect(endpoint);
  }

  send(frames: Buffer[]): Promise<void> {
    return this.#sender.send(this.#pieces && frames.length === 1 ? splitFrame(frames[0]!) : frames);
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
