import type { Logger } from "pino";

/** What a worker's `call` receives besides its input. */
export interface CallContext {
  /** The runner-unique id of this request. */
  readonly requestId: number;
  /** True when the caller used `stream()`; false for `invoke()`. */
  readonly streaming: boolean;
  /** Aborts when the caller cancels, times out, breaks out of a stream, or another rank fails. */
  readonly signal: AbortSignal;
  /**
   * Reports progress to the caller (rank 0 only; ignored elsewhere). The
   * gateway shows it in status logs and extends the request's timeout.
   */
  progress(data: unknown): void;
  /** A logger bound to this request; its records also reach the caller's `onLog`. */
  readonly log: Logger;
  /**
   * Keeps payload buffers past the end of this call. Large payload buffers
   * sit in shared memory that the runner writes the next request's payload
   * into once every rank has answered: a view held without `keep` may show a
   * later request's bytes. Pass the payload, or any data holding parts of it,
   * and keep what this returns: the same views for buffers the runner copied
   * (no copy; their segment is never reused), copies of `allocSharedBuffer`
   * memory (its owner writes into it again); other values as they are.
   * Call it before `call()` returns (or its stream ends).
   * @throws {StateError} after the request has ended.
   * @example
   * this.#weights = ctx.keep(input.weights);
   */
  keep<T>(value: T): T;
}
