/**
 * A tensor-parallel MLP worker: each rank holds only its slice of every
 * block's hidden units (W1 split by columns, W2 by rows) and the ranks
 * combine their partial outputs with one all-reduce per block.
 *
 * ```ts
 * const runner = new DistributedRunner({ worker: "workers/sharded-mlp.ts", worldSize: 4 });
 * await runner.start({ seed: 7, dims: { model: 64, hidden: 256, blocks: 2 } });
 * const { y } = await runner.invoke({ x: new Float32Array(64) });
 * ```
 */
import { DistributedWorker, type CallContext } from "multirank";
import { blockShard, checkDims, finishBlock, hiddenRange, shardPartial, type BlockShard, type MlpDims } from "./sharded-mlp-reference.js";

/** `setup` arguments. */
export interface SetupArgs {
  /** Seed of the deterministic weights. @default 0 */
  seed?: number;
  /** Sizes. @default { model: 64, hidden: 256, blocks: 2 } */
  dims?: MlpDims;
}

/** A request: `x` is `[batch, model]` row-major. */
export interface Input {
  x: Float32Array | number[];
}

/** The response: `y` is `[batch, model]`. */
export interface Output {
  y: Float32Array;
  batch: number;
}

export default class ShardedMlp extends DistributedWorker<Input, Output> {
  #dims: MlpDims = { model: 64, hidden: 256, blocks: 2 };
  #shards: BlockShard[] = [];

  override async setup(args: SetupArgs = {}): Promise<void> {
    this.#dims = checkDims(args.dims ?? this.#dims);
    const [start, end] = hiddenRange(this.#dims.hidden, this.rank, this.worldSize);
    // Only this rank's slice is ever generated or held.
    this.#shards = Array.from({ length: this.#dims.blocks }, (_, b) => blockShard(args.seed ?? 0, this.#dims, b, start, end));
  }

  async call(input: Input, ctx: CallContext): Promise<Output> {
    if (!(input?.x instanceof Float32Array) && !Array.isArray(input?.x)) {
      throw new TypeError(`input.x must be a Float32Array or an array of numbers, batch × ${this.#dims.model} long (got ${input?.x === undefined ? "nothing" : typeof input.x})`);
    }
    let x = input.x instanceof Float32Array ? input.x : Float32Array.from(input.x);
    if (x.length === 0 || x.length % this.#dims.model !== 0) throw new TypeError(`input.x must hold batch × ${this.#dims.model} numbers (got ${x.length})`);
    for (const shard of this.#shards) {
      const partial = shardPartial(shard, x, this.#dims.model);
      const summed = await this.group.allReduce(partial, "sum", { signal: ctx.signal });
      x = finishBlock(x, summed, shard.b2);
    }
    return { y: x, batch: x.length / this.#dims.model };
  }
}
