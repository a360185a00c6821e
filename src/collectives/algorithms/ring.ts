import type { CollectiveCall } from "../backend.js";
import { splitRanges, type Range } from "../chunks.js";
import { allocLike, finishReduce, reduceInto } from "../reduce-ops.js";
import type { ReduceOp, Reducible } from "../types.js";
import { bytesOf, viewAs } from "../wire.js";
import { expectBytes, mod, type Exchange } from "./exchange.js";

/**
 * The ring algorithms for large arrays over sockets: each rank talks only to
 * its neighbours and sends `(size-1)/size` of the array per phase, so no rank
 * is a bottleneck. An all-reduce is {@link ringReduceScatter} then
 * {@link ringAllGather}.
 */

/**
 * Ring reduce-scatter: n-1 steps, each rank sending one chunk to the next
 * rank and reducing the chunk it receives from the previous one into that
 * (received, so owned) buffer, which it forwards next step without copying.
 * Returns this rank's fully reduced chunk. `data` is sent without copying only
 * at step 0; the ring's later steps prove the next rank has read it.
 */
export async function ringReduceScatter(x: Exchange, data: Reducible, op: ReduceOp, call: CollectiveCall): Promise<Reducible> {
  const n = x.size;
  const r = x.rank;
  const chunks = splitRanges(data.length, n);
  const next = mod(r + 1, n);
  const prev = mod(r - 1, n);
  const view = (c: Range): Reducible => data.subarray(c.start, c.end);
  let held: Reducible | undefined;
  for (let k = 0; k < n - 1; k++) {
    const sendIdx = mod(r - k - 1, n);
    const recvIdx = mod(r - k - 2, n);
    const sending = x.send(call, next, bytesOf(held ?? view(chunks[sendIdx])), undefined, sendIdx);
    const m = await x.take(call, prev, recvIdx);
    const mineChunk = view(chunks[recvIdx]);
    const acc = viewAs(mineChunk, expectBytes(x, call, prev, m.frames[0], mineChunk.byteLength));
    reduceInto(acc, mineChunk, op);
    await sending;
    held = acc;
  }
  finishReduce(held!, op, n);
  return held!;
}

/**
 * Ring all-gather of each rank's chunk `mine` into `given` (a new array shaped
 * like `data` when absent). `given` may be `data` itself: the reduce-scatter is
 * over, and every chunk written here was received, which proves the bytes
 * of `data` sent without copying have been read.
 */
export async function ringAllGather(x: Exchange, data: Reducible, mine: Reducible, call: CollectiveCall, given?: Reducible): Promise<Reducible> {
  const n = x.size;
  const r = x.rank;
  const chunks = splitRanges(data.length, n);
  const next = mod(r + 1, n);
  const prev = mod(r - 1, n);
  const out = given ?? allocLike(data, data.length);
  out.set(mine, chunks[r].start);
  let forward = mine;
  for (let k = 0; k < n - 1; k++) {
    const sendIdx = mod(r - k, n);
    const recvIdx = mod(r - k - 1, n);
    const sending = x.send(call, next, bytesOf(forward), undefined, sendIdx);
    const m = await x.take(call, prev, recvIdx);
    const c = chunks[recvIdx];
    const got = viewAs(mine, expectBytes(x, call, prev, m.frames[0], (c.end - c.start) * data.BYTES_PER_ELEMENT));
    out.set(got, c.start);
    await sending;
    forward = got;
  }
  return out;
}
