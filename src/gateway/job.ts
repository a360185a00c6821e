/**
 * The gateway's one job state machine, mapped onto fal's and Runpod's
 * protocols by the protocol modules:
 *
 *   IN_QUEUE → IN_PROGRESS → COMPLETED | FAILED | TIMED_OUT | CANCELLED
 *        ↑_________↓ (a retry puts it back in the queue)
 *
 * Outputs are kept as JSON text, made once; stream chunks as the SSE frames
 * (`data: <json>\n\n`) the ranks made, which an SSE reader sends untouched
 * and a Runpod `/stream` reader opens to their JSON. Nothing is re-encoded.
 */
import { EventEmitter } from "node:events";
import { toJsonSafe } from "../codec/text-events.js";
import { AbortError } from "../errors.js";
import { MemoryChunkBuffer, type ChunkBuffer } from "./chunk-buffer.js";

/** Where a job is. Runpod's six states; fal maps the four final ones onto `COMPLETED`. */
export type JobStatus = "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT";

/** Queue priority (`x-fal-queue-priority`, Runpod's `policy.lowPriority`). */
export type JobPriority = "normal" | "low";

/** Why a job failed, as fal's `error_type`. */
export type JobErrorType =
  | "worker_error"
  | "validation_error"
  | "request_timeout"
  | "start_timeout"
  | "runner_crash"
  | "startup_failed"
  | "cancelled"
  | "shutdown";

/** A failed job's error. */
export interface JobError {
  type: JobErrorType;
  message: string;
  /** The rank the error came from, when it came from one. */
  rank?: number;
}

/** One status log line, in fal's shape. */
export interface JobLog {
  message: string;
  level: "DEBUG" | "INFO" | "WARN" | "ERROR";
  source: "user" | "gateway";
  timestamp: string;
}

/** What a job is created with. */
export interface JobInit {
  id: string;
  app: string;
  input: unknown;
  priority: JobPriority;
  /** Run with `runner.stream()` and keep the chunks. */
  streaming: boolean;
  /** Execution timeout, ms; restarted by each progress report. */
  timeoutMs: number;
  /** Time-to-start deadline (fal's `x-fal-request-timeout`), ms. */
  startTimeoutMs?: number;
  /** POST the result here when done. */
  webhookUrl?: string;
  /** Which protocol submitted it (decides the webhook body). @default "fal" */
  protocol?: "fal" | "runpod";
  /**
   * Bytes of stream chunks held for readers (an SSE connection, Runpod
   * `/stream` polls) before the producer must wait: {@link pushChunk} then
   * returns a promise, and the dispatcher stops pulling from the runner until
   * a reader takes chunks. @default 4194304 (4 MiB)
   */
  chunkHighWaterMark?: number;
  /** When it was submitted (a job read back from a shared queue keeps its own). @default now */
  createdAt?: number;
  /** Where its unread stream chunks wait. @default in memory, bounded by {@link chunkHighWaterMark} */
  chunks?: ChunkBuffer;
}

/**
 * What a job is now, apart from its identity, input, logs and stream: what a
 * shared queue stores, and what a gateway that did not run the job reads back
 * ({@link Job.state}, {@link Job.restore}).
 */
export interface JobState {
  status: JobStatus;
  startedAt?: number | undefined;
  finishedAt?: number | undefined;
  attempts: number;
  /** The output as JSON text (COMPLETED only). */
  outputJson?: string | undefined;
  error?: JobError | undefined;
  workerId?: string | undefined;
  cancelRequested: boolean;
}

/** Events of a {@link Job}. */
export interface JobEvents {
  status: [status: JobStatus];
  /** A chunk arrived for the readers (take it with {@link Job.takeFrame} or {@link Job.takeChunks}). */
  chunk: [];
  log: [log: JobLog];
}

const FINAL: ReadonlySet<JobStatus> = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
/** Status log lines a job keeps (the oldest go first). */
export const MAX_LOGS = 1000;

