import type { CollectiveCall } from "../backend.js";
import { mod, type Exchange } from "./exchange.js";

/**
 * Dissemination barrier: in round k every rank tells rank + 2^k and waits
 * for rank - 2^k, so after log2(size) rounds each has heard, directly or
 * not, from all. That is size log2(size) messages against size (size-1)
 * for everyone-to-everyone, and on a few cores a barrier's time is its
 * messages. Every rank sends before it waits, so a rank that made a
 * different call still gets a message of this one and reports the mismatch.
 */
export async function barrier(x: Exchange, call: CollectiveCall): Promise<void> {
  const n = x.size;
  for (let k = 1, round = 0; k < n; k <<= 1, round++) {
    await Promise.all([x.send(call, mod(x.rank + k, n), undefined, undefined, round), x.take(call, mod(x.rank - k, n), round)]);
  }
}
