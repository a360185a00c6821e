import { abortable } from "../abortable.js";
import type { CollectiveCall } from "../backend.js";
import { splitRanges } from "../chunks.js";
import { allocLike, finishReduce, reduceInto } from "../reduce-ops.js";
import { reduceParts, SHM_BUFFERS, type SharedBuffers } from "../shm.js";
import type { ReduceOp, Reducible } from "../types.js";
import { bytesOf, packHeader, type Header } from "../wire.js";
import type { Exchange } from "./exchange.js";

/** What the shared-memory reduction needs from its backend besides the messages of a call. */
export interface SharedMemoryHost extends Exchange {
  /** Why `peer` is gone (it closed its group), or undefined while it is there. */
  departed(peer: number): Error | undefined;
  /** The group's failure, once it failed. */
  failure(): Error | undefined;
  /** Sends `frames` to `peer` outside any call, best effort (a release). */
  post(peer: number, frames: Buffer[]): void;
}

/** The last use of one of this rank's shared buffers. */
interface BufferUse {
  readonly epoch: number;
  readonly seq: number;
  /** This rank's count of shared-memory reductions: orders uses across epochs (for the segment names). */
  readonly use: number;
  /** Peers told to read it ("written" sent) that have not released it yet. */
  readonly readers: Set<number>;
}

/** Whether two views share any byte. */
function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** A `like`-typed view of `length` elements of `memory` from byte `offset` (a mapped shared buffer). */
function typedView(like: Reducible, memory: ArrayBuffer, offset: number, length: number): Reducible {
  return new (like.constructor as new (b: ArrayBuffer, o: number, n: number) => Reducible)(memory, offset, length);
}

/**
 * The shared-memory reduction of one rank (every rank on one host), and the
 * state it keeps between calls: who still reads which of its buffers, and
 * its scratch. See BACKENDS.md for the protocol.
 */
export class SharedMemoryReduce {
  readonly #x: SharedMemoryHost;
  readonly #slots: SharedBuffers;
  /**
   * Per own shared buffer: its last use. A use is released peer by peer, by
   * (epoch, seq): sequence numbers restart with every epoch, so "the highest
   * collective released" would say nothing.
   */
  readonly #bufferUse: (BufferUse | undefined)[] = new Array(SHM_BUFFERS).fill(undefined);
  #uses = 0;
  readonly #releaseWaiters = new Set<() => void>();
  /** Shared-memory reductions run one at a time here: they share the buffers and the scratch. */
  #queue: Promise<void> = Promise.resolve();
  #running = 0;
  /** Reusable read buffers of the file path (fresh pages cost a fault each, more than the copy). */
  readonly #scratch: ArrayBuffer[] = [];

  constructor(host: SharedMemoryHost, slots: SharedBuffers) {
    this.#x = host;
    this.#slots = slots;
  }

  /**
   * Shared-memory reduction (one host). Each rank owns two shared buffers,
   * alternating by sequence number. Steps: (1) write my array, except my own
   * chunk, into my buffer; (2) exchange "written" (this also checks the
   * signatures, and carries the name of a mapped buffer so peers can map it);
   * (3) reduce chunk `rank` of every rank's array in rank order, straight from
   * the peers' mapped buffers (the file fallback reads them into scratch
   * first); for all-reduce (4) write the reduced chunk into my buffer, (5)
   * exchange "reduced", (6) copy every other reduced chunk from its owner.
   * Finally tell peers I no longer read their buffers, so they may reuse them
   * (and, when I mapped them, unlink their names). A peer that never runs
   * this collective (its request ended first) releases when it drops my
   * "written" message unread.
   *
   * `given` (the caller's `out`) receives the result; it may share memory
   * with `data`, in which case my whole array goes to my buffer first and my
   * own contribution is read back from there.
   */
  async reduce(data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean, given?: Reducible): Promise<Reducible> {
    // One at a time: a collective outside requests (epoch 0) may run beside a request's.
    const previous = this.#running > 0 ? this.#queue : undefined;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.#queue = this.#queue.then(() => mine);
    this.#running++;
    try {
      if (previous) await abortable(previous, call.signal);
      return await this.#reduceAlone(data, op, call, scatter, given);
    } finally {
      this.#running--;
      done();
    }
  }

  /** `peer` no longer reads our buffer of collective (`epoch`, `seq`); `attached`: it had mapped it. */
  release(peer: number, epoch: number, seq: number | undefined, attached: boolean): void {
    if (!Number.isInteger(seq) || seq! < 0) return;
    const b = seq! % SHM_BUFFERS;
    const use = this.#bufferUse[b];
    // A release of an older use of the buffer (a duplicate: x, then r) changes nothing.
    if (!use || use.epoch !== epoch || use.seq !== seq) return;
    if (attached) this.#slots.attached(peer, b, use.use);
    if (use.readers.delete(peer)) this.wake();
  }

