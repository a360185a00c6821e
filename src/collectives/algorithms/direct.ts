import type { CollectiveCall } from "../backend.js";
import { splitRanges } from "../chunks.js";
import { allocLike, finishReduce, reduceInto } from "../reduce-ops.js";
import type { ReduceOp, Reducible } from "../types.js";
import { bytesOf, decodeValue, encodeValue, viewAs } from "../wire.js";
import { expectBytes, type Exchange } from "./exchange.js";

/**
 * The direct algorithms: every rank sends its part straight to the ranks that
 * need it, one hop of latency. Best for small payloads (see
 * `chooseReduceAlgorithm`) and for values, which cannot be cut into chunks.
 */

/** Every rank's `value`, in rank order, on every rank. */
export async function allGather(x: Exchange, value: unknown, call: CollectiveCall): Promise<unknown[]> {
  const { meta, frame } = encodeValue(value, true);
  const out: unknown[] = new Array(x.size);
  out[x.rank] = value;
  await Promise.all([
    ...x.peers.map((p) => x.send(call, p, frame, meta)),
    ...x.peers.map(async (p) => {
      const m = await x.take(call, p);
      out[p] = decodeValue(m.header.v, m.frames[0]);
    }),
  ]);
  return out;
}

/** Every rank's `value`, in rank order, on `root`; undefined elsewhere. */
export async function gather(x: Exchange, value: unknown, root: number, call: CollectiveCall): Promise<unknown[] | undefined> {
  if (x.rank !== root) {
    const { meta, frame } = encodeValue(value, true);
    await x.send(call, root, frame, meta);
    return undefined;
  }
  const out: unknown[] = new Array(x.size);
  out[x.rank] = value;
  await Promise.all(
    x.peers.map(async (p) => {
      const m = await x.take(call, p);
      out[p] = decodeValue(m.header.v, m.frames[0]);
    }),
  );
  return out;
}

/**
 * Everyone sends everyone the part it needs (the whole array, or for a
 * reduce-scatter the receiver's chunk) and reduces in rank order, so every
 * rank computes bit-identical results.
 */
export async function directReduce(x: Exchange, data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean): Promise<Reducible> {
  const chunks = splitRanges(data.length, x.size);
  const part = (r: number): Reducible => (scatter ? data.subarray(chunks[r].start, chunks[r].end) : data);
  const mine = part(x.rank);
  const contributions: Reducible[] = new Array(x.size);
  contributions[x.rank] = mine;
  await Promise.all([
    // Copied: the send resolves before the bytes leave and `data` is the caller's.
    ...x.peers.map((p) => x.send(call, p, Buffer.from(bytesOf(part(p))))),
    ...x.peers.map(async (p) => {
      const m = await x.take(call, p);
      contributions[p] = viewAs(mine, expectBytes(x, call, p, m.frames[0], mine.byteLength));
    }),
  ]);
  const out = allocLike(mine, mine.length);
  out.set(contributions[0]);
  for (let r = 1; r < x.size; r++) reduceInto(out, contributions[r], op);
  finishReduce(out, op, x.size);
  return out;
}
