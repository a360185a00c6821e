/**
 * What the protocol modules share: the key check and a small set of
 * operations on apps by name and on their jobs ({@link ProtocolCore}).
 * Protocols translate HTTP to and from these; they never touch dispatchers,
 * runners or the job store.
 */
import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { durationToMs } from "../util/timers.js";
import type { KeyChecker } from "./auth.js";
import type { Dispatcher, DispatcherStats } from "./dispatcher.js";
import { AppNotFoundError, JobNotFoundError, UnauthorizedError } from "./errors.js";
import { Job, type JobInit } from "./job.js";
import { queryKeyOf } from "./redact.js";
import type { JobStore } from "./job-store.js";
import type { PoolCounts } from "./runner-pool.js";

/** Options of {@link ProtocolCore.submit}. */
export type SubmitOptions = Omit<JobInit, "id" | "app" | "timeoutMs"> & { timeoutMs?: number };

/** An app's load, for Runpod's `/health`. */
export interface AppHealth {
  /** Job counts since boot. */
  jobs: DispatcherStats;
  /** The app's runners by state. */
  runners: PoolCounts;
}

/**
 * The operations a protocol (fal, Runpod, the page's JSON routes) works
 * with. Apps are named (`owner/alias`); jobs are the {@link Job}s it hands
 * out, which carry their own state, logs and stream. Dispatchers, pools and
 * the job store stay behind it, so a protocol cannot reach a runner.
 */
export interface ProtocolCore {
  /** True when the gateway checks API keys (some are configured). */
  readonly keysRequired: boolean;
  /**
   * @throws {UnauthorizedError} unless the request carries an accepted key (header, or `fal_key` query for
   *   EventSource, with `allowQueryKey`). The error never quotes the key it was given.
   */
  authorize(request: FastifyRequest, allowQueryKey?: boolean): void;
  /** The names of the apps served now. */
  appNames(): string[];
  /** @throws {AppNotFoundError} unless `app` is served now. */
  assertApp(app: string): void;
  /**
   * Creates, stores and queues a job of `app`.
   * @throws {AppNotFoundError} {QueueFullError} {ShuttingDownError} {QueueUnavailableError} (a shared queue's Redis is unreachable)
   */
  submit(app: string, options: SubmitOptions): Promise<Job>;
  /** A job of `app` by id. @throws {JobNotFoundError} */
  job(app: string, id: string): Promise<Job>;
  /** A job of `app` by id, or `undefined`. */
  findJob(app: string, id: string): Promise<Job | undefined>;
  /** Jobs ahead of `job` in its queue (0 when it is next or started). */
  position(job: Job): Promise<number>;
  /** Cancels a job: out of the queue, or aborted at the ranks. False when it had already finished. */
  cancel(job: Job): Promise<boolean>;
  /**
   * Queues a FAILED, TIMED_OUT or CANCELLED job again under the same id (Runpod `/retry`). False for
   * other states, and while shutting down. @throws {AppNotFoundError} when its app is gone
   */
  retry(job: Job): Promise<boolean>;
  /** Cancels every queued job of `app` (Runpod `/purge-queue`); returns how many. @throws {AppNotFoundError} */
  purge(app: string): Promise<number>;
  /** Job counts and runners of `app`. @throws {AppNotFoundError} */
  health(app: string): Promise<AppHealth>;
  /** The app's last `limit` jobs still stored, newest first (an app that is gone still has its jobs). */
  recentJobs(app: string, limit: number): Promise<Job[]>;
}

/** The gateway's {@link ProtocolCore}, over the app table's dispatchers and the job store. */
export class GatewayCore implements ProtocolCore {
  readonly #dispatchers: ReadonlyMap<string, Dispatcher>;
  readonly #jobs: JobStore;
  readonly #keys: KeyChecker;
  readonly #chunkHighWaterMark: number | undefined;
  /**
   * The dispatcher that queued each job: an app replaced at runtime (`update`) has a new dispatcher under its
   * name while the old one drains its jobs, and only the old one can take a job out of its queue.
   */
  readonly #owners = new WeakMap<Job, Dispatcher>();

