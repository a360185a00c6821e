import fs from "node:fs";
import path from "node:path";
import { SharedSegment } from "../shm/shared-segment.js";
import { SHM_DIR, shmAddon, shmAvailable } from "../shm/available.js";
import { reduceInto } from "./reduce-ops.js";
import type { ReduceOp, Reducible } from "./types.js";

// One SHM_DIR for the package: the shm layer's.
export { SHM_DIR };

/** Number of buffers per rank; collectives alternate by sequence number so one can be read while the next is written. */
export const SHM_BUFFERS = 2;

/**
 * Prefix of the segments {@link MappedSlots} makes
 * (`multirank-coll-<group>-r<rank>-p<pid>-<hex>`); `sweepLeftovers` removes
 * those of dead ranks.
 */
export const COLLECTIVE_SEGMENT_PREFIX = "multirank-coll";

/** Mapped buffers grow in steps of this many bytes, so slightly larger calls reuse them. */
const SEGMENT_GRANULE = 1 << 20;

/** How ranks share large buffers: mapped segments (no copy through syscalls) or tmpfs files (pread/pwrite). */
export type SharedKind = "mmap" | "file";

/**
 * Which kind this process can use: `mmap` when the native addon has shared
 * memory, else `file` when `/dev/shm` is writable, else none.
 * `MULTIRANK_COLLECTIVES_SHM=file` forces the file path (tests, debugging).
 */
export function sharedKind(env: NodeJS.ProcessEnv = process.env): SharedKind | undefined {
  const forced = env.MULTIRANK_COLLECTIVES_SHM;
  if (forced !== "file" && shmAvailable()) return "mmap";
  return sharedMemoryAvailable() ? "file" : undefined;
}

/**
 * `acc = parts[0] op parts[1] op ...`, in that order (so every rank computes
 * bit-identical results): in one native pass when the addon has
 * `reduceArrays` (about 15x faster than the JS loops on 64 MiB), else with
 * {@link reduceInto}. `acc` may be `parts[0]` but must not overlap the others.
 */
export function reduceParts(acc: Reducible, parts: readonly Reducible[], op: ReduceOp): void {
  const addon = shmAddon();
  if (addon && typeof addon.reduceArrays === "function") {
    addon.reduceArrays(acc, parts, op);
    return;
  }
  if (parts[0] !== acc) acc.set(parts[0]);
  for (let j = 1; j < parts.length; j++) reduceInto(acc, parts[j], op);
}

/**
 * One rank's view of the group's shared buffers, as the shared-memory
 * reduction uses them: `SHM_BUFFERS` buffers of its own (written by it), and
 * its peers' (read only). Implemented by {@link MappedSlots} and {@link SharedSlots}.
 */
export interface SharedBuffers {
  readonly kind: SharedKind;
  /**
   * Makes own buffer `b` hold at least `bytes` for collective `seq`; returns
   * the token peers pass to {@link attach} (a segment name; "" for files).
   */
  prepare(b: number, bytes: number, seq: number): string;
  /** Makes peer `peer`'s buffer `b` readable here, given the token it sent. */
  attach(peer: number, b: number, token: string): void;
  /** Mapped memory of `owner`'s buffer `b` (`owner` may be this rank); undefined for files. */
  memory(owner: number, b: number): ArrayBuffer | undefined;
  /** Writes `source` into own buffer `b` at byte `position`. */
  write(b: number, source: Uint8Array, position: number): Promise<void>;
  /** Fills `target` from `peer`'s buffer `b` at byte `position`. */
  read(peer: number, b: number, target: Uint8Array, position: number): Promise<void>;
  /** `peer` has attached own buffer `b` as of collective `seq`: names it no longer needs can go. */
  attached(peer: number, b: number, seq: number): void;
  /** Opens the buffers of `peers` made at connect time; `pids[p]` is peer `p`'s process id. */
  openPeers(peers: number[], pids: number[]): void;
  /** Removes the names of own buffers; mappings and descriptors stay valid. */
  unlinkOwn(): void;
  /** Frees everything (and unlinks, if not done yet). */
  close(): Promise<void>;
}

// The owner's pid is in the name so a later group can sweep what a killed rank left.
function fileName(dir: string, groupId: string, rank: number, pid: number, buffer: number): string {
  return path.join(dir, `multirank-${groupId}-r${rank}-p${pid}-b${buffer}`);
}

