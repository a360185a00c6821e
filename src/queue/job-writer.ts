/**
 * Writes what happens to a job running on this gateway to its Redis record,
 * in order, and tells the other gateways. The writes go through the
 * connection that waits for Redis to come back, so a result reached while
 * Redis is away is written when it returns; {@link flushed} resolves once
 * everything so far is written (the job leaves the BullMQ queue only then).
 */
import type { Logger } from "pino";
import type { Job, JobLog, JobStatus } from "../gateway/job.js";
import type { EventBus } from "./event-bus.js";
import type { JobRecords } from "./job-records.js";

/** Mirrors one running job into Redis while attached. */
export class JobWriter {
  readonly #job: Job;
  readonly #owner: string;
  readonly #records: JobRecords;
  readonly #bus: EventBus;
  readonly #log: Logger;
  #chain: Promise<void> = Promise.resolve();
  #lost = false;
  readonly #onStatus = (): void => this.#writeState();
  readonly #onLog = (entry: JobLog): void => this.#writeLog(entry);

  /** `owner`: the claim this gateway holds on the job; writes are refused once another gateway holds it. */
  constructor(job: Job, owner: string, records: JobRecords, bus: EventBus, logger: Logger) {
    this.#job = job;
    this.#owner = owner;
    this.#records = records;
    this.#bus = bus;
    this.#log = logger;
    job.on("status", this.#onStatus);
    job.on("log", this.#onLog);
  }

  /** True once Redis refused a write: another gateway took the job over (this one was taken for lost). */
  get lost(): boolean {
    return this.#lost;
  }

  /** Writes the job's state now (after changes made before attaching). */
  writeNow(): void {
    this.#writeState();
  }

  /** Resolves once every change so far is in Redis. */
  flushed(): Promise<void> {
    return this.#chain;
  }

  detach(): void {
    this.#job.off("status", this.#onStatus);
    this.#job.off("log", this.#onLog);
  }

  #writeState(): void {
    // The state as of this event, not as of the write.
    const state = this.#job.state;
    this.#enqueue(async () => {
      if (await this.#records.writeState(this.#job.id, this.#owner, state)) this.#bus.publish({ kind: "status", id: this.#job.id });
      else this.#refused(state.status);
    });
  }

  #writeLog(entry: JobLog): void {
    this.#enqueue(async () => {
      const seq = await this.#records.appendLog(this.#job.id, this.#owner, entry);
      if (seq > 0) this.#bus.publish({ kind: "log", id: this.#job.id, log: entry, seq });
    });
  }

  #enqueue(write: () => Promise<void>): void {
    this.#chain = this.#chain.then(write).catch((error: unknown) => {
      this.#log.error({ err: error, job: this.#job.id }, "could not write the job's state to Redis");
    });
  }

  #refused(status: JobStatus): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#log.warn({ job: this.#job.id, status }, "Redis refused this gateway's update: the job was taken over by another gateway or already ended; stopping this attempt");
    this.#job.abortAttempt(new Error("another gateway took this job over"));
  }
}