/** True for COMPLETED, FAILED, CANCELLED and TIMED_OUT. */
export function isFinalStatus(status: JobStatus): boolean {
  return FINAL.has(status);
}
/** Default of {@link JobInit.chunkHighWaterMark}. */
export const DEFAULT_CHUNK_HIGH_WATER_MARK = 4 * 1024 * 1024;

/** A request moving through the gateway. */
export class Job extends EventEmitter<JobEvents> {
  readonly id: string;
  readonly app: string;
  #input: unknown;
  readonly priority: JobPriority;
  readonly streaming: boolean;
  readonly timeoutMs: number;
  readonly startTimeoutMs: number | undefined;
  readonly webhookUrl: string | undefined;
  readonly chunkHighWaterMark: number;
  readonly protocol: "fal" | "runpod";
  readonly createdAt: number;
  #status: JobStatus = "IN_QUEUE";
  #startedAt: number | undefined;
  #finishedAt: number | undefined;
  #attempts = 0;
  #outputJson: string | undefined;
  #error: JobError | undefined;
  #workerId: string | undefined;
  #logs: JobLog[] = [];
  /** Chunks no reader has taken yet, as SSE frames, oldest first; made on first use (most jobs stream nothing). */
  #chunkBuffer: ChunkBuffer | undefined;
  #cancelRequested = false;
  #abort: AbortController | undefined;
  #done: Promise<Job>;
  #resolveDone!: (job: Job) => void;

