import { RankError, RankGroupError, type MultirankError, type SerializedError } from "../errors.js";
import type { ForwardedLog, StreamItem } from "../transport/messages.js";
import { AsyncQueue } from "../util/async-queue.js";
import { deferred, type Deferred } from "../util/deferred.js";

/** What a stream hands its consumer, before formatting. `bytes`: its share of the wire size, for the stream window. */
export type StreamEvent = { kind: "item"; data?: unknown; event?: Uint8Array; bytes: number } | { kind: "result"; data: unknown };

/** Callbacks a request uses to reach back into its runner. */
export interface PendingRequestHooks {
  /** Tell ranks still working on it to stop (another rank failed). */
  cancelAtRanks(reason: "failed"): void;
  /** Every rank has reported: the request can be forgotten. */
  finished(): void;
  /** The consumer took `bytes` of streamed results: rank 0 may send that much more. */
  grantCredit(bytes: number): void;
  /** Credit is granted in steps of at least this many bytes (fewer messages). */
  creditThreshold: number;
  onProgress?: ((data: unknown) => void) | undefined;
  onLog?: ((log: ForwardedLog) => void) | undefined;
}

/**
 * How long the other ranks get to report their own errors once one rank has
 * failed, so the caller sees each rank's error rather than only the first.
 */
export const ERROR_GRACE_MS = 1000;

/**
 * One request in flight: which ranks still owe a `done`, rank 0's result,
 * the stream queue, and the first way it ended. Late messages after it
 * settled (cancelled, timed out) are absorbed here and reach nobody.
 */
export class PendingRequest {
  readonly id: number;
  readonly events: AsyncQueue<StreamEvent> | undefined;
  readonly #completion: Deferred<unknown> | undefined;
  readonly #waiting: Set<number>;
  readonly #hooks: PendingRequestHooks;
  readonly #errors: MultirankError[] = [];
  readonly #onSettle: Array<() => void> = [];
  #result: unknown;
  #hasResult = false;
  #settled = false;
  #graceTimer: NodeJS.Timeout | undefined;
  /** Bytes the consumer took that were not granted back to the rank yet. */
  #consumed = 0;
  #kept: Set<string> | undefined;

  constructor(id: number, streaming: boolean, ranks: Iterable<number>, hooks: PendingRequestHooks) {
    this.id = id;
    this.#waiting = new Set(ranks);
    this.#hooks = hooks;
    if (streaming) this.events = new AsyncQueue<StreamEvent>();
    else this.#completion = deferred<unknown>();
  }

  /** For `invoke`: resolves with rank 0's result. */
  get result(): Promise<unknown> {
    return this.#completion!.promise;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Ranks that have not reported `done` yet. */
  get waitingOn(): ReadonlySet<number> {
    return this.#waiting;
  }

  /** Runs `cleanup` once the request settles (timers, abort listeners). */
  onSettled(cleanup: () => void): void {
    if (this.#settled) cleanup();
    else this.#onSettle.push(cleanup);
  }

  /** Rank 0 streamed `items` in a message of `bytes` bytes; each item carries its share, returned as credit once consumed. */
  items(items: readonly StreamItem[], bytes: number): void {
    if (this.#settled || !this.events) return;
    const share = Math.ceil(bytes / Math.max(1, items.length));
    for (const item of items) this.events.push("event" in item ? { kind: "item", event: item.event, bytes: share } : { kind: "item", data: item.data, bytes: share });
  }

  /**
   * The next stream event for the consumer. Taking an item hands its bytes
   * back to the rank as credit, so the rank sends only as fast as the
   * consumer takes: what waits here stays within the stream window.
   */
  async nextEvent(): Promise<IteratorResult<StreamEvent>> {
    const next = await this.events!.next();
    if (!next.done && next.value.kind === "item" && !this.#settled) {
      this.#consumed += next.value.bytes;
      if (this.#consumed >= this.#hooks.creditThreshold) {
        const bytes = this.#consumed;
        this.#consumed = 0;
        this.#hooks.grantCredit(bytes);
      }
    }
    return next;
  }

  /** `addStreamingError` on rank 0: the stream fails with it, as in fal. */
  itemError(rank: number, error: SerializedError): void {
    if (this.#settled) return;
    this.#hooks.cancelAtRanks("failed");
    this.fail(new RankError(error, rank, "call"));
  }

  progress(data: unknown): void {
    if (!this.#settled) callUser(this.#hooks.onProgress, data);
  }

  log(log: ForwardedLog): void {
    if (!this.#settled) callUser(this.#hooks.onLog, log);
  }

  /** Pooled payload segments some rank kept with `ctx.keep()` (never lent again). */
  get keptSegments(): ReadonlySet<string> {
    return this.#kept ?? NONE_KEPT;
  }

  /** A rank reports, with its `done`, the payload segments its worker kept. */
  rankKept(names: readonly unknown[]): void {
    if (!Array.isArray(names)) return;
    for (const name of names) if (typeof name === "string") (this.#kept ??= new Set()).add(name);
  }

  /** A rank finished the request: ok, failed, or cancelled. */
  rankDone(rank: number, outcome: { ok: true; result?: unknown; hasResult: boolean } | { ok: false; error: SerializedError; cancelled: boolean }): void {
    if (!this.#waiting.delete(rank)) return;
    if (outcome.ok) {
      if (rank === 0 && outcome.hasResult) {
        this.#result = outcome.result;
        this.#hasResult = true;
      }
    } else if (!outcome.cancelled && !this.#settled) {
      this.#errors.push(new RankError(outcome.error, rank, "call"));
      if (this.#errors.length === 1 && this.#waiting.size > 0) {
        this.#hooks.cancelAtRanks("failed");
        this.#graceTimer = setTimeout(() => this.#settleWithErrors(), ERROR_GRACE_MS);
        this.#graceTimer.unref();
      }
    }
    if (this.#waiting.size === 0) {
      if (!this.#settled) {
        if (this.#errors.length > 0) this.#settleWithErrors();
        else this.#succeed();
      }
      this.#hooks.finished();
    }
  }

  /** Ends the request with `error` now (abort, timeout, crash, stop). */
  fail(error: unknown): void {
    if (this.#settled) return;
    this.#settle();
    if (this.events) this.events.fail(error);
    else this.#completion!.reject(error);
  }

  /** A rank will never answer (it died): stop waiting for it. */
  forgetRank(rank: number): void {
    this.#waiting.delete(rank);
    if (this.#waiting.size === 0) this.#hooks.finished();
  }

  #succeed(): void {
    this.#settle();
    if (this.events) {
      if (this.#hasResult) this.events.push({ kind: "result", data: this.#result });
      this.events.end();
    } else {
      this.#completion!.resolve(this.#result);
    }
  }

  #settleWithErrors(): void {
    if (this.#settled) return;
    const errors = this.#errors;
    this.fail(errors.length === 1 ? errors[0] : new RankGroupError(`request ${this.id} failed on ${errors.length} ranks`, errors));
  }

  #settle(): void {
    this.#settled = true;
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    for (const cleanup of this.#onSettle.splice(0)) cleanup();
  }
}

const NONE_KEPT: ReadonlySet<string> = new Set();

/** A caller's callback may throw; that is the caller's bug and must not break the runner. */
function callUser<T>(callback: ((value: T) => void) | undefined, value: T): void {
  if (!callback) return;
  try {
    callback(value);
  } catch (error) {
    process.emitWarning(`multirank: an onProgress/onLog callback threw: ${error instanceof Error ? error.message : String(error)}`);
  }
}
