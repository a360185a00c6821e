import type { Logger } from "pino";
import type { Codec } from "../codec/packer.js";
import type { Dealer, Router } from "zeromq";
import { zeromq } from "./zeromq.js";
import type { RankChannel, RunnerChannel } from "./control-channel.js";
import { splitFrame, TCP_FRAME_LIMIT } from "./frame-pieces.js";
import { SerialSender } from "./serial-sender.js";
import { watchFailedHandshakes, ZapHandler } from "./zap.js";

/**
 * The control channel over ZeroMQ ROUTER/DEALER: across hosts (tcp, with
 * CURVE), or on one host when `transport: "ipc"` asks for it. The unix stream
 * transport, the default on one host, is in stream-sockets.ts; both are
 * reached through control-channel.ts.
 */

/** ZeroMQ's high-water marks are in messages; this many keeps a burst of small messages moving. */
const ZMQ_HIGH_WATER_MARK_MESSAGES = 10_000;

/** Options of {@link bindZmqRunnerChannel}. */
export interface ZmqRunnerOptions {
  /** Largest message accepted from a rank, bytes (without CURVE; with it, frames are pieces). */
  maxMessageBytes: number;
  /** CURVE server secret key (every tcp endpoint, loopback included). */
  curveSecretKey?: string | undefined;
  /** With CURVE: the only client public keys let in. */
  clientKeys?: readonly string[] | undefined;
  /** With CURVE: let any client key in (see `ZapHandler.allowAny`). */
  anyClient?: boolean | undefined;
  /** Hears of every connection refused at the handshake. */
  onDenied: (address: string, why: string) => void;
  /** The channel's codec. */
  codec: Codec;
  log: Logger;
}

/**
 * Binds a ZeroMQ ROUTER at `bind` (`ipc://...` or `tcp://...`), behind a ZAP
 * handler that admits only `clientKeys` when CURVE is on.
 * @throws the bind error (address taken, directory missing).
 */
export async function bindZmqRunnerChannel(bind: string, options: ZmqRunnerOptions): Promise<RunnerChannel> {
  const { curveSecretKey, onDenied } = options;
  // Its own context: a ZAP handler judges every socket of its context, and
  // another runner in this process has keys of its own.
  const context = curveSecretKey ? new (zeromq().Context)() : undefined;
  let zap: ZapHandler | undefined;
  let router: Router | undefined;
  try {
    if (context) {
      zap = await ZapHandler.bind(context, options.log, onDenied);
      if (options.anyClient) zap.allowAny();
      else zap.allow(options.clientKeys ?? []);
    }
    router = new (zeromq().Router)({
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
  return new ZmqRunnerChannel(router, zap, options.codec);
}

/** Options of {@link connectZmqRankChannel}. */
export interface ZmqRankOptions {
  routingId: string;
  /** The runner's endpoint: over `tcp://` large messages go in pieces. */
  endpoint: string;
  maxMessageBytes: number;
  lingerMs: number;
  curve?: { serverKey: string; publicKey: string; secretKey: string } | undefined;
  /** The channel's codec. */
  codec: Codec;
}

/** A ZeroMQ DEALER for a rank, connecting to `options.endpoint` (ZeroMQ reconnects by itself). */
export function connectZmqRankChannel(options: ZmqRankOptions): RankChannel {
  const { curve } = options;
  const dealer = new (zeromq().Dealer)({
    routingId: options.routingId,
    linger: options.lingerMs,
    maxMessageSize: options.maxMessageBytes,
    sendHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    receiveHighWaterMark: ZMQ_HIGH_WATER_MARK_MESSAGES,
    ...(curve ? { curveServerKey: curve.serverKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey } : {}),
  });
  dealer.connect(options.endpoint);
  // Over tcp the runner takes frames of MAX_TCP_FRAME_BYTES at most (see frame-pieces.ts): larger messages go in pieces.
  return new ZmqRankChannel(dealer, options.endpoint.startsWith("tcp://"), options.codec);
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
  constructor(
    router: Router,
    zap: ZapHandler | undefined,
    readonly codec: Codec,
  ) {
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
  constructor(
    dealer: Dealer,
    pieces: boolean,
    readonly codec: Codec,
  ) {
    this.#dealer = dealer;
    this.#sender = new SerialSender(dealer);
    this.#pieces = pieces;
  }

  get closed(): boolean {
    return this.#dealer.closed;
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
