/**
 * Options of `benchmarkWorldSizes()`: one object, frozen defaults, validated
 * once with messages that name the field.
 */
import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import type { DeviceSelection } from "../devices/index.js";
import { durationToMs } from "../util/timers.js";
import { abortSignal, boolean, check, nonNegativeInteger, positiveInteger } from "../util/validate.js";
import type { BenchmarkSettings } from "./report.js";

/** Where the benchmark is; passed to `options.onProgress`. */
export interface BenchmarkProgress {
  /** `start`: spawning ranks; `warmup` / `measure`: sending requests; `stop`: stopping ranks; `done`: this world size is finished. */
  phase: "start" | "warmup" | "measure" | "stop" | "done";
  worldSize: number;
  /** 0-based position of `worldSize` in `settings.worldSizes`. */
  worldSizeIndex: number;
  /** How many world sizes are measured in all. */
  worldSizeCount: number;
  /** Requests finished in this phase (0 outside warmup and measure). */
  completed: number;
  /** Requests in this phase (0 outside warmup and measure). */
  total: number;
}

/** Options of {@link benchmarkWorldSizes}; all optional except `worker`. */
export interface BenchmarkOptions {
  /** Path or file URL of the worker module, as for `new DistributedRunner({ worker })`. */
  worker: string | URL;
  /** World sizes to measure, in order; each a positive integer. @default [1, 2, 4] */
  worldSizes?: readonly number[];
  /** Measured requests per world size. @default 200 (20 with `quick`) */
  requests?: number;
  /** Requests kept in flight at once (a closed loop). @default 1 */
  concurrency?: number;
  /** Unmeasured requests per world size, sent first. @default 10 (2 with `quick`) */
  warmup?: number;
  /** 0 sends a tiny JSON payload `{ seq }`; N > 0 sends `{ seq, data: Buffer(N) }`. Not with `payload`. @default 0 */
  payloadBytes?: number;
  /**
   * A custom payload: a value sent as is, or a function of the request's
   * 0-based sequence number (warm-up included) returning the payload.
   * @default undefined (see payloadBytes)
   */
  payload?: unknown;
  /** Send requests with `stream()` and measure time to first event and events/s. @default false */
  stream?: boolean;
  /** Fewer requests, for a first look or a CI smoke test: changes the defaults of `requests` and `warmup` only. @default false */
  quick?: boolean;
  /** Fields passed to every rank's `setup(args)` through `start()`. @default {} */
  setupArgs?: Record<string, unknown>;
  /** The runner's `devices` option. @default "auto" */
  devices?: DeviceSelection;
  /** Seconds each request may take. @default 60 */
  timeout?: number;
  /** Seconds each `start()` may take. @default 300 */
  startTimeout?: number;
  /** Logger for the runners (rank output is relayed through it). @default the runner's default (pino to stderr) */
  logger?: Logger;
  /** Aborting it cancels the benchmark; ranks are terminated and the promise rejects with `AbortError`. */
  signal?: AbortSignal;
  /** Called as the benchmark moves on; must not throw. @default undefined */
  onProgress?: (progress: BenchmarkProgress) => void;
}

/** The defaults, frozen. */
export const BENCHMARK_DEFAULTS = Object.freeze({
  worldSizes: Object.freeze([1, 2, 4]) as readonly number[],
  requests: 200,
  quickRequests: 20,
  concurrency: 1,
  warmup: 10,
  quickWarmup: 2,
  payloadBytes: 0,
  stream: false,
  quick: false,
  timeout: 60,
  startTimeout: 300,
});

/** Options after defaults, as the benchmark uses them. */
export interface ResolvedBenchmarkOptions {
  worker: string | URL;
  settings: BenchmarkSettings;
  payloadFor: (seq: number) => unknown;
  setupArgs: Record<string, unknown>;
  devices: DeviceSelection | undefined;
  timeout: number;
  startTimeout: number;
  logger: Logger | undefined;
  signal: AbortSignal | undefined;
  onProgress: ((progress: BenchmarkProgress) => void) | undefined;
}

