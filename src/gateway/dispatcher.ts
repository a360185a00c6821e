/**
 * The dispatcher of one app: takes jobs from its queue while its pool has
 * capacity, runs each on a leased runner with the gateway's timeout (each
 * progress report restarts it), retries per the app's policy, and settles
 * the job. Worker errors become failed jobs, never gateway errors.
 */
import type { Logger } from "pino";
import { AbortError, TimeoutError } from "../errors.js";
import type { ForwardedLog } from "../transport/messages.js";
import { LongTimer } from "../util/timers.js";
import type { ResolvedApp, RetryReason } from "./app.js";
import { QueueFullError, ShuttingDownError } from "./errors.js";
import { eventToJson, startTimeoutError, type Job, type JobError, type JobLog } from "./job.js";
import type { JobQueue } from "./job-queue.js";
import type { RunnerLease, RunnerPool } from "./runner-pool.js";

/** Job counts for Runpod's `/health`. */
export interface DispatcherStats {
  completed: number;
  failed: number;
  inProgress: number;
  inQueue: number;
  retried: number;
}

/** Called when a job finishes (metrics, webhooks). */
export type JobFinishedListener = (job: Job) => void;

/** Options of {@link Dispatcher}. */
export interface DispatcherOptions {
  app: ResolvedApp;
  queue: JobQueue;
  pool: RunnerPool;
  logger: Logger;
  onFinished?: JobFinishedListener;
}

class GatewayTimeout extends TimeoutError {}

/** Why a running request is aborted when the gateway shuts down: an {@link AbortError} (`MULTIRANK_ERR_ABORTED`), as every cancellation. */
class ShutdownAbort extends AbortError {
  constructor() {
    super("the gateway shut down before the request finished");
  }
}

/** Why a running request is aborted when the gateway shuts down and hands its jobs back to a shared queue. */
class HandBackAbort extends AbortError {
  constructor() {
    super("the gateway shut down; the request goes back to the queue");
  }
}

/** How a job handed over by a shared queue left this gateway ({@link Dispatcher.runTaken}). */
export type TakenOutcome = "settled" | "handed-back";

/** Options of {@link Dispatcher.drain}. */
export interface DrainOptions {
  /**
   * Hand jobs back instead of cancelling them: what is still queued here,
   * and what still runs when the grace ends, goes back IN_QUEUE (a shared
   * queue gives them to another gateway). @default false
   */
  handBack?: boolean;
}

/** Runs one app's jobs. */
export class Dispatcher {
  readonly app: ResolvedApp;
  readonly #queue: JobQueue;
  readonly #pool: RunnerPool;
  readonly #log: Logger;
  readonly #onFinished: JobFinishedListener | undefined;
  readonly #running = new Set<Job>();
  readonly #counted = new WeakSet<Job>();
  /** Jobs a shared queue handed over, and how to tell it when each leaves. */
  readonly #taken = new Map<Job, (outcome: TakenOutcome) => void>();
  /** Every {@link #run} in flight, so a drain can wait for them all. */
  readonly #runs = new Set<Promise<void>>();
  readonly #stats: DispatcherStats = { completed: 0, failed: 0, inProgress: 0, inQueue: 0, retried: 0 };
  #closing = false;

  constructor(options: DispatcherOptions) {
    this.app = options.app;
    this.#queue = options.queue;
    this.#pool = options.pool;
    this.#log = options.logger.child({ component: "dispatcher", app: options.app.name });
    this.#onFinished = options.onFinished;
    this.#pool.on("change", () => this.#pump());
  }

  /** Jobs waiting. */
  get queueLength(): number {
    return this.#queue.length;
  }

  /** Jobs running now. */
  get runningCount(): number {
    return this.#running.size;
  }

  /** The pool, for counts. */
  get pool(): RunnerPool {
    return this.#pool;
  }

