/** A unit of work on a rank: a request, or a function from `runInWorker`. */
export interface ScheduledJob {
  /** Request id; functions from `runInWorker` have none. */
  readonly id?: number;
  /** Runs alone: waits for running jobs to finish and holds later ones back. */
  readonly exclusive: boolean;
  run(): Promise<void>;
  /** Called instead of `run` when the job is cancelled before it started. */
  dropped(reason: string): void;
}

/**
 * Starts jobs in arrival order, at most `concurrency` at a time. Arrival
 * order is the runner's global order, because the control channel keeps
 * order per peer on either transport (see control-channel.ts).
 */
export class RequestScheduler {
  readonly #concurrency: number;
  #queue: ScheduledJob[] = [];
  #running = 0;
  #exclusiveRunning = false;
  #idleWaiters: Array<() => void> = [];

  constructor(concurrency: number) {
    this.#concurrency = Math.max(1, Math.floor(concurrency));
  }

  /** How many jobs may run at once. */
  get concurrency(): number {
    return this.#concurrency;
  }

  get pending(): number {
    return this.#queue.length + this.#running;
  }

  enqueue(job: ScheduledJob): void {
    this.#queue.push(job);
    this.#pump();
  }

  /** Removes a job that has not started; returns false when it is running or unknown. */
  dropQueued(id: number, reason: string): boolean {
    const index = this.#queue.findIndex((job) => job.id === id);
    if (index === -1) return false;
    const [job] = this.#queue.splice(index, 1);
    job!.dropped(reason);
    this.#pump();
    return true;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#exclusiveRunning && this.#running < this.#concurrency) {
      const next = this.#queue[0]!;
      if (next.exclusive && this.#running > 0) return;
      this.#queue.shift();
      this.#running++;
      if (next.exclusive) this.#exclusiveRunning = true;
      void next
        .run()
        .catch(() => {})
        .finally(() => {
          this.#running--;
          if (next.exclusive) this.#exclusiveRunning = false;
          this.#pump();
          if (this.pending === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
        });
    }
  }
}