  /** Wakes the reductions waiting for a release, to look again (a release came, a peer left, the group failed). */
  wake(): void {
    const waiters = [...this.#releaseWaiters];
    this.#releaseWaiters.clear();
    for (const w of waiters) w();
  }

  /** A `like`-typed view of `length` elements over reusable scratch buffer `slot`. */
  #scratchView(like: Reducible, slot: number, length: number): Reducible {
    const bytes = length * like.BYTES_PER_ELEMENT;
    let buffer = this.#scratch[slot];
    if (!buffer || buffer.byteLength < bytes) buffer = this.#scratch[slot] = new ArrayBuffer(bytes);
    const Ctor = like.constructor as new (b: ArrayBuffer, o: number, n: number) => Reducible;
    return new Ctor(buffer, 0, length);
  }

  /** Waits until every peer told to read own buffer `buffer` has released it. */
  async #awaitRelease(buffer: number, call: CollectiveCall): Promise<void> {
    const last = this.#bufferUse[buffer];
    if (!last) return;
    for (;;) {
      if (last.readers.size === 0) return;
      for (const p of last.readers) {
        const gone = this.#x.departed(p);
        if (gone) throw gone;
      }
      const failure = this.#x.failure();
      if (failure) throw failure;
      await abortable(new Promise<void>((resolve) => this.#releaseWaiters.add(resolve)), call.signal);
    }
  }

  async #reduceAlone(data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean, given?: Reducible): Promise<Reducible> {
    const x = this.#x;
    const slots = this.#slots;
    const mapped = slots.kind === "mmap";
    const n = x.size;
    const r = x.rank;
    const bpe = data.BYTES_PER_ELEMENT;
    const chunks = splitRanges(data.length, n);
    const own = chunks[r];
    const ownLength = own.end - own.start;
    const b = call.seq % SHM_BUFFERS;
    await this.#awaitRelease(b, call);
    const use: BufferUse = { epoch: call.epoch, seq: call.seq, use: ++this.#uses, readers: new Set() };
    this.#bufferUse[b] = use;
    let attachedAll = false;
    try {
      const sig = call.signal;
      const aliased = given !== undefined && overlaps(given, data);
      const token = slots.prepare(b, data.byteLength, use.use);
      if (aliased && mapped) await slots.write(b, bytesOf(data), 0);
      else {
        await abortable(
          Promise.all([slots.write(b, bytesOf(data.subarray(0, own.start)), 0), slots.write(b, bytesOf(data.subarray(own.end)), own.end * bpe)]),
          sig,
        );
      }
      const tokenFrame = token ? Buffer.from(token) : undefined;
      await Promise.all([
        ...x.peers.map((p) => {
          // From here p may read the buffer: we wait for its release before writing it again.
          use.readers.add(p);
          return x.send(call, p, tokenFrame, undefined, 1, true);
        }),
        ...x.peers.map(async (p) => {
          const m = await x.take(call, p, 1);
          if (mapped) slots.attach(p, b, m.frames[0]?.toString() ?? "");
        }),
      ]);
      attachedAll = mapped;

      // My contribution, saved before `out` overwrites it when the two alias.
      const mine = !aliased ? data.subarray(own.start, own.end) : mapped ? typedView(data, slots.memory(r, b)!, own.start * bpe, ownLength) : data.slice(own.start, own.end);
      const out = given ?? (scatter ? allocLike(data, ownLength) : allocLike(data, data.length));
      const acc = scatter ? out : out.subarray(own.start, own.end);
      if (mapped) {
        const parts = [...Array(n).keys()].map((j) => (j === r ? mine : typedView(data, slots.memory(j, b)!, own.start * bpe, ownLength)));
        reduceParts(acc, parts, op);
      } else {
        const reads = new Map<number, Promise<Reducible>>();
        for (const p of x.peers) {
          // Rank 0's chunk lands straight in the accumulator; others in scratch.
          const target = p === 0 ? acc : this.#scratchView(data, p, ownLength);
          reads.set(p, slots.read(p, b, bytesOf(target), own.start * bpe).then(() => target));
        }
        if (r === 0) acc.set(mine);
        else await abortable(reads.get(0)!, sig);
        for (let j = 1; j < n; j++) reduceInto(acc, j === r ? mine : await abortable(reads.get(j)!, sig), op);
      }
      finishReduce(acc, op, n);
      if (scatter) return out;

      await abortable(slots.write(b, bytesOf(acc), own.start * bpe), sig);
      if (mapped) {
        // Copy each reduced chunk as soon as its owner reports it, not after the slowest.
        await Promise.all([
          ...x.peers.map((p) => x.send(call, p, undefined, undefined, 2)),
          ...x.peers.map(async (p) => {
            await x.take(call, p, 2);
            const c = chunks[p];
            out.set(typedView(data, slots.memory(p, b)!, c.start * bpe, c.end - c.start), c.start);
          }),
        ]);
      } else {
        await Promise.all([...x.peers.map((p) => x.send(call, p, undefined, undefined, 2)), ...x.peers.map((p) => x.take(call, p, 2))]);
        await abortable(Promise.all(x.peers.map((p) => slots.read(p, b, bytesOf(out.subarray(chunks[p].start, chunks[p].end)), chunks[p].start * bpe))), sig);
      }
      return out;
    } finally {
      const release: Header = { k: "r", s: r, q: call.seq };
      if (call.epoch) release.j = call.epoch;
      if (attachedAll) release.i = 1;
      const done = [packHeader(release)];
      for (const p of x.peers) if (!x.departed(p)) x.post(p, done);
    }
  }
}
