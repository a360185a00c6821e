import { CollectiveMismatchError } from "../../errors.js";
import type { CollectiveCall } from "../backend.js";
import type { Message } from "../mailbox.js";
import type { ValueMeta } from "../wire.js";

/**
 * What a collective algorithm needs from its rank's backend: who is in the
 * group, and messages of one call to and from one peer. Every message is
 * tagged with the call's (epoch, sequence number) and signature, so a
 * mismatched call is caught before its bytes are used.
 */
export interface Exchange {
  readonly rank: number;
  readonly size: number;
  /** Every rank but this one, in rank order. */
  readonly peers: readonly number[];
  /**
   * Sends one message of `call` to `dst`: `payload` when given (decoded by
   * `meta`), `index` telling the parts of an algorithm apart, `written` marking
   * the shared-memory "written" message (the receiver owes a release even if
   * it never reads it). The mesh may send `payload` without copying: its
   * memory must not change until a later message proves the peer has it.
   */
  send(call: CollectiveCall, dst: number, payload?: Buffer, meta?: ValueMeta, index?: number, written?: boolean): Promise<void>;
  /** The next message of `call` from `src`; rejects on a different signature or, given `index`, a different part. */
  take(call: CollectiveCall, src: number, index?: number): Promise<Message>;
}

/** `a` modulo `n`, never negative. */
export const mod = (a: number, n: number): number => ((a % n) + n) % n;

/** `frame` when it holds exactly `bytes` bytes; else the call cannot go on. */
export function expectBytes(x: Exchange, call: CollectiveCall, src: number, frame: Buffer | undefined, bytes: number): Buffer {
  if (!frame || frame.byteLength !== bytes) {
    throw new CollectiveMismatchError(`collective #${call.seq} (${call.signature}): rank ${src} sent ${frame?.byteLength ?? 0} bytes, rank ${x.rank} expected ${bytes}`, { rank: src });
  }
  return frame;
}
