/**
 * The shape of a world-size benchmark report: what `benchmarkWorldSizes()`
 * resolves with, what `multirank bench --json` writes, and what
 * {@link REPORT_SCHEMA} (schema.ts) describes. Times are in milliseconds.
 */
import type { LatencySummary } from "./stats.js";

/** Version of the report layout; bumped when a field changes meaning or is removed. */
export const REPORT_SCHEMA_VERSION = 1;

/** The settings a report was measured with, after defaults. */
export interface BenchmarkSettings {
  /** World sizes, in the order they were measured. */
  worldSizes: number[];
  /** Measured requests per world size. */
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Unmeasured requests sent first, per world size. */
  warmup: number;
  /** Size of the generated `{ data }` Buffer; 0 for the tiny default payload or a custom one. */
  payloadBytes: number;
  /** `"default"`, `"bytes"` (payloadBytes) or `"custom"` (options.payload). */
  payloadKind: "default" | "bytes" | "custom";
  /** Whether requests went through `stream()` instead of `invoke()`. */
  stream: boolean;
  /** Whether quick mode picked the defaults. */
  quick: boolean;
}

/** Streaming figures for one world size (only when `settings.stream`). */
export interface StreamFigures {
  /** From sending a request to its first item, per request. */
  timeToFirstEventMs: LatencySummary;
  /** Items received over all measured requests (the final result counts as one). */
  events: number;
  /** `events` over the measured wall time. */
  eventsPerSecond: number;
}

/** Everything measured for one world size. */
export interface WorldSizeResult {
  worldSize: number;
  /** Device of each rank as it reported at start: `"cpu"` or `"cuda:<index>"`. */
  devices: string[];
  /** From `new DistributedRunner()` until `start()` resolved (every rank ready). */
  coldStartMs: number;
  /** How long the graceful `stop()` took. */
  stopMs: number;
  /** Per-request latency: send to result (to the last item when streaming). */
  latencyMs: LatencySummary;
  /** Wall time of the measured requests, first send to last result. */
  durationMs: number;
  /** Measured requests over `durationMs`, at `settings.concurrency`. */
  requestsPerSecond: number;
  /** Present when `settings.stream` is true. */
  stream?: StreamFigures;
}

/** Where the report was measured. */
export interface BenchmarkEnvironment {
  /** `process.version`. */
  node: string;
  platform: string;
  arch: string;
  /** Logical CPUs (`os.availableParallelism()`). */
  cpus: number;
}

/** What `benchmarkWorldSizes()` resolves with and `multirank bench --json` writes. */
export interface WorldSizeBenchmarkReport {
  schemaVersion: typeof REPORT_SCHEMA_VERSION;
  /** ISO 8601 time the benchmark started. */
  createdAt: string;
  /** The worker module, as given. */
  worker: string;
  settings: BenchmarkSettings;
  environment: BenchmarkEnvironment;
  /** One entry per world size, in `settings.worldSizes` order. */
  results: WorldSizeResult[];
}