  constructor(init: JobInit) {
    super();
    this.setMaxListeners(0);
    this.id = init.id;
    this.app = init.app;
    this.#input = init.input;
    this.priority = init.priority;
    this.streaming = init.streaming;
    this.timeoutMs = init.timeoutMs;
    this.startTimeoutMs = init.startTimeoutMs;
    this.webhookUrl = init.webhookUrl;
    this.chunkHighWaterMark = init.chunkHighWaterMark ?? DEFAULT_CHUNK_HIGH_WATER_MARK;
    this.protocol = init.protocol ?? "fal";
    this.createdAt = init.createdAt ?? Date.now();
    this.#chunkBuffer = init.chunks;
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  get status(): JobStatus {
    return this.#status;
  }
  /** What the job runs with (`undefined` on a gateway that only reads a shared queue's job). */
  get input(): unknown {
    return this.#input;
  }
  /** Gives a job read back from a shared queue its input, when a gateway is about to run it. */
  supplyInput(input: unknown): void {
    this.#input = input;
  }
  /** True once the job is COMPLETED, FAILED, CANCELLED or TIMED_OUT. */
  get finished(): boolean {
    return FINAL.has(this.#status);
  }
  /** Resolves when the job is finished. */
  get done(): Promise<Job> {
    return this.#done;
  }
  get attempts(): number {
    return this.#attempts;
  }
  get error(): JobError | undefined {
    return this.#error;
  }
  /** The output as JSON text (COMPLETED only). */
  get outputJson(): string | undefined {
    return this.#outputJson;
  }
  get workerId(): string | undefined {
    return this.#workerId;
  }
  get logs(): readonly JobLog[] {
    return this.#logs;
  }
  get cancelRequested(): boolean {
    return this.#cancelRequested;
  }
  /** Aborts when the current attempt must stop (cancel, timeout, shutdown). */
  get signal(): AbortSignal | undefined {
    return this.#abort?.signal;
  }
  /** Milliseconds from submission to the start of the last attempt (Runpod's `delayTime`). */
  get delayTimeMs(): number {
    return Math.round((this.#startedAt ?? this.#finishedAt ?? Date.now()) - this.createdAt);
  }
  /** Milliseconds the last attempt ran (Runpod's `executionTime`, fal's `inference_time`). */
  get executionTimeMs(): number {
    if (this.#startedAt === undefined) return 0;
    return Math.round((this.#finishedAt ?? Date.now()) - this.#startedAt);
  }

  /** IN_QUEUE → IN_PROGRESS on runner `workerId`; returns the attempt's AbortSignal. */
  start(workerId: string): AbortSignal {
    this.#abort = new AbortController();
    this.#attempts++;
    this.#startedAt = Date.now();
    this.#workerId = workerId;
    this.#setStatus("IN_PROGRESS");
    return this.#abort.signal;
  }

  /** IN_PROGRESS → IN_QUEUE for a retry. */
  requeue(reason: string): void {
    if (this.finished) return;
    this.log("WARN", `attempt ${this.#attempts} failed (${reason}); retrying`, "gateway");
    this.#abort = undefined;
    this.#dropChunks();
    this.#setStatus("IN_QUEUE");
  }

  /** FAILED, TIMED_OUT or CANCELLED → IN_QUEUE again, same id (Runpod `/retry`). False for other states. */
  reset(): boolean {
    if (this.#status !== "FAILED" && this.#status !== "TIMED_OUT" && this.#status !== "CANCELLED") return false;
    this.#error = undefined;
    this.#outputJson = undefined;
    this.#cancelRequested = false;
    this.#startedAt = undefined;
    this.#finishedAt = undefined;
    this.#dropChunks();
    this.#renewDone();
    this.log("INFO", "request re-queued (retry)", "gateway");
    this.#setStatus("IN_QUEUE");
    return true;
  }

  /** Ends the job with its output (any value; converted to JSON once). */
  complete(output: unknown): void {
    // The JSON a text event would carry (images as data: URLs and so on), without the event around it.
    this.completeWithJson(JSON.stringify(toJsonSafe(output === undefined ? null : output)) ?? "null");
  }

  /** Ends the job with output already in JSON text. */
  completeWithJson(json: string): void {
    if (this.finished) return;
    this.#outputJson = json;
    this.#finish("COMPLETED");
  }

  /** Ends the job as FAILED, TIMED_OUT or CANCELLED. */
  fail(status: "FAILED" | "TIMED_OUT" | "CANCELLED", error: JobError): void {
    if (this.finished) return;
    this.#error = error;
    this.log("ERROR", error.message, "gateway");
    this.#finish(status);
  }

  /**
   * Asks the job to stop: a queued job ends CANCELLED at once (the caller
   * removes it from the queue), a running one has its attempt aborted with
   * an {@link AbortError}. Returns false when it had already finished.
   */
  cancel(): boolean {
    if (this.finished) return false;
    this.#cancelRequested = true;
    if (this.#status === "IN_QUEUE") this.fail("CANCELLED", { type: "cancelled", message: "the request was cancelled" });
    else this.#abort?.abort(new AbortError("the request was cancelled"));
    // Nobody reads a cancelled stream: free what it held and let the producer see the abort.
    this.#dropChunks();
    return true;
  }

  /** Aborts the running attempt with `reason` (timeouts, shutdown). */
  abortAttempt(reason: Error): void {
    this.#abort?.abort(reason);
    this.#wakeProducer();
  }

  /**
   * Adds a stream chunk for the readers, and emits `chunk`: an SSE frame
   * (`data: <json>\n\n`, as `runner.stream(..., { asTextEvents: true })`
   * yields it), kept as it is, or JSON text, framed here once. Returns `undefined` while the unread chunks
   * stay within {@link chunkHighWaterMark}; past it, a promise that resolves
   * once readers took enough (or the job ended, or its attempt was aborted):
   * the producer awaits it, so a reader that does not read holds the runner,
   * not memory.
   */
  pushChunk(event: Buffer | string): Promise<void> | undefined {
    // A stopped attempt's leftovers reach nobody, and must not wait for a reader that is gone.
    if (this.finished || this.#abort?.signal.aborted) return undefined;
    const frame = typeof event === "string" ? Buffer.from(`data: ${event}\n\n`) : event;
    const chunks = this.#chunks;
    const room = chunks.push(frame);
    if (!chunks.announces) this.emit("chunk");
    return room;
  }

  /** Tells readers that a chunk arrived elsewhere (a shared queue's other gateway ran the job). */
  chunkArrived(): void {
    this.emit("chunk");
  }

  /** Chunks not yet taken by a reader. */
  unreadChunks(): Promise<number> {
    return this.#chunks.count();
  }

  /** Takes every unread chunk, as JSON texts (Runpod `/stream` reads each chunk once). */
  async takeChunks(): Promise<string[]> {
    return (await this.#chunks.takeAll()).map(eventToJson);
  }

  /**
   * Takes the oldest unread chunk as its SSE frame, to be written as it is,
   * or `undefined` when there is none (an SSE connection, one at a time as it drains).
   */
  takeFrame(): Promise<Buffer | undefined> {
    return this.#chunks.take();
  }

  get #chunks(): ChunkBuffer {
    return (this.#chunkBuffer ??= new MemoryChunkBuffer(this.chunkHighWaterMark));
  }

  // Neither needs a buffer that was never made: nothing waits on it and nothing is in it.
  #wakeProducer(): void {
    this.#chunkBuffer?.release();
  }

  #dropChunks(): void {
    this.#chunkBuffer?.clear();
  }

  /** What the job is now (see {@link JobState}). */
  get state(): JobState {
    return {
      status: this.#status,
      startedAt: this.#startedAt,
      finishedAt: this.#finishedAt,
      attempts: this.#attempts,
      outputJson: this.#outputJson,
      error: this.#error,
      workerId: this.#workerId,
      cancelRequested: this.#cancelRequested,
    };
  }

  /**
   * Takes on a state read back from a shared queue (another gateway changed
   * the job): emits `status` when the status changed, and settles
   * {@link done} when it became final (a final job queued again gets a new one).
   */
  restore(state: JobState): void {
    const before = this.#status;
    if (isFinalStatus(before) && !isFinalStatus(state.status)) this.#renewDone();
    this.#startedAt = state.startedAt;
    this.#finishedAt = state.finishedAt;
    this.#attempts = state.attempts;
    this.#outputJson = state.outputJson;
    this.#error = state.error;
    this.#workerId = state.workerId;
    this.#cancelRequested = state.cancelRequested;
    if (state.status === before) return;
    this.#status = state.status;
    if (isFinalStatus(state.status)) this.#wakeProducer();
    this.emit("status", state.status);
    if (isFinalStatus(state.status)) this.#resolveDone(this);
  }

  /** Replaces the status logs with those read back from a shared queue. */
  restoreLogs(logs: readonly JobLog[]): void {
    this.#logs = logs.slice(-MAX_LOGS);
  }

  /** Adds a log line made elsewhere, and emits `log`. */
  addLog(entry: JobLog): void {
    if (this.#logs.length >= MAX_LOGS) this.#logs.shift();
    this.#logs.push(entry);
    this.emit("log", entry);
  }

  /** Adds a status log line. */
  log(level: JobLog["level"], message: string, source: JobLog["source"] = "user", time = Date.now()): void {
    this.addLog({ message, level, source, timestamp: new Date(time).toISOString() });
  }

  #finish(status: JobStatus): void {
    this.#finishedAt = Date.now();
    this.#abort = undefined;
    // Unread chunks stay for the last read; the producer is done either way.
    this.#wakeProducer();
    this.#setStatus(status);
    this.#resolveDone(this);
  }

  #renewDone(): void {
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  #setStatus(status: JobStatus): void {
    this.#status = status;
    this.emit("status", status);
  }
}

/** Why a job that did not start by its `startTimeoutMs` (fal's `x-fal-request-timeout`) failed. */
export function startTimeoutError(job: Job): JobError {
  return { type: "start_timeout", message: `the request did not start within ${(job.startTimeoutMs ?? 0) / 1000} s (x-fal-request-timeout)` };
}

/** The JSON inside a `data: <json>\n\n` event. */
export function eventToJson(event: Buffer): string {
  let start = 0;
  if (event.subarray(0, 6).toString("latin1") === "data: ") start = 6;
  else if (event.subarray(0, 5).toString("latin1") === "data:") start = 5;
  let end = event.length;
  while (end > start && (event[end - 1] === 0x0a || event[end - 1] === 0x0d)) end--;
  return event.toString("utf8", start, end);
}
