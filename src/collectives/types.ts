import type { Logger } from "pino";

/** Per-call options every collective accepts. */
export interface CollectiveOptions {
  /**
   * Seconds the call may take, counted from the moment it is made (time
   * spent queued behind earlier collectives included). On expiry the call
   * rejects with `TimeoutError` and the peers' matching calls reject too.
   * @default the group's `operationTimeout` (30 minutes, torch.distributed's default)
   */
  timeout?: number;
  /** Aborts the call with `AbortError` (the signal's reason as `cause`); peers' matching calls reject too. */
  signal?: AbortSignal;
}

/**
 * Options of `allReduce` and `reduceScatter`: the per-call options plus where
 * to put the result.
 */
export interface ReduceOptions<A extends Reducible = Reducible> extends CollectiveOptions {
  /**
   * Array to write the result into instead of allocating one per call (a
   * 64 MiB all-reduce otherwise allocates, and page-faults, 64 MiB each time);
   * the call then resolves with `out` itself. Same type as `data`; length
   * `data.length` for `allReduce`, this rank's chunk length for
   * `reduceScatter`. It may be `data` itself (an in-place reduction, as
   * torch.distributed does). Its contents are undefined if the call fails.
   * @default a new array
   */
  out?: A;
}

/**
 * How values are combined. `avg` is `sum` divided by the world size; on
 * `Int32Array` it truncates toward zero, and Int32 `sum`/`prod` wrap modulo
 * 2^32 as C `int32_t` arithmetic does. `min`/`max` propagate NaN.
 */
export type ReduceOp = "sum" | "avg" | "min" | "max" | "prod";

/** Typed arrays that `allReduce` and `reduceScatter` accept. */
export type Reducible = Float32Array | Float64Array | Int32Array;

/**
 * The ranks of one job, able to talk to each other. Every rank must make the
 * same collective calls in the same order; a call that does not match its peers
 * (other op, length, dtype, root) rejects with `CollectiveMismatchError`.
 * In a worker, the order counts per request: a request that ends half-way
 * on some rank leaves the next request in step.
 *
 * Errors every call may reject with: `ValidationError` (bad arguments, checked
 * before anything is sent), `TimeoutError`, `AbortError`, `PeerLostError` (a
 * peer died or closed; then the group is failed and every later call rejects
 * the same way), `CollectiveMismatchError`.
 *
 * @example
 * const sum = await group.allReduce(new Float32Array([group.rank]), "sum");
 */
export interface ProcessGroup {
  /** This process's rank, `0 <= rank < size`. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  /** Resolves once every rank has entered the barrier. */
  barrier(o?: CollectiveOptions): Promise<void>;
  /**
   * Every rank gets `root`'s `data` (other ranks' `data` is ignored; pass
   * `undefined`). Typed arrays and Buffers travel as raw bytes, everything else
   * through msgpack. @default root 0
   */
  broadcast<T>(data: T, root?: number, o?: CollectiveOptions): Promise<T>;
  /** Every rank gets every rank's `data`, indexed by rank. */
  allGather<T>(data: T, o?: CollectiveOptions): Promise<T[]>;
  /**
   * Element-wise reduction of `data` across ranks. Returns a new array of the
   * same type and length on every rank (bit-identical on all ranks), or
   * `o.out` filled with it; `data` is not modified unless it is `o.out`.
   * @default op "sum"
   * @example
   * const sum = await group.allReduce(partial);                     // new array
   * await group.allReduce(partial, "sum", { out: partial });        // in place, no allocation
   */
  allReduce<A extends Reducible>(data: A, op?: ReduceOp, o?: ReduceOptions<A>): Promise<A>;
  /**
   * Reduces `data` across ranks and returns this rank's chunk of the result.
   * The split is numpy's `array_split`: with `q = floor(length / size)` and
   * `m = length % size`, ranks `0..m-1` get `q + 1` elements and the others
   * `q`, in rank order (see `splitRanges`). With `o.out` (of the chunk's
   * length) the chunk is written there and `o.out` returned. @default op "sum"
   */
  reduceScatter<A extends Reducible>(data: A, op?: ReduceOp, o?: ReduceOptions<A>): Promise<A>;
  /** `root` gets every rank's `data` indexed by rank; other ranks get `undefined`. @default root 0 */
  gather<T>(data: T, root?: number, o?: CollectiveOptions): Promise<T[] | undefined>;
  /**
   * Sends `data` to rank `dst`. Resolves when the message is queued (the bytes
   * are copied, so `data` may be reused at once). Messages between a pair
   * arrive in the order they were sent. Not ordered with collectives.
   */
  send(data: unknown, dst: number, o?: CollectiveOptions): Promise<void>;
  /** Receives the next message `src` sent with `send`. */
  recv<T = unknown>(src: number, o?: CollectiveOptions): Promise<T>;
  /** Rejects every pending and future call with `error` (used by the rank when the runner says a peer died). */
  fail(error: Error): void;
  /** Says goodbye to the peers and closes every socket. Idempotent; calls still pending reject with `AbortError`, later calls too. */
  close(): Promise<void>;
}

