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
}
