/**
 * What the protocol modules share: apps by name, the job store, job creation
 * and the key check. Protocols translate HTTP to and from this; they never
 * touch runners.
 */
import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { durationToMs } from "../util/timers.js";
import type { KeyChecker } from "./auth.js";
import type { Dispatcher } from "./dispatcher.js";
import { AppNotFoundError, JobNotFoundError, UnauthorizedError } from "./errors.js";
import { Job, type JobInit } from "./job.js";
import { queryKeyOf } from "./redact.js";
import type { JobStore } from "./job-store.js";

/** Options of {@link GatewayCore.submit}. */
export type SubmitOptions = Omit<JobInit, "id" | "app" | "timeoutMs"> & { timeoutMs?: number };

/** The shared state protocols work on. */
export class GatewayCore {
  readonly dispatchers: ReadonlyMap<string, Dispatcher>;
  readonly jobs: JobStore;
  readonly #keys: KeyChecker;
  readonly #chunkHighWaterMark: number | undefined;

  /** `chunkHighWaterMark`: each streaming job's {@link JobInit.chunkHighWaterMark}. */
  constructor(dispatchers: ReadonlyMap<string, Dispatcher>, jobs: JobStore, keys: KeyChecker, chunkHighWaterMark?: number) {
    this.dispatchers = dispatchers;
    this.jobs = jobs;
    this.#keys = keys;
    this.#chunkHighWaterMark = chunkHighWaterMark;
  }

  /** True when the gateway checks API keys (some are configured). */
  get keysRequired(): boolean {
    return !this.#keys.open;
  }

  /** The app's dispatcher. @throws {AppNotFoundError} */
  app(name: string): Dispatcher {
    const dispatcher = this.dispatchers.get(name);
    if (!dispatcher) throw new AppNotFoundError(name);
    return dispatcher;
  }

  /**
   * @throws {UnauthorizedError} unless the request carries an accepted key (header, or `fal_key` query for EventSource).
   * The error never quotes the key it was given.
   */
  authorize(request: FastifyRequest, allowQueryKey = false): void {
    let header = request.headers.authorization;
    if (header === undefined && allowQueryKey) {
      // The gateway took the key off the URL before routing (so no log can quote it); it kept it for here.
      const key = queryKeyOf(request.raw);
      if (key !== undefined) header = `Key ${key}`;
    }
    if (!this.#keys.check(header)) throw new UnauthorizedError(header ? "invalid API key" : "missing API key: send Authorization: Key <id>:<secret>");
  }

  /** Creates, stores and queues a job. @throws {QueueFullError} {ShuttingDownError} */
  submit(dispatcher: Dispatcher, options: SubmitOptions): Job {
    const job = new Job({
      ...(this.#chunkHighWaterMark === undefined ? {} : { chunkHighWaterMark: this.#chunkHighWaterMark }),
      ...options,
      id: randomUUID(),
      app: dispatcher.app.name,
      timeoutMs: options.timeoutMs ?? dispatcher.app.timeout * 1000,
    });
    dispatcher.submit(job);
    this.jobs.add(job);
    return job;
  }

  /** A job of `app` by id. @throws {JobNotFoundError} */
  job(app: string, id: string): Job {
    const job = this.jobs.get(id);
    if (!job || job.app !== app) throw new JobNotFoundError(id);
    return job;
  }
}

/**
 * Parses a seconds header (`x-fal-request-timeout`) into milliseconds.
 * @throws {ValidationError} (422) naming the header unless it is a positive number of seconds up to `MAX_DURATION_SECONDS`.
 */
export function secondsHeaderMs(value: string | string[] | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const text = (Array.isArray(value) ? value[0] : value) ?? "";
  // Number("") is 0 and Number(" 5 ") is 5: an empty header is refused like any other non-number.
  return durationToMs(text.trim() === "" ? Number.NaN : Number(text), `header ${name}`);
}
