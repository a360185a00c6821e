import type { Logger } from "pino";
import type { ImageFormat } from "../codec/images.js";
import type { ProcessGroup } from "../collectives/index.js";
import type { WorkerDevice } from "../devices/index.js";
import { StateError } from "../errors.js";
import type { CallContext } from "./call-context.js";

/** Options of {@link DistributedWorker.addStreamingResult}. */
export interface StreamingResultOptions {
  /** Encoding for raw-pixel images in the result. @default "jpeg" */
  imageFormat?: ImageFormat;
  /** Encoding quality for raw-pixel images. @default the worker's `imageQuality.stream` (60) */
  quality?: number;
  /**
   * Format the item as a Server-Sent Event (`data: <json>\n\n`) here in the
   * rank, so the runner forwards bytes without touching them. When the runner's
   * request says how its caller wants results (its `asTextEvents`), that
   * decides instead: every item of the request is then a text event, or none.
   * @default false
   */
  asTextEvent?: boolean;
}

/** What the rank runtime gives a worker instance; internal. */
export interface WorkerBinding {
  readonly rank: number;
  readonly worldSize: number;
  readonly device: WorkerDevice;
  readonly group: ProcessGroup;
  readonly log: Logger;
  addStreamingResult(result: unknown, options: StreamingResultOptions): Promise<void>;
  addStreamingError(error: unknown): Promise<void>;
  runInWorker<R>(fn: () => R | Promise<R>): Promise<R>;
}

// Symbol.for so a worker module that imports its own copy of multirank is
// still recognised and bound by the rank runtime's copy.
export const kBindWorker = Symbol.for("multirank.worker.bind");
export const kWorkerBrand = Symbol.for("multirank.worker");

/**
 * Base class of user workers. Subclass it, export the subclass as the
 * module's default export, and give the module's path to `DistributedRunner`.
 *
 * Every rank runs one instance. `setup` runs once, `call` once per request on
 * every rank in the same order, `teardown` once at stop. Rank 0's return value
 * is the request's result and only rank 0's streaming results reach the caller.
 *
 * @example
 * export default class Echo extends DistributedWorker<{ text: string }, { text: string }> {
 *   async call(input) { return { text: input.text }; }
 * }
 */
export abstract class DistributedWorker<Input = unknown, Output = unknown, SetupArgs extends object = Record<string, unknown>> {
  /**
   * How many requests one rank may run at once. Keep 1 (the default) unless
   * `call` is safe to interleave: requests then still start in order.
   */
  static concurrency = 1;

  /** JPEG/WebP quality for raw images: `stream` for streamed frames, `final` for results. */
  imageQuality = { stream: 60, final: 95 };
  /** Encoding for raw images in results. @default "jpeg" */
  imageFormat: ImageFormat = "jpeg";

  #binding: WorkerBinding | undefined;

  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[kWorkerBrand] === true;
  }

  get [kWorkerBrand](): true {
    return true;
  }

  /** @internal Called by the rank runtime before `setup`. */
  [kBindWorker](binding: WorkerBinding): void {
    this.#binding = binding;
  }

  #bound(): WorkerBinding {
    if (!this.#binding) throw new StateError("this worker is not running in a rank yet (rank, device and group exist from setup on)");
    return this.#binding;
  }

  /** This process's rank, 0-based. */
  get rank(): number {
    return this.#bound().rank;
  }

  /** The number of ranks. */
  get worldSize(): number {
    return this.#bound().worldSize;
  }

  /** The device this rank is pinned to. */
  get device(): WorkerDevice {
    return this.#bound().device;
  }

  /** The process group of all ranks, for collectives (`allReduce`, `broadcast`, ...). */
  get group(): ProcessGroup {
    return this.#bound().group;
  }

  /** A pino logger bound to this rank; records reach the runner's logger. */
  get log(): Logger {
    return this.#bound().log;
  }

  /** Runs once per rank before any request; load this rank's shard here. */
  setup(_args: SetupArgs): void | Promise<void> {}

  /** Handles one request. Runs on every rank; rank 0's return value is the result. */
  abstract call(input: Input, ctx: CallContext): Output | Promise<Output>;

  /** Runs once per rank when the runner stops gracefully. */
  teardown(): void | Promise<void> {}

  /** Logs `message` with the rank, at info level (debug level when `debug`). */
  rankPrint(message: string, debug = false): void {
    const log = this.#bound().log;
    if (debug) log.debug(message);
    else log.info(message);
  }

  /**
   * Sends one streaming result to the caller of the current request (rank 0
   * only; other ranks' results, and results of a request called with
   * `invoke()`, are dropped here, before any encoding). Raw images are encoded
   * in this rank. Items keep their order. The promise resolves once the item
   * is handed to the control channel. Backpressure is a credit window: the
   * rank may send the runner's `streamHighWaterMark` bytes (4 MiB by default)
   * of results ahead of the consumer of `stream()` (an SSE client, a Runpod
   * `/stream` poller); the runner sends credit back over the control channel
   * as the consumer takes them, and past the window the promise waits for it
   * (it also waits while the control connection's own buffer is full). Await
   * it and a slow consumer slows the worker down instead of filling memory.
   * It rejects once the request is cancelled. A rank that crashes right after
   * may lose items not yet written out.
   */
  addStreamingResult(result: unknown, options: StreamingResultOptions = {}): Promise<void> {
    return this.#bound().addStreamingResult(result, options);
  }

  /** Fails the caller's stream with `error` (rank 0 only), as fal does: the caller's loop throws a `RankError`. */
  addStreamingError(error: unknown): Promise<void> {
    return this.#bound().addStreamingError(error);
  }

  /**
   * Runs `fn(...args)` in this rank's request order: after the requests that
   * are running finish and before later ones start. Called from inside
   * `call`, it runs at once (the call already holds the order).
   */
  runInWorker<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, ...args: A): Promise<R> {
    return this.#bound().runInWorker(() => fn(...args));
  }
}

/** The constructor a worker module's default export must be. */
export type WorkerClass = (new () => DistributedWorker<unknown, unknown, object>) & { concurrency?: number };

/**
 * Any worker class, as a runner's type argument (`typeof MyModel`).
 * `any` because a class with typed input is not assignable to one taking `unknown`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyWorkerClass = abstract new () => DistributedWorker<any, any, any>;

/** What a worker class's `call` takes: `WorkerInput<typeof MyModel>`. */
export type WorkerInput<W extends AnyWorkerClass> = Parameters<InstanceType<W>["call"]>[0];

/** What a worker class's `call` returns, awaited: `WorkerOutput<typeof MyModel>`. */
export type WorkerOutput<W extends AnyWorkerClass> = Awaited<ReturnType<InstanceType<W>["call"]>>;
