import { AbortError } from "../errors.js";

/**
 * Throws an {@link AbortError} (code `MULTIRANK_ERR_ABORTED`) with the
 * signal's reason as `cause` when `signal` has aborted; otherwise does nothing.
 *
 * @example throwIfAborted(options.signal, "benchmark");
 */
export function throwIfAborted(signal: AbortSignal | undefined, what = "benchmark"): void {
  if (signal?.aborted) throw new AbortError(`${what} was aborted`, { cause: signal.reason });
}
