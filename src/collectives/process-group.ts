import type { Logger } from "pino";
import { AbortError, StateError, TimeoutError, ValidationError } from "../errors.js";
import { abortable } from "./abortable.js";
import type { CollectiveBackend, CollectiveCall } from "./backend.js";
import { checkCallOptions } from "./options.js";
import { checkReduceOp, dtypeOf } from "./reduce-ops.js";
import { setLongTimeout } from "../util/timers.js";
import { splitRanges } from "./chunks.js";
import type { CollectiveOptions, ProcessGroup, ReduceOp, ReduceOptions, Reducible } from "./types.js";

/**
 * How the rank runtime ties collectives to requests (internal: reached through
 * {@link requestScopesOf}). Each request is an epoch, named by its id;
 * collectives made outside requests are epoch 0.
 */
export interface RequestScopes {
  /**
   * From now on a collective's epoch is `current()` at call time: the id of
   * the request whose `call()` it runs under, or 0. `concurrent`: requests
   * may run at the same time (the worker's concurrency is over 1).
   * `onBroken` hears, once, that the group failed or was closed: every later
   * call would reject.
   */
  track(options: { current: () => number; concurrent: boolean; onBroken: (error: Error) => void }): void;
  /** Request `epoch` starts on this rank. */
  begin(epoch: number): void;
  /**
   * Request `epoch` ended on this rank, however it ended: its collectives
   * still queued or running reject (the peers' matching ones too), later
   * ones reject at once, and what peers send for it is dropped.
   */
  end(epoch: number): void;
}

const kRequestScopes = Symbol.for("multirank.group.requestScopes");

/** The {@link RequestScopes} of `group`, when it is one of ours. */
export function requestScopesOf(group: ProcessGroup): RequestScopes | undefined {
  return (group as { [kRequestScopes]?: RequestScopes })[kRequestScopes];
}

/** One epoch's collectives on this rank. */
interface Epoch {
  /** Sequence number of the next collective. */
  seq: number;
  /** Settles when the last collective called has finished. */
  tail: Promise<unknown>;
  /** Collectives called and not yet finished (queued or running). */
  inFlight: number;
  /** Their signals' controllers, with what each call is (for the error when the epoch ends under it). */
  readonly controllers: Map<AbortController, string>;
}

function newEpoch(): Epoch {
  return { seq: 0, tail: Promise.resolve(), inFlight: 0, controllers: new Map() };
}

/**
 * The {@link ProcessGroup} every backend sits behind. It validates arguments
 * before anything is sent, gives each collective its epoch and sequence
 * number at call time (so the order is the order of the calls), runs an
 * epoch's collectives one at a time, and turns timeouts, signals, the end of
 * the request and group failure into one per-call AbortSignal whose reason
 * is the error the call rejects with.
 *
 * Sequence numbers count within an epoch (a request, see
 * {@link RequestScopes}): when a request ends half-way on some rank (aborted,
 * timed out, a rank that never made a call), the next request starts at 0 on
 * every rank, in step.
 */