function readAt(fd: number, target: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, target, 0, target.length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function writeAt(fd: number, source: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, source, 0, source.length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Whether shared-memory files can be made here. */
export function sharedMemoryAvailable(dir = SHM_DIR): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The file fallback (no native addon): one rank's view of the group's
 * shared-memory buffers: its own files (read-write) and its peers'
 * (read-only), each a tmpfs file reached through `pread`/`pwrite` on the
 * thread pool, i.e. one memcpy each way. Files are unlinked as soon as every
 * rank holds them open, so nothing is left in `/dev/shm` even when a rank is killed.
 */
export class SharedSlots implements SharedBuffers {
  readonly kind = "file";
  readonly #dir: string;
  readonly #groupId: string;
  readonly #rank: number;
  readonly #own: number[];
  readonly #peers = new Map<number, number[]>();
  #unlinked = false;
  // Closing a descriptor under an in-flight pread/pwrite could let the number be
  // reused and written through; close() waits for these first.
  readonly #inflight = new Set<Promise<unknown>>();

  private constructor(dir: string, groupId: string, rank: number, own: number[]) {
    this.#dir = dir;
    this.#groupId = groupId;
    this.#rank = rank;
    this.#own = own;
  }

  /** Creates this rank's buffers. @throws the fs error when `/dev/shm` is unusable. */
  static create(groupId: string, rank: number, dir = SHM_DIR): SharedSlots {
    const own: number[] = [];
    try {
      for (let b = 0; b < SHM_BUFFERS; b++) own.push(fs.openSync(fileName(dir, groupId, rank, process.pid, b), "w+", 0o600));
    } catch (error) {
      for (const fd of own) fs.closeSync(fd);
      throw error;
    }
    return new SharedSlots(dir, groupId, rank, own);
  }

  /** Files grow as they are written: nothing to prepare. */
  prepare(): string {
    return "";
  }

  /** Peers' files are opened once, by {@link openPeers}. */
  attach(): void {}

  /** Files are not mapped. */
  memory(): undefined {
    return undefined;
  }

  /** Names were unlinked at connect time. */
  attached(): void {}

  /** Opens the buffers of `peers` (after they made them); `pids[p]` is peer `p`'s process id. */
  openPeers(peers: number[], pids: number[]): void {
    for (const p of peers) {
      const fds: number[] = [];
      for (let b = 0; b < SHM_BUFFERS; b++) fds.push(fs.openSync(fileName(this.#dir, this.#groupId, p, pids[p], b), "r"));
      this.#peers.set(p, fds);
    }
  }

  /** Removes this rank's file names; open descriptors keep the memory alive. */
  unlinkOwn(): void {
    if (this.#unlinked) return;
    this.#unlinked = true;
    for (let b = 0; b < SHM_BUFFERS; b++) {
      try {
        fs.unlinkSync(fileName(this.#dir, this.#groupId, this.#rank, process.pid, b));
      } catch {
        // already gone: nothing to clean
      }
    }
  }

  /** Writes `source` into own buffer `buffer` at byte `position`. */
  write(buffer: number, source: Uint8Array, position: number): Promise<void> {
    return this.#track(async () => {
      const fd = this.#own[buffer];
      if (fd === undefined) throw new Error("shared buffers are closed");
      let done = 0;
      while (done < source.length) done += await writeAt(fd, source.subarray(done), position + done);
    });
  }

  #track(work: () => Promise<void>): Promise<void> {
    const p = work();
    this.#inflight.add(p);
    const drop = (): void => void this.#inflight.delete(p);
    p.then(drop, drop);
    return p;
  }

  /** Fills `target` from `peer`'s buffer `buffer` at byte `position`. */
  read(peer: number, buffer: number, target: Uint8Array, position: number): Promise<void> {
    return this.#track(async () => {
      const fd = this.#peers.get(peer)?.[buffer];
      if (fd === undefined) throw new Error(`no shared buffer of rank ${peer}`);
      let done = 0;
      while (done < target.length) {
        const n = await readAt(fd, target.subarray(done), position + done);
        if (n === 0) throw new Error(`shared buffer of rank ${peer} ended early`);
        done += n;
      }
    });
  }

  /** Closes every descriptor (and unlinks, if not done yet) once in-flight reads and writes end. */
  async close(): Promise<void> {
    this.unlinkOwn();
    await Promise.allSettled([...this.#inflight]);
    for (const fd of [...this.#own, ...[...this.#peers.values()].flat()]) {
      try {
        fs.closeSync(fd);
      } catch {
        // closing twice is harmless here
      }
    }
    this.#own.length = 0;
    this.#peers.clear();
  }
}

/**
 * The fast path: each own buffer is a POSIX shared-memory segment mapped by
 * the native addon, and peers map it too, so a rank reduces straight from its
 * peers' memory and nothing is copied through a syscall. Segments are made on
 * first use, sized to the call (in MiB steps) and replaced when a larger call
 * comes; a new segment's name travels in the "written" message and is
 * unlinked as soon as every peer has confirmed it mapped it, so a killed rank
 * leaves at most the segments of the collective it died in (swept by the next
 * group on the host, their owner's pid being in the name).
 */
export class MappedSlots implements SharedBuffers {
  readonly kind = "mmap";
  readonly #prefix: string;
  readonly #rank: number;
  readonly #own: (SharedSegment | undefined)[] = new Array(SHM_BUFFERS).fill(undefined);
  readonly #peers = new Map<number, (SharedSegment | undefined)[]>();
  /** Own segments whose names are still linked, with the buffer and the collective that made them. */
  readonly #linked = new Map<SharedSegment, { b: number; seq: number }>();
  /** Per peer, per buffer: the last collective in which the peer confirmed it mapped that buffer. */
  readonly #confirmed = new Map<number, number[]>();
  #closed = false;

  constructor(groupId: string, rank: number, peers: readonly number[]) {
    this.#prefix = `${COLLECTIVE_SEGMENT_PREFIX}-${groupId}-r${rank}`;
    this.#rank = rank;
    for (const p of peers) this.#confirmed.set(p, new Array(SHM_BUFFERS).fill(-1));
  }

  prepare(b: number, bytes: number, seq: number): string {
    if (this.#closed) throw new Error("shared buffers are closed");
    let segment = this.#own[b];
    if (!segment || segment.size < bytes) {
      const size = Math.max(SEGMENT_GRANULE, Math.ceil(bytes / SEGMENT_GRANULE) * SEGMENT_GRANULE);
      const next = SharedSegment.create({ size, prefix: this.#prefix });
      if (segment) this.#drop(segment);
      this.#own[b] = segment = next;
      this.#linked.set(next, { b, seq });
    }
    return segment.name;
  }

  attach(peer: number, b: number, token: string): void {
    let list = this.#peers.get(peer);
    if (!list) this.#peers.set(peer, (list = new Array(SHM_BUFFERS).fill(undefined)));
    if (list[b]?.name === token) return;
    list[b]?.close();
    list[b] = undefined;
    list[b] = SharedSegment.open(token);
  }

  memory(owner: number, b: number): ArrayBuffer | undefined {
    const segment = owner === this.#rank ? this.#own[b] : this.#peers.get(owner)?.[b];
    if (!segment) throw new Error(`no shared buffer ${b} of rank ${owner}`);
    return segment.arrayBuffer;
  }

  async write(b: number, source: Uint8Array, position: number): Promise<void> {
    new Uint8Array(this.memory(this.#rank, b)!, position, source.byteLength).set(source);
  }

  async read(peer: number, b: number, target: Uint8Array, position: number): Promise<void> {
    target.set(new Uint8Array(this.memory(peer, b)!, position, target.byteLength));
  }

  attached(peer: number, b: number, seq: number): void {
    const confirmed = this.#confirmed.get(peer);
    if (!confirmed || seq <= confirmed[b]) return;
    confirmed[b] = seq;
    for (const [segment, made] of this.#linked) {
      if ([...this.#confirmed.values()].every((c) => c[made.b] >= made.seq)) {
        this.#linked.delete(segment);
        this.#unlink(segment);
      }
    }
  }

  openPeers(): void {}

  unlinkOwn(): void {
    for (const segment of this.#linked.keys()) this.#unlink(segment);
    this.#linked.clear();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.unlinkOwn();
    for (const segment of [...this.#own, ...[...this.#peers.values()].flat()]) segment?.close();
    this.#own.fill(undefined);
    this.#peers.clear();
  }

  #drop(segment: SharedSegment): void {
    if (this.#linked.delete(segment)) this.#unlink(segment);
    segment.close();
  }

  #unlink(segment: SharedSegment): void {
    try {
      segment.unlink();
    } catch {
      // best effort: a sweep removes it once this process is gone
    }
  }
}
