/**
 * Collectives among ranks: the process group every worker gets as `this.group`.
 * @module
 */
export type { CollectiveOptions, ReduceOp, ReduceOptions, Reducible, ProcessGroup, ProcessGroupOptions } from "./types.js";
export type { CollectiveBackend, CollectiveCall } from "./backend.js";
export { createProcessGroup } from "./create.js";
export { processGroupOptionsFromEnv, GROUP_DEFAULTS } from "./options.js";
export { splitRanges, type Range } from "./chunks.js";
export { REDUCE_OPS, reduceInto, finishReduce } from "./reduce-ops.js";
export { chooseReduceAlgorithm, DIRECT_MAX_BYTES, type ReduceAlgorithm } from "./algorithm.js";