export class BackendProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly #backend: CollectiveBackend;
  readonly #log: Logger;
  readonly #defaultTimeout: number;
  readonly #active = new Set<AbortController>();
  /** Epochs open on this rank; 0 (outside requests) always is. */
  readonly #epochs = new Map<number, Epoch>([[0, newEpoch()]]);
  #currentEpoch: () => number = () => 0;
  #concurrent = false;
  #onBroken: ((error: Error) => void) | undefined;
  #failure: Error | undefined;
  #closed: Promise<void> | undefined;

  constructor(backend: CollectiveBackend, log: Logger, defaultTimeout: number) {
    this.rank = backend.rank;
    this.size = backend.size;
    this.#backend = backend;
    this.#log = log;
    this.#defaultTimeout = defaultTimeout;
    backend.onFailure((error) => {
      this.#log.error({ err: error }, "process group failed");
      this.fail(error);
    });
  }

  /** @internal See {@link requestScopesOf}. */
  get [kRequestScopes](): RequestScopes {
    return {
      track: ({ current, concurrent, onBroken }) => {
        this.#currentEpoch = current;
        this.#concurrent = concurrent;
        this.#onBroken = onBroken;
      },
      begin: (epoch) => {
        if (epoch === 0 || this.#epochs.has(epoch)) return;
        this.#epochs.set(epoch, newEpoch());
        this.#backend.beginEpoch(epoch);
      },
      end: (epoch) => this.#endEpoch(epoch),
    };
  }

  #endEpoch(id: number): void {
    const epoch = this.#epochs.get(id);
    if (id === 0 || !epoch) return;
    this.#epochs.delete(id);
    for (const [controller, what] of [...epoch.controllers]) {
      controller.abort(new AbortError(`${what} was aborted on rank ${this.rank}: its request ended`, { rank: this.rank }));
    }
    this.#backend.endEpoch(id);
  }

  #broken(error: Error): void {
    const listener = this.#onBroken;
    this.#onBroken = undefined;
    listener?.(error);
  }

  #checkRank(value: unknown, field: string, method: string): number {
    if (!Number.isInteger(value) || (value as number) < 0 || (value as number) >= this.size) {
      throw new ValidationError(`${method}: ${field} must be an integer rank in [0, ${this.size}) (got ${String(value)})`);
    }
    return value as number;
  }

  #checkReducible(data: unknown, method: string): Reducible {
    if (!dtypeOf(data)) throw new ValidationError(`${method}: data must be a Float32Array, Float64Array or Int32Array`);
    return data as Reducible;
  }

  /** Checks `o.out`: the class of `data` and `length` elements. */
  #checkOut(data: Reducible, o: ReduceOptions | undefined, length: number, method: string): Reducible | undefined {
    const out = o?.out;
    if (out === undefined) return undefined;
    if (!dtypeOf(out) || out.constructor !== data.constructor) {
      throw new ValidationError(`${method}: options.out must be a ${data.constructor.name} like data (got ${(out as object)?.constructor?.name ?? typeof out})`);
    }
    if (out.length !== length) throw new ValidationError(`${method}: options.out must have ${length} elements (got ${out.length})`);
    return out;
  }

  /** A signal that aborts on timeout, on `o.signal`, or when the group fails; its reason is the error to throw. */
  #scope(what: string, o: CollectiveOptions, epoch?: Epoch): { controller: AbortController; dispose(): void } {
    const controller = new AbortController();
    const timeout = o.timeout !== undefined ? o.timeout * 1000 : this.#defaultTimeout;
    const timer = Number.isFinite(timeout)
      ? setLongTimeout(timeout, () => controller.abort(new TimeoutError(`${what} timed out after ${timeout / 1000} s on rank ${this.rank}`, timeout, { rank: this.rank })))
      : undefined;
    const user = o.signal;
    const onAbort = (): void => controller.abort(new AbortError(`${what} was aborted on rank ${this.rank}`, { rank: this.rank, cause: user?.reason }));
    if (user?.aborted) onAbort();
    else user?.addEventListener("abort", onAbort, { once: true });
    this.#active.add(controller);
    epoch?.controllers.set(controller, what);
    return {
      controller,
      dispose: () => {
        timer?.cancel();
        user?.removeEventListener("abort", onAbort);
        this.#active.delete(controller);
        epoch?.controllers.delete(controller);
      },
    };
  }

  #refuse(): Error | undefined {
    if (this.#closed) return new StateError(`the process group of rank ${this.rank} is closed`, { rank: this.rank });
    return this.#failure;
  }

  /** Runs one collective in its turn. Validation errors reject before a sequence number is taken. */
  #collective<T>(method: string, signature: string, o: CollectiveOptions | undefined, body: (call: CollectiveCall) => Promise<T>): Promise<T> {
    const refused = this.#refuse();
    if (refused) return Promise.reject(refused);
    const epochId = this.#currentEpoch();
    const epoch = this.#epochs.get(epochId);
    // A loop the request left behind: its peers are done with that request.
    if (!epoch) return Promise.reject(new AbortError(`${signature} was called on rank ${this.rank} after its request ${epochId} ended`, { rank: this.rank }));
    const seq = epoch.seq++;
    const what = epochId === 0 ? `${signature} (collective #${seq})` : `${signature} (collective #${seq} of request ${epochId})`;
    const { controller, dispose } = this.#scope(what, o ?? {}, epoch);
    const call: CollectiveCall = { epoch: epochId, seq, signature, concurrent: this.#concurrent, signal: controller.signal, abort: (error) => controller.abort(error) };
    const previous = epoch.tail;
    // Collectives are usually awaited one by one: with none queued or running
    // this one starts now, and needs neither the wait nor the outer race below.
    const queued = epoch.inFlight > 0;
    epoch.inFlight++;
    const run = (async (): Promise<T> => {
      if (queued) await previous;
      try {
        if (controller.signal.aborted) throw controller.signal.reason;
        this.#backend.begin(call);
        // begin() ends the call at once when a peer already gave up on it or made another call.
        if (controller.signal.aborted) throw controller.signal.reason;
        return await abortable(body(call), controller.signal);
      } catch (error) {
        this.#backend.abandon(call, error as Error);
        throw error;
      } finally {
        dispose();
        this.#backend.finish(call);
        epoch.inFlight--;
      }
    })();
    epoch.tail = run.catch(() => {});
    // The caller hears of a timeout even while the call is still queued.
    return queued ? abortable(run, controller.signal) : run;
  }

  async #p2p<T>(method: string, o: CollectiveOptions | undefined, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const refused = this.#refuse();
    if (refused) throw refused;
    const { controller, dispose } = this.#scope(method, o ?? {});
    try {
      return await abortable(body(controller.signal), controller.signal);
    } finally {
      dispose();
    }
  }

  /** @see ProcessGroup.barrier */
  barrier(o?: CollectiveOptions): Promise<void> {
    try {
      checkCallOptions(o, "barrier");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#collective("barrier", "barrier()", o, (call) => this.#backend.barrier(call));
  }

  /** @see ProcessGroup.broadcast */
  broadcast<T>(data: T, root = 0, o?: CollectiveOptions): Promise<T> {
    try {
      checkCallOptions(o, "broadcast");
      this.#checkRank(root, "root", "broadcast");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#collective("broadcast", `broadcast(root=${root})`, o, (call) => this.#backend.broadcast(data, root, call) as Promise<T>);
  }

  /** @see ProcessGroup.allGather */
  allGather<T>(data: T, o?: CollectiveOptions): Promise<T[]> {
    try {
      checkCallOptions(o, "allGather");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#collective("allGather", "allGather()", o, (call) => this.#backend.allGather(data, call) as Promise<T[]>);
  }

  /** @see ProcessGroup.gather */
  gather<T>(data: T, root = 0, o?: CollectiveOptions): Promise<T[] | undefined> {
    try {
      checkCallOptions(o, "gather");
      this.#checkRank(root, "root", "gather");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#collective("gather", `gather(root=${root})`, o, (call) => this.#backend.gather(data, root, call) as Promise<T[] | undefined>);
  }

  /** @see ProcessGroup.allReduce */
  allReduce<A extends Reducible>(data: A, op: ReduceOp = "sum", o?: ReduceOptions<A>): Promise<A> {
    let out: Reducible | undefined;
    try {
      checkCallOptions(o, "allReduce");
      this.#checkReducible(data, "allReduce");
      checkReduceOp(op, "allReduce: op");
      out = this.#checkOut(data, o, data.length, "allReduce");
    } catch (error) {
      return Promise.reject(error);
    }
    const signature = `allReduce(${dtypeOf(data)}[${data.length}],${op})`;
    return this.#collective("allReduce", signature, o, (call) => this.#backend.allReduce(data, op, call, out) as Promise<A>);
  }

  /** @see ProcessGroup.reduceScatter */
  reduceScatter<A extends Reducible>(data: A, op: ReduceOp = "sum", o?: ReduceOptions<A>): Promise<A> {
    let out: Reducible | undefined;
    try {
      checkCallOptions(o, "reduceScatter");
      this.#checkReducible(data, "reduceScatter");
      checkReduceOp(op, "reduceScatter: op");
      const chunk = splitRanges(data.length, this.size)[this.rank];
      out = this.#checkOut(data, o, chunk.end - chunk.start, "reduceScatter");
    } catch (error) {
      return Promise.reject(error);
    }
    const signature = `reduceScatter(${dtypeOf(data)}[${data.length}],${op})`;
    return this.#collective("reduceScatter", signature, o, (call) => this.#backend.reduceScatter(data, op, call, out) as Promise<A>);
  }

  /** @see ProcessGroup.send */
  send(data: unknown, dst: number, o?: CollectiveOptions): Promise<void> {
    try {
      checkCallOptions(o, "send");
      this.#checkRank(dst, "dst", "send");
      if (dst === this.rank) throw new ValidationError(`send: dst must be another rank than this one (${this.rank})`);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#p2p(`send to rank ${dst}`, o, (signal) => this.#backend.send(data, dst, signal));
  }

  /** @see ProcessGroup.recv */
  recv<T = unknown>(src: number, o?: CollectiveOptions): Promise<T> {
    try {
      checkCallOptions(o, "recv");
      this.#checkRank(src, "src", "recv");
      if (src === this.rank) throw new ValidationError(`recv: src must be another rank than this one (${this.rank})`);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#p2p(`recv from rank ${src}`, o, (signal) => this.#backend.recv(src, signal) as Promise<T>);
  }

  /** @see ProcessGroup.fail */
  fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    for (const controller of [...this.#active]) controller.abort(error);
    this.#backend.fail(error);
    this.#broken(error);
  }

  /** @see ProcessGroup.close */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const closing = new AbortError(`the process group of rank ${this.rank} was closed`, { rank: this.rank });
      for (const controller of [...this.#active]) controller.abort(closing);
      this.#broken(closing);
      await this.#backend.close();
    })();
    return this.#closed;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