const MAX_WORLD_SIZE = 1024;

/**
 * Merges `options` with {@link BENCHMARK_DEFAULTS} and checks every field.
 *
 * @throws {ValidationError} naming the first bad field, e.g. "options.requests must be a positive integer, got 0".
 */
export function resolveBenchmarkOptions(options: BenchmarkOptions): ResolvedBenchmarkOptions {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  const { worker } = options;
  if (!(worker instanceof URL) && (typeof worker !== "string" || worker.length === 0)) {
    throw new ValidationError("options.worker must be a non-empty string or a URL");
  }
  const quick = boolean(options.quick ?? BENCHMARK_DEFAULTS.quick, "options.quick");
  const worldSizes = options.worldSizes ?? BENCHMARK_DEFAULTS.worldSizes;
  check(Array.isArray(worldSizes) && worldSizes.length > 0, "options.worldSizes must be a non-empty array of positive integers");
  worldSizes.forEach((size, i) => positiveInteger(size, `options.worldSizes[${i}]`, MAX_WORLD_SIZE));
  const requests = positiveInteger(options.requests ?? (quick ? BENCHMARK_DEFAULTS.quickRequests : BENCHMARK_DEFAULTS.requests), "options.requests");
  const concurrency = positiveInteger(options.concurrency ?? BENCHMARK_DEFAULTS.concurrency, "options.concurrency");
  const warmup = nonNegativeInteger(options.warmup ?? (quick ? BENCHMARK_DEFAULTS.quickWarmup : BENCHMARK_DEFAULTS.warmup), "options.warmup");
  const payloadBytes = nonNegativeInteger(options.payloadBytes ?? BENCHMARK_DEFAULTS.payloadBytes, "options.payloadBytes");
  const stream = boolean(options.stream ?? BENCHMARK_DEFAULTS.stream, "options.stream");
  // Checked here, with the runner's own duration rule, so a bad value fails before any rank starts.
  const timeout = options.timeout ?? BENCHMARK_DEFAULTS.timeout;
  durationToMs(timeout, "options.timeout");
  const startTimeout = options.startTimeout ?? BENCHMARK_DEFAULTS.startTimeout;
  durationToMs(startTimeout, "options.startTimeout");
  const setupArgs = options.setupArgs ?? {};
  if (typeof setupArgs !== "object" || setupArgs === null || Array.isArray(setupArgs)) throw new ValidationError("options.setupArgs must be a plain object");
  if ("timeout" in setupArgs || "signal" in setupArgs) {
    throw new ValidationError("options.setupArgs must not hold `timeout` or `signal` (start() reserves them; use options.startTimeout and options.signal)");
  }
  if (options.signal !== undefined) abortSignal(options.signal, "options.signal");
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") throw new ValidationError("options.onProgress must be a function");
  if (options.payload !== undefined && options.payloadBytes !== undefined && options.payloadBytes !== 0) {
    throw new ValidationError("options.payload and options.payloadBytes cannot both be set");
  }
  const payloadKind: BenchmarkSettings["payloadKind"] = options.payload !== undefined ? "custom" : payloadBytes > 0 ? "bytes" : "default";
  return {
    worker,
    settings: { worldSizes: [...worldSizes], requests, concurrency, warmup, payloadBytes, payloadKind, stream, quick },
    payloadFor: payloadFactory(options.payload, payloadBytes),
    setupArgs: { ...setupArgs },
    devices: options.devices,
    timeout,
    startTimeout,
    logger: options.logger,
    signal: options.signal,
    onProgress: options.onProgress,
  };
}

function payloadFactory(custom: unknown, payloadBytes: number): (seq: number) => unknown {
  if (typeof custom === "function") return (seq) => (custom as (seq: number) => unknown)(seq);
  if (custom !== undefined) return () => custom;
  if (payloadBytes === 0) return (seq) => ({ seq });
  // One buffer for every request: the benchmark measures the runner, not Buffer.alloc.
  const data = Buffer.alloc(payloadBytes, 0x5a);
  return (seq) => ({ seq, data });
}
