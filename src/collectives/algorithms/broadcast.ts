import type { CollectiveCall } from "../backend.js";
import { decodeValue, encodeValue, type ValueMeta } from "../wire.js";
import { mod, type Exchange } from "./exchange.js";

/** Broadcasts to more ranks than this go down a binomial tree instead of straight from the root. */
export const FLAT_BROADCAST_MAX = 8;

/**
 * Sends `value` from `root` to every rank; returns it (decoded, on every rank
 * but the root). Flat up to {@link FLAT_BROADCAST_MAX} ranks: the root sends
 * to all. Above: a binomial tree, log2(size) rounds, each rank forwarding the
 * frame it received (its own buffer, safe to send without copying).
 */
export async function broadcast(x: Exchange, value: unknown, root: number, call: CollectiveCall): Promise<unknown> {
  const n = x.size;
  const vr = mod(x.rank - root, n);
  let parent = -1;
  const children: number[] = [];
  if (n <= FLAT_BROADCAST_MAX) {
    if (vr === 0) children.push(...x.peers);
    else parent = root;
  } else {
    let mask = 1;
    while (mask < n) {
      if (vr & mask) {
        parent = mod(vr - mask + root, n);
        break;
      }
      mask <<= 1;
    }
    for (mask >>= 1; mask > 0; mask >>= 1) if (vr + mask < n) children.push(mod(vr + mask + root, n));
  }
  let meta: ValueMeta;
  let frame: Buffer;
  let result: unknown = value;
  if (parent < 0) {
    ({ meta, frame } = encodeValue(value, true));
  } else {
    const m = await x.take(call, parent);
    meta = m.header.v ?? { t: "mp" };
    frame = m.frames[0] ?? Buffer.alloc(0);
    result = decodeValue(meta, frame);
  }
  await Promise.all(children.map((c) => x.send(call, c, frame, meta)));
  return result;
}
