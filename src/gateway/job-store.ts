/** Jobs by id, kept for `ttl` seconds after they finish so results can be fetched. */
import type { Job } from "./job.js";

/** An in-memory job store with expiry of finished jobs. */
export class JobStore {
  readonly #jobs = new Map<string, Job>();
  readonly #ttlMs: number;
  readonly #sweeper: NodeJS.Timeout;

  /** @param ttlSeconds how long finished jobs stay readable. */
  constructor(ttlSeconds: number) {
    this.#ttlMs = ttlSeconds * 1000;
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.#ttlMs / 4)));
    this.#sweeper.unref();
  }

  add(job: Job): void {
    this.#jobs.set(job.id, job);
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  delete(id: string): void {
    this.#jobs.delete(id);
  }

  /** Removes finished jobs older than the TTL. */
  sweep(now = Date.now()): void {
    for (const [id, job] of this.#jobs) {
      if (job.finished && now - job.createdAt - job.delayTimeMs - job.executionTimeMs > this.#ttlMs) this.#jobs.delete(id);
    }
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
