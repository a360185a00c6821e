/**
 * The wait line of one app: an in-memory, synchronous interface. A durable
 * queue shared by several hosts (BullMQ on Redis) needs an asynchronous one;
 * that is issue 16's to design, not something this interface promises.
 */
import type { Job } from "./job.js";

/** What the dispatcher needs from a queue. */
export interface JobQueue {
  /** Jobs waiting. */
  readonly length: number;
  /** Adds a job behind those of its priority. */
  push(job: Job): void;
  /** Puts a job back at the head of its priority (a retry keeps its place). */
  unshift(job: Job): void;
  /** Takes the next job: normal priority first, then low; oldest first within each. */
  shift(): Job | undefined;
  /** Removes a job; false when it was not waiting. */
  remove(job: Job): boolean;
  /** Jobs ahead of this one (0 = next), or -1 when it is not waiting. */
  position(job: Job): number;
  /** Removes and returns every waiting job. */
  drain(): Job[];
}

/** The default queue: two in-memory lines, normal and low priority. */
export class MemoryJobQueue implements JobQueue {
  readonly #normal: Job[] = [];
  readonly #low: Job[] = [];

  get length(): number {
    return this.#normal.length + this.#low.length;
  }

  push(job: Job): void {
    this.#line(job).push(job);
  }

  unshift(job: Job): void {
    this.#line(job).unshift(job);
  }

  shift(): Job | undefined {
    return this.#normal.shift() ?? this.#low.shift();
  }

  remove(job: Job): boolean {
    const line = this.#line(job);
    const index = line.indexOf(job);
    if (index < 0) return false;
    line.splice(index, 1);
    return true;
  }

  position(job: Job): number {
    if (job.priority === "low") {
      const index = this.#low.indexOf(job);
      return index < 0 ? -1 : this.#normal.length + index;
    }
    return this.#normal.indexOf(job);
  }

  drain(): Job[] {
    return [...this.#normal.splice(0), ...this.#low.splice(0)];
  }

  #line(job: Job): Job[] {
    return job.priority === "low" ? this.#low : this.#normal;
  }
}
