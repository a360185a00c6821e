import { AbortError, MessageTooLargeError, TimeoutError, TransportError, type MultirankError } from "../errors.js";
import type { RunnerMessage } from "../transport/messages.js";
import { PayloadSegmentPool } from "../transport/payload-pool.js";
import { offloadLargeBuffers, PAYLOAD_SEGMENT_PREFIX } from "../transport/shared-payload.js";
import { setLongTimeout, type LongTimer } from "../util/timers.js";
import type { ControlSession } from "./control-session.js";
import { isSameHostEndpoint } from "./endpoints.js";
import { timeoutToMs, type ResolvedRunnerOptions } from "./options.js";
import { PendingRequest, type StreamEvent } from "./pending-request.js";
import type { InvokeOptions, StreamOptions } from "./runner-types.js";

/** Why a request is cancelled at the ranks. */
export type CancelReason = "aborted" | "timeout" | "failed";

/**
 * Sends requests to a session's ranks and cancels them: numbers them, packs
 * each payload once (its large buffers through one shared-memory segment on
 * one host, taken from the session's pool), arms its timeout and abort
 * signal, and gives the segment back once every rank has answered (unlinked
 * instead when a rank kept it), or unlinks it when the session ends.
 */
export class RequestSubmitter {
  readonly #options: Pick<ResolvedRunnerOptions, "worldSize" | "timeoutMs" | "maxMessageBytes" | "streamHighWaterMark">;
  /** A request was sent or settled: the runner is not idle (the keepalive waits again). */
  readonly #activity: () => void;
  #nextRequestId = 1;
  /** Each session's pool of payload segments, closed (every segment unlinked) when the session is released. */
  readonly #pools = new WeakMap<ControlSession, PayloadSegmentPool>();

  constructor(options: Pick<ResolvedRunnerOptions, "worldSize" | "timeoutMs" | "maxMessageBytes" | "streamHighWaterMark">, activity: () => void) {
    this.#options = options;
    this.#activity = activity;
  }

