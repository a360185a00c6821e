import type { CollectiveBackend, CollectiveCall } from "./backend.js";
import type { ReduceOp, Reducible } from "./types.js";
import { finishReduce } from "./reduce-ops.js";
import { ValidationError } from "../errors.js";

/**
 * The backend of a world of one: every collective is the identity and no
 * socket is opened. Results are still fresh arrays, as with real peers, so
 * code that works at size 1 works at size n.
 */
export class LocalBackend implements CollectiveBackend {
  readonly name = "local";
  readonly rank = 0;
  readonly size = 1;
  begin(_call: CollectiveCall): void {}
  async barrier(): Promise<void> {}
  async broadcast(value: unknown): Promise<unknown> {
    return value;
  }
  async allGather(value: unknown): Promise<unknown[]> {
    return [value];
  }
  async gather(value: unknown): Promise<unknown[] | undefined> {
    return [value];
  }
  async allReduce(data: Reducible, op: ReduceOp, _call?: CollectiveCall, out?: Reducible): Promise<Reducible> {
    const result = out ?? data.slice();
    if (out && out !== data) out.set(data);
    finishReduce(result, op, 1);
    return result;
  }
  async reduceScatter(data: Reducible, _op?: ReduceOp, _call?: CollectiveCall, out?: Reducible): Promise<Reducible> {
    if (!out) return data.slice();
    if (out !== data) out.set(data);
    return out;
  }
  async send(): Promise<void> {
    throw new ValidationError("send needs a peer: the world size is 1");
  }
  async recv(): Promise<unknown> {
    throw new ValidationError("recv needs a peer: the world size is 1");
  }
  abandon(): void {}
  finish(): void {}
  beginEpoch(): void {}
  endEpoch(): void {}
  onFailure(): void {}
  fail(): void {}
  async close(): Promise<void> {}
}
