/**
 * The math of the tensor-parallel MLP in `sharded-mlp.ts`, with no multirank
 * dependency, so tests can compare the sharded result against the unsharded
 * reference.
 *
 * Each block is `x + relu(x W1 + b1) W2 + b2` (a transformer MLP with its
 * residual). Tensor parallelism (Megatron style): W1 `[d, h]` is split by
 * columns and W2 `[h, d]` by rows along the hidden dimension, so each rank
 * computes a full-size partial output from its hidden slice and one
 * all-reduce (sum) per block combines them. Weights come from a counter-based
 * hash of (seed, block, matrix, index), so a rank generates exactly its shard
 * and nothing else, identically on every machine.
 */

/** Sizes of the MLP. */
export interface MlpDims {
  /** Model width `d` (input and output size of each block). */
  model: number;
  /** Hidden width `h`. Need not divide by the world size. */
  hidden: number;
  /** Number of blocks. */
  blocks: number;
}

/** One rank's weights for one block: the hidden units `[start, end)`. */
export interface BlockShard {
  start: number;
  end: number;
  /** `[d, end-start]` row-major: columns `start..end` of W1. */
  w1: Float32Array;
  /** `[end-start]`: b1 for those hidden units. */
  b1: Float32Array;
  /** `[end-start, d]` row-major: rows `start..end` of W2. */
  w2: Float32Array;
  /** `[d]`: b2, added once after the all-reduce. */
  b2: Float32Array;
}

// murmur3's 32-bit finalizer: a cheap, well-mixed hash for counter-based draws.
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uniform draw in [-scale, scale) determined by (seed, stream, index) alone. */
export function uniformAt(seed: number, stream: number, index: number, scale: number): number {
  const h = fmix32(fmix32(fmix32(seed >>> 0) ^ Math.imul(stream + 1, 0x9e3779b9)) ^ index);
  return (h / 4294967296) * 2 * scale - scale;
}

/** The hidden units rank `rank` owns: numpy array_split of `hidden` into `worldSize` parts. */
export function hiddenRange(hidden: number, rank: number, worldSize: number): [number, number] {
  const base = Math.floor(hidden / worldSize);
  const extra = hidden % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return [start, start + base + (rank < extra ? 1 : 0)];
}

/** Generates block `block`'s weights for hidden units `[start, end)` only. */
export function blockShard(seed: number, dims: MlpDims, block: number, start: number, end: number): BlockShard {
  const d = dims.model;
  const h = dims.hidden;
  const n = end - start;
  const s1 = 1 / Math.sqrt(d);
  const s2 = 1 / Math.sqrt(h);
  const stream = (m: number): number => block * 4 + m;
  const w1 = new Float32Array(d * n);
  for (let i = 0; i < d; i++) for (let j = 0; j < n; j++) w1[i * n + j] = uniformAt(seed, stream(0), i * h + start + j, s1);
  const b1 = new Float32Array(n);
  for (let j = 0; j < n; j++) b1[j] = uniformAt(seed, stream(1), start + j, s1);
  const w2 = new Float32Array(n * d);
  for (let j = 0; j < n; j++) for (let k = 0; k < d; k++) w2[j * d + k] = uniformAt(seed, stream(2), (start + j) * d + k, s2);
  const b2 = new Float32Array(d);
  for (let k = 0; k < d; k++) b2[k] = uniformAt(seed, stream(3), k, s2);
  return { start, end, w1, b1, w2, b2 };
}

/**
 * This shard's partial block output for a batch `x` (`[batch, d]` row-major):
 * `relu(x W1[:, s] + b1[s]) W2[s, :]`. Summing the partials of all shards
 * (the all-reduce) gives the block's `relu(x W1 + b1) W2`.
 */
export function shardPartial(shard: BlockShard, x: Float32Array, model: number): Float32Array {
  const d = model;
  const n = shard.end - shard.start;
  const batch = x.length / d;
  const out = new Float32Array(batch * d);
  const hid = new Float64Array(n);
  for (let b = 0; b < batch; b++) {
    for (let j = 0; j < n; j++) {
      let acc = shard.b1[j];
      for (let i = 0; i < d; i++) acc += x[b * d + i] * shard.w1[i * n + j];
      hid[j] = acc > 0 ? acc : 0;
    }
    for (let k = 0; k < d; k++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += hid[j] * shard.w2[j * d + k];
      out[b * d + k] = acc;
    }
  }
  return out;
}

/** Finishes a block once the partials are summed: `x + reduced + b2`, in place in `reduced`. */
export function finishBlock(x: Float32Array, reduced: Float32Array, b2: Float32Array): Float32Array {
  const d = b2.length;
  for (let i = 0; i < reduced.length; i++) reduced[i] += x[i] + b2[i % d];
  return reduced;
}

/** The unsharded MLP: what every world size must reproduce (to within float rounding). */
export function referenceMlp(seed: number, dims: MlpDims, input: Float32Array): Float32Array {
  let x = input;
  for (let block = 0; block < dims.blocks; block++) {
    const shard = blockShard(seed, dims, block, 0, dims.hidden);
    x = finishBlock(x, shardPartial(shard, x, dims.model), shard.b2);
  }
  return x;
}

/** Checks dims; throws a message naming the field. */
export function checkDims(dims: MlpDims): MlpDims {
  for (const k of ["model", "hidden", "blocks"] as const) {
    if (!Number.isInteger(dims?.[k]) || dims[k] < 1) throw new TypeError(`dims.${k} must be a positive integer`);
  }
  return dims;
}
