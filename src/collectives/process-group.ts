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
 * The {@link ProcessGroup} every backend sits behind. It validates arguments
 * before anything is sent, gives each collective its sequence number at call
 * time (so the order is the order of the calls), runs collectives one at a
 * time, and turns timeouts, signals and group failure into one per-call
 * AbortSignal whose reason is the error the call rejects with.
 */
export class BackendProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly #backend: CollectiveBackend;
  readonly #log: Logger;
  readonly #defaultTimeout: number;
  readonly #active = new Set<AbortController>();
  #seq = 0;
  #tail: Promise<unknown> = Promise.resolve();
  /** Collectives called and not yet finished (queued or running). */
  #inFlight = 0;
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

  /** The backend's name (`zmq`, `local`). */
  get backendName(): string {
    return this.#backend.name;
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
  #scope(what: string, o: CollectiveOptions): { controller: AbortController; dispose(): void } {
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
    return {
      controller,
      dispose: () => {
        timer?.cancel();
        user?.removeEventListener("abort", onAbort);
        this.#active.delete(controller);
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
    const seq = this.#seq++;
    const what = `${signature} (collective #${seq})`;
    const { controller, dispose } = this.#scope(what, o ?? {});
    const call: CollectiveCall = { seq, signature, signal: controller.signal, abort: (error) => controller.abort(error) };
    const previous = this.#tail;
    // Collectives are usually awaited one by one: with none queued or running
    // this one starts now, and needs neither the wait nor the outer race below.
    const queued = this.#inFlight > 0;
    this.#inFlight++;
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
        this.#backend.finish(seq);
        this.#inFlight--;
      }
    })();
    this.#tail = run.catch(() => {});
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
  }

  /** @see ProcessGroup.close */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const closing = new AbortError(`the process group of rank ${this.rank} was closed`, { rank: this.rank });
      for (const controller of [...this.#active]) controller.abort(closing);
      await this.#backend.close();
    })();
    return this.#closed;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
