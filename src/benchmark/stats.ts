/**
 * Summary statistics for latency samples. Pure: no clocks, no I/O.
 *
 * Percentiles use the **nearest-rank** method: the p-th percentile of n
 * sorted samples is the sample at 1-based rank `ceil(p / 100 * n)` (rank 1
 * for p = 0). It always returns a value that was actually measured, which is
 * what people expect of "p99 latency", and it needs no interpolation.
 */
import { ValidationError } from "../errors.js";

/** What {@link summarize} returns; every field is in the samples' unit (milliseconds in reports). */
export interface LatencySummary {
  /** Number of samples. */
  count: number;
  /** Median, nearest-rank. */
  p50: number;
  /** 90th percentile, nearest-rank. */
  p90: number;
  /** 99th percentile, nearest-rank. */
  p99: number;
  /** Arithmetic mean. */
  mean: number;
  /** Smallest sample. */
  min: number;
  /** Largest sample. */
  max: number;
}

/**
 * The p-th percentile of `sorted` by the nearest-rank method.
 *
 * @param sorted samples in ascending order (not checked, for speed; use {@link summarize} for raw samples).
 * @param p the percentile, 0 to 100 inclusive.
 * @throws {ValidationError} when `sorted` is empty or `p` is outside [0, 100].
 * @example percentile([10, 20, 30, 40], 50) // 20 (rank ceil(0.5 * 4) = 2)
 * @example percentile([10, 20, 30, 40], 90) // 40 (rank ceil(0.9 * 4) = 4)
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new ValidationError("percentile: samples must not be empty");
  if (!Number.isFinite(p) || p < 0 || p > 100) throw new ValidationError(`percentile: p must be between 0 and 100, got ${p}`);
  // Rounded to 1e-9 first so that 0.29 * 100 style float error never bumps the rank.
  const rank = Math.max(1, Math.ceil(Math.round((p / 100) * sorted.length * 1e9) / 1e9));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/**
 * Sorts a copy of `samples` and returns count, p50, p90, p99, mean, min and max.
 *
 * @throws {ValidationError} when `samples` is empty or holds a value that is not a finite number.
 * @example summarize([3, 1, 2]) // { count: 3, p50: 2, p90: 3, p99: 3, mean: 2, min: 1, max: 3 }
 */
export function summarize(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) throw new ValidationError("summarize: samples must not be empty");
  let sum = 0;
  for (const value of samples) {
    if (!Number.isFinite(value)) throw new ValidationError(`summarize: every sample must be a finite number, got ${value}`);
    sum += value;
  }
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    mean: sum / sorted.length,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  };
}

/**
 * Events (or requests) per second: `count` over `durationMs`; 0 when no time passed.
 *
 * @example ratePerSecond(500, 250) // 2000
 */
export function ratePerSecond(count: number, durationMs: number): number {
  return durationMs > 0 ? (count * 1000) / durationMs : 0;
}
