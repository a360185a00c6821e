import type { ReduceOp, Reducible } from "./types.js";

/**
 * One collective call as the backend sees it: arguments already validated,
 * its place in the global order fixed.
 */
export interface CollectiveCall {
  /**
   * Epoch: the id of the request whose `call()` made it, 0 outside requests
   * (setup, teardown, `runInWorker` between requests). Equal on every rank.
   */
  readonly epoch: number;
  /** Sequence number: the n-th collective of its epoch on this rank (0-based), equal on every rank. */
  readonly seq: number;
  /**
   * Other epochs' collectives may run at the same time as this one (the
   * worker runs several requests at once): the backend must not use what
   * needs one order across epochs (the shared-memory buffers).
   */
  readonly concurrent: boolean;
  /**
   * The call's signature (`allReduce(float32[1000],sum)`); peers compare
   * theirs and reject with `CollectiveMismatchError` when they differ.
   */
  readonly signature: string;
  /** Aborts when the call times out, is aborted, or the group fails; its `reason` is the error to throw. */
  readonly signal: AbortSignal;
  /** Ends the call with `error` (a peer reported the same collective failed). */
  abort(error: Error): void;
}

/**
 * What moves the bytes of a {@link ProcessGroup}. The facade validates
 * arguments, numbers collectives, runs them one at a time, applies timeouts and
 * signals; a backend only implements the algorithms. See BACKENDS.md.
 */
export interface CollectiveBackend {
  /** Backend name, for logs: `"local"`, or `"zmq"` (the `backend` option's value) for the CPU backend. */
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  /** Collective `call` starts now (the previous one has finished here). */
  begin(call: CollectiveCall): void;
  barrier(call: CollectiveCall): Promise<void>;
  broadcast(value: unknown, root: number, call: CollectiveCall): Promise<unknown>;
  allGather(value: unknown, call: CollectiveCall): Promise<unknown[]>;
  gather(value: unknown, root: number, call: CollectiveCall): Promise<unknown[] | undefined>;
  /**
   * Returns the reduction in `out` when given (same type and length as `data`,
   * possibly `data` itself: then `data` is overwritten with the result), else
   * in a new array; must not otherwise modify `data`, and must not let
   * `data`'s memory be read after it returns.
   */
  allReduce(data: Reducible, op: ReduceOp, call: CollectiveCall, out?: Reducible): Promise<Reducible>;
  /**
   * Returns this rank's chunk (`splitRanges(data.length, size)[rank]`) of the
   * reduction, in `out` when given (same type, the chunk's length; it may
   * share memory with `data`).
   */
  reduceScatter(data: Reducible, op: ReduceOp, call: CollectiveCall, out?: Reducible): Promise<Reducible>;
  send(value: unknown, dst: number, signal: AbortSignal): Promise<void>;
  recv(src: number, signal: AbortSignal): Promise<unknown>;
  /** Collective `call` failed here with `error` (not one reported by a peer): tell the peers so theirs end too. */
  abandon(call: CollectiveCall, error: Error): void;
  /** Collective `call` is over on this rank (either way): free what it left. */
  finish(call: CollectiveCall): void;
  /**
   * Epoch `epoch` starts on this rank (request ids start in increasing order
   * on every rank): what peers sent for epochs before it that never started
   * here can go.
   */
  beginEpoch(epoch: number): void;
  /**
   * Epoch `epoch` is over on this rank (its calls have been ended): drop what
   * peers sent for it, now and later.
   */
  endEpoch(epoch: number): void;
  /** Registers the listener the backend calls when it detects a failure of the whole group (a peer lost). */
  onFailure(listener: (error: Error) => void): void;
  /** Rejects every wait with `error`; called once the group has failed. */
  fail(error: Error): void;
  /** Says goodbye to peers and frees every resource. */
  close(): Promise<void>;
}
