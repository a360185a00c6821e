import type { Logger } from "pino";
import type { Codec } from "../codec/packer.js";
import { createControlCodec } from "./shared-payload.js";
import type { Router } from "zeromq";
import { StreamDealer, StreamRouter, UNIX_ENDPOINT_PREFIX } from "./stream-sockets.js";
import { bindZmqRunnerChannel, connectZmqRankChannel } from "./zmq-channel.js";

/**
 * The control channel between a runner and its ranks: one interface, two
 * transports. On one host it is a unix stream socket ({@link StreamRouter} /
 * {@link StreamDealer}, stream-sockets.ts); across hosts, or when asked for,
 * ZeroMQ ROUTER/DEALER (zmq-channel.ts). This file holds the interfaces and
 * the two factories that pick the transport from the endpoint.
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
  /**
   * The codec of this channel's messages, owned by it: it packs the
   * references of payloads moved to shared memory and maps their segments
   * when it unpacks them.
   */
  readonly codec: Codec;
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

/** Options of {@link RankChannel.send}. */
export interface RankSendOptions {
  /**
   * May wait for the end of this turn of the event loop, to go out in one
   * write with the other messages of the turn (a unix socket; ZeroMQ ignores
   * it). For a request's last message (`done`), whose sender has nothing more
   * to do: a message the runner must hear at once (progress, a log line, a
   * stream item, a fatal error) goes out at once, after any that wait. @default false
   */
  batch?: boolean;
}

/** A rank's end: one connection to the runner. */
export interface RankChannel extends ControlChannel<Buffer[]> {
  /** Sends one message to the runner. */
  send(frames: Buffer[], options?: RankSendOptions): Promise<void>;
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

/** Options of {@link openRunnerChannel}. */
export interface RunnerChannelOptions {
  /** Largest message accepted from a rank, bytes. */
  maxMessageBytes: number;
  /** ZeroMQ CURVE server secret key (every tcp endpoint, loopback included). */
  curveSecretKey?: string | undefined;
  /** With CURVE: the only client public keys let in (the ones the runner gave its ranks). */
  clientKeys?: readonly string[];
  /** With CURVE: let any client key in (ranks that joined prove themselves in their hello). */
  anyClient?: boolean;
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
    return StreamRouter.bind(bind.slice(UNIX_ENDPOINT_PREFIX.length), {
      maxMessageBytes: options.maxMessageBytes,
      highWaterMark: CONTROL_HIGH_WATER_MARK,
      codec: createControlCodec(),
      log: options.log,
    });
  }
  return bindZmqRunnerChannel(bind, {
    maxMessageBytes: options.maxMessageBytes,
    curveSecretKey: options.curveSecretKey,
    clientKeys: options.clientKeys,
    anyClient: options.anyClient,
    onDenied: options.onDenied ?? (() => {}),
    codec: createControlCodec(),
    log: options.log,
  });
}

/** Options of {@link connectRankChannel}. */
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

/**
 * A rank's control channel for `options.endpoint`: the unix stream transport
 * for `unix:<path>`, else ZeroMQ. It starts connecting at once; sends
 * before the connection is up wait for it.
 */
export function connectRankChannel(options: RankChannelOptions): RankChannel {
  if (options.endpoint.startsWith(UNIX_ENDPOINT_PREFIX)) {
    const dealer = new StreamDealer(options.routingId, {
      maxMessageBytes: options.maxMessageBytes,
      highWaterMark: CONTROL_HIGH_WATER_MARK,
      lingerMs: options.lingerMs,
      codec: createControlCodec(),
      log: options.log,
    });
    dealer.connect(options.endpoint);
    return dealer;
  }
  return connectZmqRankChannel({ ...options, codec: createControlCodec() });
}
