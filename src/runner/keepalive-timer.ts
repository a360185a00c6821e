import { LongTimer } from "../util/timers.js";

/**
 * Fires `onIdle` after `intervalMs` without activity; every `reset()` starts
 * the wait again. The timer never keeps the process alive by itself. Any
 * interval up to `MAX_DURATION_SECONDS` works (a {@link LongTimer}).
 */
export class KeepaliveTimer {
  readonly #intervalMs: number;
  readonly #onIdle: () => void;
  #timer: LongTimer | undefined;

  constructor(intervalMs: number, onIdle: () => void) {
    this.#intervalMs = intervalMs;
    this.#onIdle = onIdle;
  }

  /** Starts the wait from now (a running wait is dropped). */
  start(): void {
    this.cancel();
    this.#timer = new LongTimer(this.#intervalMs, () => {
      this.#timer = undefined;
      this.#onIdle();
    }).unref();
  }

  /** Restarts the wait if the timer is running. */
  reset(): void {
    if (this.#timer?.pending) this.#timer.refresh();
  }

  /** Stops the timer; only `start()` arms it again. */
  cancel(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
