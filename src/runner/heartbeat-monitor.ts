/** Callbacks of a {@link HeartbeatMonitor}. */
export interface HeartbeatHooks {
  /** Sends heartbeat `n` to every rank. */
  ping(n: number): void;
  /** `rank` has been silent for `silentMs` (over the timeout). Called once; the monitor stops. */
  hung(rank: number, silentMs: number): void;
}

/** Pings per timeout: a healthy rank answers several times before it could be judged. */
const PINGS_PER_TIMEOUT = 4;
/** Pings need not be more frequent than this, whatever the timeout. */
const MAX_INTERVAL_MS = 5000;

/**
 * Watches each rank's event loop through heartbeats the rank's main thread
 * answers. Every message from a rank counts as a sign of life, so a busy
 * stream costs no extra traffic; a rank silent for longer than `timeoutMs`
 * is reported hung.
 *
 * The runner's own event loop may stall too (a long synchronous caller, a
 * GC): then no ping went out and no answer was read, and nothing can be
 * concluded about the ranks. A tick that runs late by more than an interval
 * therefore restarts every rank's clock instead of judging, and judging runs
 * in `setImmediate`, after the poll phase has read what the ranks sent.
 */
export class HeartbeatMonitor {
  readonly #timeoutMs: number;
  readonly #intervalMs: number;
  readonly #hooks: HeartbeatHooks;
  readonly #lastHeard: number[];
  /** Ranks judged; all of them after {@link start}, each from its {@link watch} otherwise. */
  readonly #watched: boolean[];
  /** Each rank's allowed silence, ms: the timeout, or a setup's longer one until {@link settle}. */
  readonly #limitMs: number[];
  #timer: NodeJS.Timeout | undefined;
  #expectedTick = 0;
  #n = 0;
  #stopped = false;

  readonly #now: () => number;

  /** `now`: the clock, in ms (injectable for tests). */
  constructor(worldSize: number, timeoutMs: number, hooks: HeartbeatHooks, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#timeoutMs = timeoutMs;
    this.#intervalMs = Math.max(10, Math.min(MAX_INTERVAL_MS, Math.floor(timeoutMs / PINGS_PER_TIMEOUT)));
    this.#hooks = hooks;
    this.#lastHeard = new Array<number>(worldSize).fill(0);
    this.#watched = new Array<boolean>(worldSize).fill(false);
    this.#limitMs = new Array<number>(worldSize).fill(timeoutMs);
  }

  /** Starts pinging; every rank's clock starts now. */
  start(): void {
    if (this.#stopped || this.#timer) return;
    this.#lastHeard.fill(this.#now());
    this.#watched.fill(true);
    this.#schedule();
  }

  /**
   * Judges `rank` from now on (a rank that joined); pinging starts with the
   * first. `setupMs`: the silence allowed until {@link settle} (loading a
   * worker module may block its event loop for a while), if longer than the timeout.
   */
  watch(rank: number, setupMs = this.#timeoutMs): void {
    if (this.#stopped || rank >= this.#watched.length) return;
    this.#lastHeard[rank] = this.#now();
    this.#watched[rank] = true;
    this.#limitMs[rank] = Math.max(setupMs, this.#timeoutMs);
    if (!this.#timer) this.#schedule();
  }

  /** A message came from `rank`: it is alive. */
  heard(rank: number): void {
    if (rank < this.#lastHeard.length) this.#lastHeard[rank] = this.#now();
  }

  /** `rank` is set up: from now on it is judged by the timeout. */
  settle(rank: number): void {
    if (rank < this.#limitMs.length) this.#limitMs[rank] = this.#timeoutMs;
  }

  /** Stops for good. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#expectedTick = this.#now() + this.#intervalMs;
    this.#timer = setTimeout(() => this.#tick(), this.#intervalMs);
    // A monitor alone must not keep a process alive; the ranks' sockets do.
    this.#timer.unref();
  }

  #tick(): void {
    if (this.#stopped) return;
    const late = this.#now() - this.#expectedTick;
    if (late > this.#intervalMs) {
      // This process stalled: the ranks could not have been heard. Judge from now on.
      this.#lastHeard.fill(this.#now());
    }
    this.#hooks.ping(++this.#n);
    setImmediate(() => {
      if (this.#stopped) return;
      const now = this.#now();
      // Of several silent ranks, the one silent longest went first: the
      // others may only have followed it (their group broke when it died).
      let worst = -1;
      let worstSilent = 0;
      for (let rank = 0; rank < this.#lastHeard.length; rank++) {
        if (!this.#watched[rank]) continue;
        const silent = now - this.#lastHeard[rank]!;
        if (silent > this.#limitMs[rank]! && silent > worstSilent) {
          worst = rank;
          worstSilent = silent;
        }
      }
      if (worst >= 0) {
        this.stop();
        this.#hooks.hung(worst, worstSilent);
        return;
      }
      this.#schedule();
    });
  }
}