  /** Job counts since boot (Runpod `/health`). */
  stats(): DispatcherStats {
    return { ...this.#stats, inQueue: this.#queue.length, inProgress: this.#running.size };
  }

  /** Jobs ahead of `job` in the queue (0 when it is next or starting). */
  position(job: Job): number {
    return Math.max(0, this.#queue.position(job));
  }

  /**
   * Queues a job.
   * @throws {ShuttingDownError} during shutdown; {@link QueueFullError} at `maxQueueLength`.
   */
  submit(job: Job): void {
    if (this.#closing) throw new ShuttingDownError();
    if (this.#queue.length >= this.app.maxQueueLength) throw new QueueFullError(this.app.name, this.app.maxQueueLength);
    this.#enqueue(job);
  }

  /** Puts a FAILED, TIMED_OUT or CANCELLED job back in the queue under the same id (Runpod `/retry`). */
  resubmit(job: Job): boolean {
    if (this.#closing || !job.reset()) return false;
    this.#counted.delete(job);
    this.#enqueue(job);
    return true;
  }

  /**
   * Runs a job a shared queue handed to this gateway (it was admitted there:
   * no length check, no start timer). Resolves when it finished here, or was
   * handed back by a {@link drain} with `handBack`.
   */
  runTaken(job: Job): Promise<TakenOutcome> {
    if (this.#closing) return Promise.resolve("handed-back");
    // A retried job comes back as the same object: it ends (and is counted) again, or its queue's wait never resolves.
    this.#counted.delete(job);
    return new Promise<TakenOutcome>((resolve) => {
      this.#taken.set(job, resolve);
      this.#queue.push(job);
      this.#pump();
    });
  }

  /** The job with this id running (or queued) here, if any: a cancel relayed from another gateway finds it. */
  takenJob(id: string): Job | undefined {
    for (const job of this.#taken.keys()) if (job.id === id) return job;
    return undefined;
  }

  /** Cancels a job: removed from the queue, or aborted at the ranks. False when it had already finished. */
  cancel(job: Job): boolean {
    const removed = this.#queue.remove(job);
    const cancelled = job.cancel();
    if (removed) this.#settled(job);
    return cancelled;
  }

  /** Cancels every queued job (Runpod `/purge-queue`); returns how many. */
  purge(): number {
    const jobs = this.#queue.drain();
    for (const job of jobs) {
      job.cancel();
      this.#settled(job);
    }
    return jobs.length;
  }

  /**
   * Stops taking jobs, lets queued and running ones finish for up to
   * `graceMs`, then cancels what is left. Resolves when nothing runs.
   */
  async drain(graceMs: number, options: DrainOptions = {}): Promise<void> {
    this.#closing = true;
    const handBack = options.handBack === true;
    if (handBack) for (const job of this.#queue.drain()) this.#handBack(job, "the gateway shut down before it started");
    const deadline = Date.now() + graceMs;
    while ((this.#queue.length > 0 || this.#running.size > 0) && Date.now() < deadline) {
      await Promise.race([...this.#runs, sleep(Math.min(100, Math.max(1, deadline - Date.now())))]);
    }
    for (const job of this.#queue.drain()) {
      job.fail("CANCELLED", { type: "shutdown", message: "the gateway shut down before the request started" });
      this.#settled(job);
    }
    for (const job of this.#running) job.abortAttempt(handBack ? new HandBackAbort() : new ShutdownAbort());
    await Promise.all([...this.#runs]);
  }

  #handBack(job: Job, reason: string): void {
    job.requeue(reason);
    const resolve = this.#taken.get(job);
    this.#taken.delete(job);
    resolve?.("handed-back");
  }

  #enqueue(job: Job): void {
    this.#queue.push(job);
    if (job.startTimeoutMs !== undefined) {
      // A LongTimer: the header may ask for more than a native timer's 24.8 days.
      const timer = new LongTimer(job.startTimeoutMs, () => {
        if (job.status !== "IN_QUEUE" || job.finished) return;
        this.#queue.remove(job);
        job.fail("TIMED_OUT", startTimeoutError(job));
        this.#settled(job);
      }).unref();
      void job.done.then(() => timer.cancel());
      job.once("status", (status) => {
        if (status === "IN_PROGRESS") timer.cancel();
      });
    }
    this.#pump();
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#pool.hasCapacity()) {
      const job = this.#queue.shift()!;
      if (job.finished) {
        this.#settled(job);
        continue;
      }
      this.#running.add(job);
      const run = this.#run(job);
      this.#runs.add(run);
      void run.finally(() => this.#runs.delete(run));
    }
  }

  async #run(job: Job): Promise<void> {
    let lease: RunnerLease;
    try {
      lease = await this.#pool.acquire();
    } catch (error) {
      this.#running.delete(job);
      this.#attemptFailed(job, "crash", { type: "startup_failed", message: `no runner could start: ${messageOf(error)}` });
      this.#settled(job);
      this.#pump();
      return;
    }
    if (job.finished) {
      // Cancelled or timed out while its runner started.
      this.#running.delete(job);
      lease.release();
      this.#settled(job);
      return;
    }
    try {
      await this.#execute(job, lease);
    } finally {
      this.#running.delete(job);
      lease.release();
      this.#pump();
    }
  }

  async #execute(job: Job, lease: RunnerLease): Promise<void> {
    const signal = job.start(lease.workerId);
    const timer = new LongTimer(job.timeoutMs, () =>
      job.abortAttempt(new GatewayTimeout(`the request ran past its timeout of ${job.timeoutMs / 1000} s with no progress`, job.timeoutMs)),
    );
    const onProgress = (data: unknown): void => {
      timer.refresh(); // Tensorlake's rule: progress extends the timeout.
      job.log("INFO", typeof data === "string" ? data : JSON.stringify(data) ?? String(data));
    };
    // Every rank runs `call`, so a `ctx.log` line arrives once per rank: the label tells them apart.
    const onLog = (log: ForwardedLog): void => job.log(levelName(log.level), `[rank ${log.rank}] ${log.msg}`, "user", log.time);
    try {
      if (job.streaming) {
        let last: Buffer | undefined;
        for await (const event of lease.runner.stream(job.input, { asTextEvents: true, signal, onProgress, onLog })) {
          // Past the job's high-water mark, stop pulling until a reader catches up.
          const room = job.pushChunk(event);
          if (room) await room;
          last = event;
        }
        if (signal.aborted) throw signal.reason;
        job.completeWithJson(last ? eventToJson(last) : "null");
      } else {
        const output = await lease.runner.invoke(job.input, { signal, onProgress, onLog });
        job.complete(output);
      }
    } catch (error) {
      const reason: unknown = signal.aborted ? signal.reason : undefined;
      if (job.cancelRequested) job.fail("CANCELLED", { type: "cancelled", message: "the request was cancelled" });
      else if (reason instanceof HandBackAbort) {
        this.#handBack(job, reason.message);
        return;
      } else if (reason instanceof ShutdownAbort) job.fail("CANCELLED", { type: "shutdown", message: reason.message });
      else if (reason instanceof GatewayTimeout) this.#attemptFailed(job, "timeout", { type: "request_timeout", message: reason.message });
      else this.#attemptFailed(job, ...classify(error));
    } finally {
      timer.cancel();
    }
    this.#settled(job);
  }

  #attemptFailed(job: Job, reason: RetryReason, error: JobError): void {
    const retry = this.app.retries;
    if (!this.#closing && !job.cancelRequested && retry.on.includes(reason) && job.attempts <= retry.max && job.attempts > 0) {
      this.#stats.retried++;
      job.requeue(error.message);
      this.#queue.unshift(job);
      return;
    }
    job.fail(error.type === "request_timeout" ? "TIMED_OUT" : "FAILED", error);
  }

  #settled(job: Job): void {
    if (!job.finished || this.#counted.has(job)) return;
    this.#counted.add(job);
    const taken = this.#taken.get(job);
    this.#taken.delete(job);
    taken?.("settled");
    if (job.status === "COMPLETED") this.#stats.completed++;
    else this.#stats.failed++;
    if (job.status !== "COMPLETED") this.#log.info({ job: job.id, status: job.status, error: job.error?.message }, "request did not complete");
    this.#onFinished?.(job);
  }
}

function classify(error: unknown): [RetryReason, JobError] {
  const code = (error as { code?: unknown })?.code;
  const rank = (error as { rank?: unknown })?.rank;
  const message = messageOf(error);
  const at = typeof rank === "number" ? { rank } : {};
  switch (code) {
    case "MULTIRANK_ERR_RANK":
      return ["error", { type: isValidation(error) ? "validation_error" : "worker_error", message, ...at }];
    case "MULTIRANK_ERR_RANKS_FAILED": {
      const errors = (error as { errors?: readonly unknown[] }).errors ?? [];
      const validation = errors.length > 0 && errors.every(isValidation);
      return ["error", { type: validation ? "validation_error" : "worker_error", message, ...at }];
    }
    case "MULTIRANK_ERR_SERIALIZATION":
    case "MULTIRANK_ERR_MESSAGE_TOO_LARGE":
      return ["error", { type: "validation_error", message }];
    default:
      // A dead rank, a failed runner, a broken socket: the runner is gone.
      return ["crash", { type: "runner_crash", message, ...at }];
  }
}

/** A worker's own input check: a ValidationError (by name or multirank code) thrown on a rank. */
function isValidation(error: unknown): boolean {
  const remote = error as { code?: string; remoteName?: string; remoteCode?: string };
  return remote.code === "MULTIRANK_ERR_RANK" && (remote.remoteCode === "MULTIRANK_ERR_INVALID_ARGUMENT" || remote.remoteName === "ValidationError");
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function levelName(level: number): JobLog["level"] {
  if (level >= 50) return "ERROR";
  if (level >= 40) return "WARN";
  if (level >= 30) return "INFO";
  return "DEBUG";
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
