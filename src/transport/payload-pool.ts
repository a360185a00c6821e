import { StateError } from "../errors.js";
import { SharedSegment } from "../shm/index.js";

/**
 * Bytes of idle pooled segments a runner keeps for its next requests; past it
 * a returned segment is unlinked instead. 256 MiB holds a few 64 MiB payloads
 * (or one of each size a caller alternates between) without pinning much of
 * `/dev/shm` on a machine that runs several runners.
 */
export const PAYLOAD_POOL_IDLE_BYTES = 256 * 1024 * 1024;

/** Smallest pooled segment: the smallest payload that goes through shared memory (64 KiB). */
const MIN_CLASS = 64 * 1024;

/**
 * The segment size a payload of `bytes` is copied into: a multiple of a
 * quarter of the power of two below it, so payloads of nearly the same size
 * share segments and at most a quarter of a segment is never used.
 */
export function payloadSizeClass(bytes: number): number {
  if (bytes <= MIN_CLASS) return MIN_CLASS;
  const step = 2 ** (Math.floor(Math.log2(bytes - 1)) - 2);
  return Math.ceil(bytes / step) * step;
}

/**
 * Shared-memory segments a runner copies ordinary payload Buffers into, reused
 * from one request to the next. Making a 64 MiB segment costs several times
 * the copy into it (the kernel reserves and zeroes the pages; unlinking frees
 * them again), and ranks that map a new ArrayBuffer per request make V8 run a
 * full collection; a pooled segment is already faulted in here and mapped in
 * every rank, so a request pays for the copy only.
 *
 * A segment goes back to the pool only once every rank has answered the
 * request that carried it (ranks stop reading their payload then) and none
 * kept it with `ctx.keep()`: a kept segment is unlinked and never written
 * again. One pool per control session, closed with it.
 */
export class PayloadSegmentPool {
  readonly #maxIdleBytes: number;
  /** Idle segments by size class, ready to be written. */
  readonly #idle = new Map<number, SharedSegment[]>();
  /** Segments lent to requests still in flight. */
  readonly #lent = new Set<SharedSegment>();
  readonly #prefix: string;
  #idleBytes = 0;
  #closed = false;

  constructor(prefix: string, maxIdleBytes = PAYLOAD_POOL_IDLE_BYTES) {
    this.#prefix = prefix;
    this.#maxIdleBytes = maxIdleBytes;
  }

  /** Bytes of idle segments held. */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /**
   * A writable segment of at least `bytes`, idle or new, lent until
   * {@link giveBack}.
   * @throws {NativeError} when `/dev/shm` has no room even without the idle segments, or without the addon.
   * @throws {StateError} after {@link close}.
   */
  take(bytes: number): SharedSegment {
    if (this.#closed) throw new StateError("the payload segment pool is closed (its session ended)");
    const size = payloadSizeClass(bytes);
    const list = this.#idle.get(size);
    let segment = list?.pop();
    if (segment) {
      this.#idleBytes -= size;
      if (list!.length === 0) this.#idle.delete(size);
    } else {
      segment = this.#create(size);
    }
    this.#lent.add(segment);
    return segment;
  }

  #create(size: number): SharedSegment {
    try {
      return SharedSegment.create({ size, prefix: this.#prefix });
    } catch (error) {
      // No room in /dev/shm: idle segments of other sizes are the first to go.
      if (this.#idleBytes === 0) throw error;
      this.#dropIdle();
      return SharedSegment.create({ size, prefix: this.#prefix });
    }
  }

  /**
   * Ends a loan: `reuse` false (a rank kept the payload, or the request could
   * not be sent) unlinks the segment, as does a full pool or a closed one.
   */
  giveBack(segment: SharedSegment, reuse: boolean): void {
    if (!this.#lent.delete(segment)) return;
    if (!reuse || this.#closed || segment.closed || this.#idleBytes + segment.size > this.#maxIdleBytes) {
      retire(segment);
      return;
    }
    const list = this.#idle.get(segment.size);
    if (list) list.push(segment);
    else this.#idle.set(segment.size, [segment]);
    this.#idleBytes += segment.size;
  }

  /**
   * Unlinks every segment, idle or lent (the session's ranks are gone or
   * going: nothing reads them any more). Idempotent; a later
   * {@link giveBack} has nothing left to do.
   */
  close(): void {
    this.#closed = true;
    this.#dropIdle();
    for (const segment of this.#lent) retire(segment);
    this.#lent.clear();
  }

  #dropIdle(): void {
    for (const list of this.#idle.values()) for (const segment of list) retire(segment);
    this.#idle.clear();
    this.#idleBytes = 0;
  }
}

/** Unlinks and unmaps; a segment already gone is not an error here. */
function retire(segment: SharedSegment): void {
  try {
    segment.unlink();
    segment.close();
  } catch {
    // Swept by someone else, or unmapped already: nothing left to free.
  }
}
