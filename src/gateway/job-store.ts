/** Jobs by id, kept for `ttl` seconds after they finish so results can be fetched. */
import type { Job } from "./job.js";

/** How many recent jobs per app {@link JobStore.recent} can list. */
export const RECENT_JOBS_PER_APP = 50;

/** An in-memory job store with expiry of finished jobs. */
export class JobStore {
  readonly #jobs = new Map<string, Job>();
  /** The last ids submitted per app, oldest first: the page's "recent requests" without a scan of every job. */
  readonly #recent = new Map<string, string[]>();
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
    let ids = this.#recent.get(job.app);
    if (!ids) this.#recent.set(job.app, (ids = []));
    ids.push(job.id);
    if (ids.length > RECENT_JOBS_PER_APP) ids.shift();
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  /** The app's last `limit` jobs still stored, newest first (at most {@link RECENT_JOBS_PER_APP}). */
  recent(app: string, limit = RECENT_JOBS_PER_APP): Job[] {
    const jobs: Job[] = [];
    const ids = this.#recent.get(app) ?? [];
    for (let i = ids.length - 1; i >= 0 && jobs.length < limit; i--) {
      const job = this.#jobs.get(ids[i]!);
      if (job) jobs.push(job);
    }
    return jobs;
  }

  /** Removes finished jobs older than the TTL. */
  sweep(now = Date.now()): void {
    for (const [id, job] of this.#jobs) {
      if (job.finished && now - job.createdAt - job.delayTimeMs - job.executionTimeMs > this.#ttlMs) this.#jobs.delete(id);
    }
    // Apps come and go at runtime: drop ids whose jobs expired, and apps left with none.
    for (const [app, ids] of this.#recent) {
      const kept = ids.filter((id) => this.#jobs.has(id));
      if (kept.length === 0) this.#recent.delete(app);
      else if (kept.length !== ids.length) this.#recent.set(app, kept);
    }
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
