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
}

/** Events of a {@link Job}. */
export interface JobEvents {
  status: [status: JobStatus];
  chunk: [frame: Buffer];
  log: [log: JobLog];
}

const FINAL: ReadonlySet<JobStatus> = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
const MAX_LOGS = 1000;
/** Unread chunks at most, whatever their size: a second high-water mark, for floods of tiny chunks. */
const MAX_UNREAD_CHUNKS = 10_000;
/** Default of {@link JobInit.chunkHighWaterMark}. */
export const DEFAULT_CHUNK_HIGH_WATER_MARK = 4 * 1024 * 1024;

/** A request moving through the gateway. */
export class Job extends EventEmitter<JobEvents> {
  readonly id: string;
  readonly app: string;
  readonly input: unknown;
  readonly priority: JobPriority;
  readonly streaming: boolean;
  readonly timeoutMs: number;
  readonly startTimeoutMs: number | undefined;
  readonly webhookUrl: string | undefined;
  readonly chunkHighWaterMark: number;
  readonly protocol: "fal" | "runpod";
  readonly createdAt = Date.now();
  #status: JobStatus = "IN_QUEUE";
  #startedAt: number | undefined;
  #finishedAt: number | undefined;
  #attempts = 0;
  #outputJson: string | undefined;
  #error: JobError | undefined;
  #workerId: string | undefined;
  readonly #logs: JobLog[] = [];
  /** Chunks no reader has taken yet, as SSE frames, oldest first, and their size in bytes. */
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  /** A producer waiting for readers to make room. */
  #spaceWaiters: Array<() => void> = [];
  #cancelRequested = false;
  #abort: AbortController | undefined;
  #done: Promise<Job>;
  #resolveDone!: (job: Job) => void;

  constructor(init: JobInit) {
    super();
    this.setMaxListeners(0);
    this.id = init.id;
    this.app = init.app;
    this.input = init.input;
    this.priority = init.priority;
    this.streaming = init.streaming;
    this.timeoutMs = init.timeoutMs;
    this.startTimeoutMs = init.startTimeoutMs;
    this.webhookUrl = init.webhookUrl;
    this.chunkHighWaterMark = init.chunkHighWaterMark ?? DEFAULT_CHUNK_HIGH_WATER_MARK;
    this.protocol = init.protocol ?? "fal";
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  get status(): JobStatus {
    return this.#status;
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
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
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
    this.#chunks.push(frame);
    this.#chunkBytes += frame.length;
    this.emit("chunk", frame);
    if (!this.#full()) return undefined;
    return new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
  }

  /** Chunks not yet taken by a reader. */
  get unreadChunks(): number {
    return this.#chunks.length;
  }

  /** Takes every unread chunk, as JSON texts (Runpod `/stream` reads each chunk once). */
  takeChunks(): string[] {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#wakeProducer();
    return chunks.map(eventToJson);
  }

  /**
   * Takes the oldest unread chunk as its SSE frame, to be written as it is,
   * or `undefined` when there is none (an SSE connection, one at a time as it drains).
   */
  takeFrame(): Buffer | undefined {
    const frame = this.#chunks.shift();
    if (frame === undefined) return undefined;
    this.#chunkBytes -= frame.length;
    if (!this.#full()) this.#wakeProducer();
    return frame;
  }

  #full(): boolean {
    return this.#chunkBytes > this.chunkHighWaterMark || this.#chunks.length > MAX_UNREAD_CHUNKS;
  }

  #wakeProducer(): void {
    for (const resolve of this.#spaceWaiters.splice(0)) resolve();
  }

  #dropChunks(): void {
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#wakeProducer();
  }

  /** Adds a status log line. */
  log(level: JobLog["level"], message: string, source: JobLog["source"] = "user", time = Date.now()): void {
    const entry: JobLog = { message, level, source, timestamp: new Date(time).toISOString() };
    if (this.#logs.length >= MAX_LOGS) this.#logs.shift();
    this.#logs.push(entry);
    this.emit("log", entry);
  }

  #finish(status: JobStatus): void {
    this.#finishedAt = Date.now();
    this.#abort = undefined;
    // Unread chunks stay for the last read; the producer is done either way.
    this.#wakeProducer();
    this.#setStatus(status);
    this.#resolveDone(this);
  }

  #setStatus(status: JobStatus): void {
    this.#status = status;
    this.emit("status", status);
  }
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