  /**
   * `dispatchers`: the live map of apps (apps come and go at runtime, so it is read at each call).
   * `chunkHighWaterMark`: each streaming job's {@link JobInit.chunkHighWaterMark}.
   */
  constructor(dispatchers: ReadonlyMap<string, Dispatcher>, jobs: JobStore, keys: KeyChecker, chunkHighWaterMark?: number) {
    this.#dispatchers = dispatchers;
    this.#jobs = jobs;
    this.#keys = keys;
    this.#chunkHighWaterMark = chunkHighWaterMark;
  }

  get keysRequired(): boolean {
    return !this.#keys.open;
  }

  authorize(request: FastifyRequest, allowQueryKey = false): void {
    authorizeRequest(this.#keys, request, allowQueryKey);
  }

  appNames(): string[] {
    return [...this.#dispatchers.keys()];
  }

  assertApp(app: string): void {
    this.#app(app);
  }

  async submit(app: string, options: SubmitOptions): Promise<Job> {
    const dispatcher = this.#app(app);
    const job = new Job({
      ...(this.#chunkHighWaterMark === undefined ? {} : { chunkHighWaterMark: this.#chunkHighWaterMark }),
      ...options,
      id: randomUUID(),
      app: dispatcher.app.name,
      timeoutMs: options.timeoutMs ?? dispatcher.app.timeout * 1000,
    });
    dispatcher.submit(job);
    this.#owners.set(job, dispatcher);
    this.#jobs.add(job);
    return job;
  }

  async job(app: string, id: string): Promise<Job> {
    const job = await this.findJob(app, id);
    if (!job) throw new JobNotFoundError(id);
    return job;
  }

  async findJob(app: string, id: string): Promise<Job | undefined> {
    const job = this.#jobs.get(id);
    return job && job.app === app ? job : undefined;
  }

  async position(job: Job): Promise<number> {
    return this.#owner(job).position(job);
  }

  async cancel(job: Job): Promise<boolean> {
    return this.#owner(job).cancel(job);
  }

  // A retry goes to the app as it is served now, not to a dispatcher that was replaced.
  async retry(job: Job): Promise<boolean> {
    const dispatcher = this.#app(job.app);
    if (!dispatcher.resubmit(job)) return false;
    this.#owners.set(job, dispatcher);
    return true;
  }

  async purge(app: string): Promise<number> {
    return this.#app(app).purge();
  }

  async health(app: string): Promise<AppHealth> {
    const dispatcher = this.#app(app);
    return { jobs: dispatcher.stats(), runners: dispatcher.pool.counts() };
  }

  async recentJobs(app: string, limit: number): Promise<Job[]> {
    return this.#jobs.recent(app, limit);
  }

  #owner(job: Job): Dispatcher {
    return this.#owners.get(job) ?? this.#app(job.app);
  }

  /** @throws {AppNotFoundError} */
  #app(name: string): Dispatcher {
    const dispatcher = this.#dispatchers.get(name);
    if (!dispatcher) throw new AppNotFoundError(name);
    return dispatcher;
  }
}

/**
 * {@link ProtocolCore.authorize} for any core: the key from the header, or the `fal_key` query with `allowQueryKey`.
 * @throws {UnauthorizedError} that never quotes the key it was given.
 */
export function authorizeRequest(keys: KeyChecker, request: FastifyRequest, allowQueryKey: boolean): void {
  let header = request.headers.authorization;
  if (header === undefined && allowQueryKey) {
    // The gateway took the key off the URL before routing (so no log can quote it); it kept it for here.
    const key = queryKeyOf(request.raw);
    if (key !== undefined) header = `Key ${key}`;
  }
  if (!keys.check(header)) throw new UnauthorizedError(header ? "invalid API key" : "missing API key: send Authorization: Key <id>:<secret>");
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
