/**
 * A closed-loop load generator: keeps `concurrency` operations in flight until
 * `total` have finished. Knows nothing of runners, so it is unit-tested with
 * fake operations.
 */
import { performance } from "node:perf_hooks";

/** What {@link runClosedLoop} measured. */
export interface ClosedLoopResult {
  /** Wall time from the first start to the last finish, ms. */
  durationMs: number;
  /** Each operation's own time, ms, in the order they finished. */
  latenciesMs: number[];
}

/**
 * Runs `operation(seq)` for seq = `firstSeq` .. `firstSeq + total - 1`, at
 * most `concurrency` at once; a slot starts the next operation as soon as its
 * last one finishes.
 *
 * On the first failure no new operation starts, `signal` passed to the
 * operations is aborted (so in-flight ones can cancel), and once every
 * in-flight operation has settled the promise rejects with that first error.
 *
 * @param operation gets the sequence number and a signal that aborts when the loop gives up.
 * @param onFinished called after each successful operation with the count finished so far.
 * @throws whatever the first failing operation threw.
 * @example await runClosedLoop(100, 4, (seq, signal) => runner.invoke({ seq }, { signal }));
 */
export async function runClosedLoop(
  total: number,
  concurrency: number,
  operation: (seq: number, signal: AbortSignal) => Promise<unknown>,
  options: { firstSeq?: number; signal?: AbortSignal; onFinished?: (finished: number) => void } = {},
): Promise<ClosedLoopResult> {
  const firstSeq = options.firstSeq ?? 0;
  const giveUp = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, giveUp.signal]) : giveUp.signal;
  const latenciesMs: number[] = [];
  let next = 0;
  let failed = false;
  let firstError: unknown;

  const slot = async (): Promise<void> => {
    while (!failed && next < total && !signal.aborted) {
      const seq = firstSeq + next++;
      const t0 = performance.now();
      try {
        await operation(seq, signal);
      } catch (error) {
        if (!failed) {
          failed = true;
          firstError = error;
          giveUp.abort(error);
        }
        return;
      }
      latenciesMs.push(performance.now() - t0);
      options.onFinished?.(latenciesMs.length);
    }
  };

  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, slot));
  const durationMs = performance.now() - started;
  if (failed) throw firstError;
  // When options.signal aborted between operations, fewer than `total` ran: the caller checks its signal.
  return { durationMs, latenciesMs };
}
