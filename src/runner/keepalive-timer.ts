/**
 * Fires `onIdle` after `intervalMs` without activity; every `reset()` starts
 * the wait again. The timer never keeps the process alive by itself.
 */
export class KeepaliveTimer {
  readonly #intervalMs: number;
  readonly #onIdle: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(intervalMs: number, onIdle: () => void) {
    this.#intervalMs = intervalMs;
    this.#onIdle = onIdle;
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  start(): void {
    this.cancel();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#onIdle();
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Restarts the wait if the timer is running. */
  reset(): void {
    if (this.#timer) this.#timer.refresh();
  }

  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
