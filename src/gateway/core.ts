/**
 * What the protocol modules share: apps by name, the job store, job creation
 * and the key check. Protocols translate HTTP to and from this; they never
 * touch runners.
 */
import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { KeyChecker } from "./auth.js";
import type { Dispatcher } from "./dispatcher.js";
import { AppNotFoundError, BadRequestError, JobNotFoundError, UnauthorizedError } from "./errors.js";
import { Job, type JobInit } from "./job.js";
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

  /** The app's dispatcher. @throws {AppNotFoundError} */
  app(name: string): Dispatcher {
    const dispatcher = this.dispatchers.get(name);
    if (!dispatcher) throw new AppNotFoundError(name);
    return dispatcher;
  }

  /** @throws {UnauthorizedError} unless the request carries an accepted key (header, or `fal_key` query for EventSource). */
  authorize(request: FastifyRequest, allowQueryKey = false): void {
    let header = request.headers.authorization;
    if (header === undefined && allowQueryKey) {
      const key = (request.query as Record<string, unknown> | undefined)?.fal_key;
      if (typeof key === "string") header = `Key ${key}`;
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

/** Parses a seconds header (`x-fal-request-timeout`). @throws {BadRequestError} */
export function secondsHeader(value: string | string[] | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(Array.isArray(value) ? value[0] : value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new BadRequestError(`header ${name} must be a positive number of seconds`);
  return seconds;
}
