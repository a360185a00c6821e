import fs from "node:fs";
import path from "node:path";

/** Directory of the shared-memory files (tmpfs on Linux). */
export const SHM_DIR = "/dev/shm";

/** Number of buffers per rank; collectives alternate by sequence number so one can be read while the next is written. */
export const SHM_BUFFERS = 2;

// The owner's pid is in the name so a later group can sweep what a killed rank left.
function fileName(dir: string, groupId: string, rank: number, pid: number, buffer: number): string {
  return path.join(dir, `multirank-${groupId}-r${rank}-p${pid}-b${buffer}`);
}

/**
 * Removes `multirank-<group>-r<rank>-p<pid>...` entries of `dir` whose process
 * is gone: files of ranks killed before their group finished connecting (after
 * that, names are unlinked at once). Best effort; never throws.
 */
export function sweepStale(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^multirank-[0-9a-f]+-r\d+-p(\d+)(?:-b\d+|\.sock|\.sock\.live)$/.exec(name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
      continue; // alive (or not ours to signal): leave it
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") continue;
    }
    fs.rmSync(path.join(dir, name), { force: true });
  }
}

function readAt(fd: number, target: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, target, 0, target.length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function writeAt(fd: number, source: Buffer, position: number): Promise<number> {
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
 * One rank's view of the group's shared-memory buffers: its own files
 * (read-write) and its peers' (read-only), each a tmpfs file reached through
 * `pread`/`pwrite` on the thread pool, i.e. one memcpy each way. Files are
 * unlinked as soon as every rank holds them open, so nothing is left in
 * `/dev/shm` even when a rank is killed.
 */
export class SharedSlots {
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
  write(buffer: number, source: Buffer, position: number): Promise<void> {
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
  read(peer: number, buffer: number, target: Buffer, position: number): Promise<void> {
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