  /**
   * Sends `payload` to every rank of `session` as a new request.
   * @throws {ValidationError} `options.timeout` is invalid
   * @throws {AbortError} `options.signal` is already aborted (nothing was sent)
   * @throws {SerializationError} / {MessageTooLargeError} the payload cannot be sent (nothing was sent)
   */
  submit(session: ControlSession, payload: unknown, streaming: boolean, options: InvokeOptions | StreamOptions): PendingRequest {
    const timeoutMs = options.timeout === undefined ? this.#options.timeoutMs : timeoutToMs(options.timeout, "options.timeout");
    const { signal } = options;
    if (signal?.aborted) throw new AbortError("the request was aborted before it was sent", { cause: signal.reason });
    const id = this.#nextRequestId++;
    // Large buffers go through one shared-memory segment instead of the socket
    // (once, not once per rank); only on one host (a unix or ipc:// socket), where the ranks can map it.
    const shared = isSameHostEndpoint(session.endpoint) ? offloadLargeBuffers(payload, { pool: this.#poolOf(session) }) : { payload, segment: undefined, sharedBytes: 0, retained: [] };
    // The rank makes each streamed item in the form the caller reads it: text events or values, never both.
    const asTextEvents = streaming && "asTextEvents" in options && options.asTextEvents === true;
    const message: RunnerMessage = { t: "req", id, payload: shared.payload, streaming, asTextEvents };
    // Packed once, before anything is sent: a bad payload changes nothing.
    let bytes: Buffer;
    try {
      bytes = session.codec.pack(message, "payload", this.#options.maxMessageBytes - shared.sharedBytes);
    } catch (error) {
      // No rank saw it: the pool may lend it again.
      if (shared.segment) this.#poolOf(session).giveBack(shared.segment, true);
      if (error instanceof MessageTooLargeError && shared.sharedBytes > 0) {
        throw new MessageTooLargeError("payload", error.size + shared.sharedBytes, this.#options.maxMessageBytes);
      }
      throw error;
    }
    const segment = shared.segment;
    const ranks = [...Array(this.#options.worldSize).keys()];
    const request = new PendingRequest(id, streaming, ranks, {
      cancelAtRanks: (reason) => this.#sendCancel(session, request, reason),
      grantCredit: (bytes) => {
        // Only rank 0's results are forwarded, so only rank 0 is held by the window.
        if (session.closed || !request.waitingOn.has(0)) return;
        session.send(0, session.codec.pack({ t: "credit", id, bytes } satisfies RunnerMessage)).catch(() => {});
      },
      creditThreshold: Math.max(1, Math.floor(this.#options.streamHighWaterMark / 4)),
      finished: () => {
        session.requests.delete(id);
        // Reachable until here: collecting it would unlink a name a rank may not have mapped yet.
        shared.retained.length = 0;
        // Every rank has answered, so no rank reads it any more, unless one kept it (ctx.keep).
        if (segment) this.#poolOf(session).giveBack(segment, !request.keptSegments.has(segment.name));
      },
      onProgress: options.onProgress,
      onLog: options.onLog,
    });
    session.requests.set(id, request);
    this.#activity();
    const timer = setLongTimeout(timeoutMs, () => {
      const seconds = options.timeout ?? this.#options.timeoutMs / 1000;
      this.cancel(session, request, new TimeoutError(`request ${id} timed out after ${seconds} s`, timeoutMs), "timeout");
    });
    const onAbort = (): void => this.cancel(session, request, new AbortError(`request ${id} was aborted`, { cause: signal?.reason }), "aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    request.onSettled(() => {
      timer.cancel();
      signal?.removeEventListener("abort", onAbort);
      this.#activity();
    });
    for (const rank of ranks) {
      session.send(rank, bytes).catch((error: unknown) => {
        request.fail(new TransportError(`could not send request ${id} to rank ${rank}`, { rank, cause: error }));
        // That rank will never answer; the others must not wait for it in a collective.
        request.forgetRank(rank);
        this.#sendCancel(session, request, "failed");
      });
    }
    return request;
  }

  /**
   * The next event of a streaming `request`. With `streamingTimeoutMs`, a
   * wait that starts with nothing queued and outlasts it cancels the request
   * with a `TimeoutError` (`streamingTimeout`, in seconds, is for its message).
   */
  async nextEvent(session: ControlSession, request: PendingRequest, streamingTimeout: number | undefined, streamingTimeoutMs: number | undefined): Promise<IteratorResult<StreamEvent>> {
    let timer: LongTimer | undefined;
    if (streamingTimeoutMs !== undefined && request.events!.size === 0) {
      timer = setLongTimeout(streamingTimeoutMs, () => {
        const error = new TimeoutError(`request ${request.id}: no streaming result for ${streamingTimeout} s`, streamingTimeoutMs);
        this.cancel(session, request, error, "timeout");
      });
    }
    try {
      return await request.nextEvent();
    } finally {
      timer?.cancel();
    }
  }

  /** Fails `request` with `error` and tells the ranks still working on it to stop; nothing when it already settled. */
  cancel(session: ControlSession, request: PendingRequest, error: MultirankError, reason: "aborted" | "timeout"): void {
    if (request.settled) return;
    request.fail(error);
    this.#sendCancel(session, request, reason);
  }

  /** The session's payload segment pool, made at its first large payload; the session's end unlinks its segments. */
  #poolOf(session: ControlSession): PayloadSegmentPool {
    let pool = this.#pools.get(session);
    if (!pool) {
      const made = new PayloadSegmentPool(PAYLOAD_SEGMENT_PREFIX);
      pool = made;
      this.#pools.set(session, made);
      session.atRelease(() => made.close());
      // Released already: nothing would ever unlink what it lent (the request fails to send anyway).
      if (session.closed) made.close();
    }
    return pool;
  }

  #sendCancel(session: ControlSession, request: PendingRequest, reason: CancelReason): void {
    if (session.closed) return;
    const bytes = session.codec.pack({ t: "cancel", id: request.id, reason } satisfies RunnerMessage);
    for (const rank of request.waitingOn) {
      session.send(rank, bytes).catch(() => {});
    }
  }
}

