/**
 * Timers for durations a caller chooses. Node's `setTimeout` takes at most
 * 2^31-1 ms (about 24.8 days): a longer delay is replaced by 1 ms with a
 * `TimeoutOverflowWarning`, so a "30 day" timeout would fire at once. Every
 * duration that comes from options, headers or request bodies goes through
 * {@link durationToMs} (which refuses values above {@link MAX_DURATION_SECONDS})
 * and every such timer is a {@link LongTimer}, which chains native timers of
 * at most 2^31-1 ms, so it fires late by the usual jitter and never early.
 */
import { ValidationError } from "../errors.js";

/** The longest duration any multirank timeout accepts: 365 days, in seconds. Runpod, fal and Modal limits are all far below a year. */
export const MAX_DURATION_SECONDS = 365 * 24 * 60 * 60;

/** {@link MAX_DURATION_SECONDS} in milliseconds. */
export const MAX_DURATION_MS = MAX_DURATION_SECONDS * 1000;

/** The longest delay one native timer takes (2^31-1 ms). */
const MAX_NATIVE_DELAY_MS = 2 ** 31 - 1;

/** Options of {@link durationToMs}. */
export interface DurationOptions {
  /** Accept 0 (where zero means "at once", as `keepAlive: 0`). @default false */
  allowZero?: boolean;
  /** The unit `value` is in. @default "s" */
  unit?: "s" | "ms";
}

/**
 * Validates a duration the caller gave and returns it in milliseconds.
 * @param field how the message names the value (`"options.timeout"`, `"header x-fal-request-timeout"`).
 * @throws {ValidationError} naming `field` when the value is not a finite number, is not positive
 * (or negative, with `allowZero`), or is above {@link MAX_DURATION_SECONDS}.
 * @example durationToMs(30, "options.timeout") // 30000
 */
export function durationToMs(value: unknown, field: string, options: DurationOptions = {}): number {
  const seconds = (options.unit ?? "s") === "s";
  const unitName = seconds ? "seconds" : "milliseconds";
  const allowZero = options.allowZero === true;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
    throw new ValidationError(`${field} must be a ${allowZero ? "non-negative" : "positive"} number of ${unitName}, got ${String(value)}`);
  }
  const max = seconds ? MAX_DURATION_SECONDS : MAX_DURATION_MS;
  if (value > max) throw new ValidationError(`${field} must be at most ${max} ${unitName} (365 days), got ${value}`);
  return seconds ? value * 1000 : value;
}

/**
 * A one-shot timer of any length. Below 2^31-1 ms it is one native timer;
 * above, a chain of them, each counting down what is left. `refresh()`
 * restarts the full wait (a progress report extending a timeout, a keepalive
 * reset). Keeps the process alive unless `unref()` was called, like
 * `setTimeout`.
 */
export class LongTimer {
  readonly #ms: number;
  readonly #onFire: () => void;
  #handle: NodeJS.Timeout | undefined;
  #left = 0;
  #step = 0;
  #ref = true;

  /**
   * Starts the timer.
   * @throws {RangeError} when `ms` is not a finite non-negative number (validate caller input with {@link durationToMs} first).
   */
  constructor(ms: number, onFire: () => void) {
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) throw new RangeError(`a timer needs a finite non-negative delay, got ${String(ms)}`);
    this.#ms = ms;
    this.#onFire = onFire;
    this.#arm(ms);
  }

  /** True until it fires or is cancelled. */
  get pending(): boolean {
    return this.#handle !== undefined;
  }

  /** Restarts the full wait from now, whether or not it already fired. */
  refresh(): this {
    // A single native timer restarts in place (cheap: no new handle); a chain starts over.
    if (this.#handle !== undefined && this.#ms <= MAX_NATIVE_DELAY_MS) this.#handle.refresh();
    else {
      this.cancel();
      this.#arm(this.#ms);
    }
    return this;
  }

  /** Stops it; it will not fire. Idempotent. */
  cancel(): void {
    if (this.#handle !== undefined) clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  /** Lets the process exit while this timer waits. */
  unref(): this {
    this.#ref = false;
    this.#handle?.unref();
    return this;
  }

  #arm(left: number): void {
    this.#left = left;
    this.#step = Math.min(left, MAX_NATIVE_DELAY_MS);
    this.#handle = setTimeout(() => this.#tick(), this.#step);
    if (!this.#ref) this.#handle.unref();
  }

  #tick(): void {
    // Count down by the step that elapsed rather than by the clock: a native timer never fires early, so neither does the chain.
    const left = this.#left - this.#step;
    if (left > 0) {
      this.#arm(left);
      return;
    }
    this.#handle = undefined;
    this.#onFire();
  }
}

/**
 * `setTimeout` for any delay up to {@link MAX_DURATION_MS} and beyond: a
 * 30-day timer fires after 30 days, never at once.
 * @example const timer = setLongTimeout(durationToMs(options.timeout, "options.timeout"), onTimeout); ...; timer.cancel();
 */
export function setLongTimeout(ms: number, onFire: () => void): LongTimer {
  return new LongTimer(ms, onFire);
}
