/**
 * multirank: run one model across many rank processes and serve it.
 * This module only re-exports the public API.
 */
export * from "./errors.js";
export { DistributedRunner } from "./runner/distributed-runner.js";
export type { InvokeOptions, RunnerEvents, RunnerState, StartOptions, StopOptions, StreamOptions } from "./runner/distributed-runner.js";
export type { DistributedRunnerOptions } from "./runner/options.js";
export type { RankExit } from "./runner/rank-process.js";
export { RankPool, type RankPoolOptions } from "./runner/rank-pool.js";
export type { ForwardedLog } from "./transport/messages.js";
export { allocSharedBuffer } from "./transport/shared-payload.js";
export { MAX_DURATION_SECONDS } from "./util/timers.js";
export { MULTIRANK_VERSION } from "./version.js";
export { DistributedWorker } from "./worker/distributed-worker.js";
export type { AnyWorkerClass, StreamingResultOptions, WorkerClass, WorkerInput, WorkerOutput } from "./worker/distributed-worker.js";
export type { CallContext } from "./worker/call-context.js";
export type { EncodedImage, ImageFormat, RawImage } from "./codec/images.js";
export { formatTextEvent, parseTextEvent, toJsonSafe } from "./codec/text-events.js";
export type { CollectiveOptions, ProcessGroup, ReduceOp, ReduceOptions, Reducible } from "./collectives/index.js";
export { SharedSegment, shmAvailable, shmFreeBytes, sweepStaleSegments, type OpenSegmentOptions, type SharedSegmentOptions, type SweepOptions } from "./shm/index.js";
export {
  cudaAvailability,
  cudaVectorAddCheck,
  currentCudaDevice,
  getCpuAffinity,
  listDevices,
  listDevicesAsync,
  planDevices,
  setCpuAffinity,
  setParentDeathSignal,
  type CudaDeviceInfo,
  type CurrentCudaDevice,
  type DeviceSelection,
  type RankDevicePlan,
  type VectorAddCheck,
  type WorkerDevice,
} from "./devices/index.js";
export { buildTinyLlamaModel, TINY_LLAMA_DEFAULTS, writeTinyLlamaModel, type TinyLlamaOptions } from "./llm/tiny-model.js";
export { multirankCacheDir } from "./util/cache-dir.js";
export * from "./server/index.js";
// The benchmark's entry point and its report's shape; the helpers that print and
// check a report (table, chart, schema, progress bar, percentiles) are in `multirank/bench`.
export { benchmarkWorldSizes } from "./benchmark/benchmark-world-sizes.js";
export { BENCHMARK_DEFAULTS, type BenchmarkOptions, type BenchmarkProgress } from "./benchmark/options.js";
export {
  REPORT_SCHEMA_VERSION,
  type BenchmarkEnvironment,
  type BenchmarkSettings,
  type StreamFigures,
  type WorldSizeBenchmarkReport,
  type WorldSizeResult,
} from "./benchmark/report.js";
export type { LatencySummary } from "./benchmark/stats.js";
export * from "./functions/index.js";
export * from "./deploy/index.js";