/** Options of {@link createProcessGroup}. */
export interface ProcessGroupOptions {
  /** This process's rank (torchrun's `RANK`). Required. */
  rank: number;
  /** World size (torchrun's `WORLD_SIZE`). Required. */
  size: number;
  /** Host rank 0 binds the rendezvous on and the others connect to (`MASTER_ADDR`). Required unless `size` is 1. */
  masterAddr: string;
  /** Rendezvous TCP port (`MASTER_PORT`). Required unless `size` is 1. */
  masterPort: number;
  /**
   * Meet at this unix socket path instead of `masterAddr:masterPort`: rank 0
   * listens there, the others connect. Only for ranks on one host; a runner
   * gives its own ranks one in its private directory, which spares each rank
   * loading ZeroMQ and the group a tcp port. An absolute path. @default tcp at masterAddr:masterPort
   */
  rendezvousSocket?: string;
  /** Seconds the rendezvous may take. @default 60 */
  timeout?: number;
  /** Aborts the rendezvous. */
  signal?: AbortSignal;
  /** Where to log; a child logger `{ component: "collectives", rank }` is made from it. @default pino to stderr */
  logger?: import("pino").Logger;
  /**
   * Which backend moves the bytes. `"zmq"`: the CPU backend (unix sockets and
   * shared memory on one host, ZeroMQ over tcp across hosts). @default "zmq"
   */
  backend?: "zmq";
  /**
   * How peers reach each other: `auto` chooses per pair of ranks, unix
   * stream sockets between ranks on one host and ZeroMQ over tcp (CURVE)
   * between hosts (a host is a hostname, boot id, network and mount
   * namespace; `MULTIRANK_HOST_ID` overrides it); `ipc` forces unix sockets
   * (one host only); `tcp` forces tcp for every pair. @default "auto"
   */
  transport?: "auto" | "ipc" | "tcp";
  /**
   * Use shared memory in `/dev/shm` for large all-reduces and reduce-scatters
   * when all ranks share a host (ignored when they span hosts, over tcp or where `/dev/shm` is
   * missing): segments mapped by the native addon, or tmpfs files read and
   * written with pread/pwrite where the addon is not built. @default true
   */
  sharedMemory?: boolean;
  /**
   * Address peers on other hosts use to reach this rank over tcp (an IP, or
   * a name: then bound on every interface). @default `MULTIRANK_HOST_ADDR`,
   * else masterAddr when it is loopback, else this host's address on the
   * route to masterAddr, else its first non-internal IPv4 address
   */
  hostAddr?: string;
  /** Default per-call timeout in seconds for collectives (see {@link CollectiveOptions.timeout}). @default 1800 */
  operationTimeout?: number;
  /**
   * The secret every rank of this group shares (at least 16 characters; the
   * runner makes a random one per start). Every rendezvous message and every
   * link between ranks is proven with it; a peer without it is refused and
   * logged, and learns nothing. Pass it through the environment or a file,
   * never on a command line. Without one the group accepts any process that
   * can reach `masterAddr:masterPort` (and warns).
   * @default process.env.MULTIRANK_GROUP_SECRET
   */
  secret?: string;
}

/** The logger type the options take. */
export type CollectivesLogger = Logger;
