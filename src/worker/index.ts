/**
 * `multirank/worker`: what a worker module imports, and nothing that serves
 * HTTP or runs benchmarks, so a rank loads as little as it can. Re-exports only.
 */
export * from "../errors.js";
export { DistributedWorker, type StreamingResultOptions, type WorkerClass } from "./distributed-worker.js";
export type { CallContext } from "./call-context.js";
export { allocSharedBuffer } from "../transport/shared-payload.js";
export { formatTextEvent, parseTextEvent, toJsonSafe } from "../codec/text-events.js";
export type { EncodedImage, ImageFormat, RawImage } from "../codec/images.js";
export type { CollectiveOptions, ProcessGroup, ReduceOp, ReduceOptions, Reducible } from "../collectives/index.js";
