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
  async allReduce(data: Reducible, op: ReduceOp): Promise<Reducible> {
    const out = data.slice();
    finishReduce(out, op, 1);
    return out;
  }
  async reduceScatter(data: Reducible): Promise<Reducible> {
    return data.slice();
  }
  async send(): Promise<void> {
    throw new ValidationError("send needs a peer: the world size is 1");
  }
  async recv(): Promise<unknown> {
    throw new ValidationError("recv needs a peer: the world size is 1");
  }
  abandon(): void {}
  finish(): void {}
  onFailure(): void {}
  fail(): void {}
  async close(): Promise<void> {}
}
