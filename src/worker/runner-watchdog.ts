/**
 * A joined rank's check that its runner is still there. A spawned rank learns
 * of its runner's death from the death pipe; a rank another launcher started
 * on another host has no such pipe, and a ZeroMQ connection whose peer
 * vanished (killed, host cut off) reports nothing. The runner pings every
 * rank several times per heartbeat timeout, so silence that long means the
 * runner is gone, and the rank must not wait for it forever.
 */
export class RunnerWatchdog {
  readonly #silenceMs: number;
  readonly #intervalMs: number;
  readonly #onSilent: (silentMs: number) => void;
  readonly #now: () => number;
  #lastHeard: number;
  #expectedTick = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `onSilent` runs once, when nothing was heard for `silenceMs`; `now` is the clock (tests give their own). */
  constructor(silenceMs: number, onSilent: (silentMs: number) => void, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#lastHeard = now();
    this.#silenceMs = silenceMs;
    this.#intervalMs = Math.max(10, Math.floor(silenceMs / 4));
    this.#onSilent = onSilent;
    this.#arm();
  }

  /** How long the runner must be silent before the rank gives up on it. */
  get silenceMs(): number {
    return this.#silenceMs;
  }

  /** Milliseconds since the runner was last heard. */
  silentFor(): number {
    return this.#now() - this.#lastHeard;
  }

  /** A message came from the runner. */
  heard(): void {
    this.#lastHeard = this.#now();
  }

  /** Stops watching (teardown, exit). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    this.#expectedTick = this.#now() + this.#intervalMs;
    this.#timer = setTimeout(() => this.#tick(), this.#intervalMs);
    // Never what keeps the process alive.
    this.#timer.unref();
  }

  #tick(): void {
    const now = this.#now();
    // This rank's own event loop was blocked (a long synchronous call()): the
    // runner's pings may be waiting unread in the socket. Judge only after
    // the loop has had a turn to read them.
    if (now - this.#expectedTick > this.#intervalMs) {
      this.#lastHeard = Math.max(this.#lastHeard, now - this.#intervalMs);
      this.#arm();
      return;
    }
    const silent = now - this.#lastHeard;
    if (silent >= this.#silenceMs) {
      this.#timer = undefined;
      this.#onSilent(silent);
      return;
    }
    this.#arm();
  }
}
