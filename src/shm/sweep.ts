import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SHM_DIR } from "./available.js";
import { checkPrefix, DEFAULT_SEGMENT_PREFIX, RUN_DIR_RE, segmentOwner } from "./naming.js";
import { processAlive, processStartTime } from "./owner.js";

/** Options of {@link sweepStaleSegments}. */
export interface SweepOptions {
  /** Directory holding the segments. @default "/dev/shm" */
  dir?: string;
}

/**
 * Removes segments named `<prefix>-...-p<pid>-<hex>` (as `SharedSegment.create`
 * names them) whose owner process is gone: what a killed process could not
 * unlink. Segments of live processes, and names of any other shape, are left
 * alone. Best effort: never throws for a missing directory or a name that
 * vanished meanwhile.
 *
 * @returns the names removed.
 * @throws {ValidationError} for a malformed `prefix`.
 * @example sweepStaleSegments("multirank") // ["multirank-p4242-9f86d081884c"]
 */
export function sweepStaleSegments(prefix: string, options: SweepOptions = {}): string[] {
  checkPrefix(prefix, "prefix");
  return removeSegmentsOfGoneOwners(options.dir ?? SHM_DIR, prefix, ownerGone());
}

/**
 * The one shared-memory sweep: removes the segments `<prefix>-...-p<pid>-<hex>`
 * in `dir` whose owner `gone` says is gone, and entries `alsoRemove` picks.
 */
function removeSegmentsOfGoneOwners(dir: string, prefix: string, gone: (pid: number) => boolean, alsoRemove: (name: string) => boolean = () => false): string[] {
  return removeWhere(dir, (name) => {
    const pid = segmentOwner(name, prefix);
    return pid !== undefined ? gone(pid) : alsoRemove(name);
  });
}

/** Options of {@link sweepLeftovers}; the defaults are where multirank puts things. */
export interface LeftoverSweepOptions {
  /** Where run directories and collectives' link sockets are. @default os.tmpdir() */
  tmpDir?: string;
  /** Where shared-memory segments are. @default "/dev/shm" */
  shmDir?: string;
}

/** What {@link sweepLeftovers} removed: names of entries, by directory. */
export interface SweptLeftovers {
  /** Entries of `tmpDir`: run directories and link sockets. */
  tmp: string[];
  /** Entries of `shmDir`: payload and collectives segments and files. */
  shm: string[];
}

// Collectives' per-rank names: tmpfs files `-b<n>` (the fallback without the
// addon, in /dev/shm) and link sockets `.sock` (in tmpdir), with the rank's pid.
const RANK_FILE_RE = /^multirank-[0-9a-f]+-r\d+-p(\d+)(?:-b\d+|\.sock|\.sock\.live)$/;
// Run directories of versions before the owner's pid was in the name (mkdtemp's six characters).
const OLD_RUN_DIR_RE = /^multirank-[A-Za-z0-9]{6}$/;
// What such a directory holds; anything else there means it is not ours.
const OLD_RUN_DIR_ENTRY_RE = /^(?:control\.sock|rank-\d+\.errors\.jsonl)$/;

/**
 * Removes what runners and ranks that are gone left on this host, as one
 * readdir of `tmpDir` and one of `shmDir`:
 * - run directories `multirank-run-p<pid>-s<start>-XXXXXX` (control socket and
 *   rank error files) whose owner is dead, a zombie, or a later process with
 *   the same pid (its start time differs);
 * - payload and collectives segments `multirank-...-p<pid>-<hex>`, and the
 *   collectives' tmpfs files and link sockets `multirank-<group>-r<rank>-p<pid>...`,
 *   whose owner is dead or a zombie (these names carry no start time: a reused
 *   pid keeps them until that process ends too);
 * - run directories of older versions (`multirank-XXXXXX`, no pid) that hold
 *   only a control socket nobody listens on (absent from `/proc/net/unix`) and
 *   rank error files.
 *
 * Live processes' entries, and names of any other shape, are never touched.
 * `DistributedRunner.start()`, `multirank serve` and every process group call
 * it; it is synchronous and cheap (a readdir of each directory, a `kill(pid, 0)`
 * and a /proc read per candidate). Best effort: never throws.
 * @returns the names removed.
 * @example sweepLeftovers() // { tmp: ["multirank-run-p4242-s889123-Ab3xYz"], shm: ["multirank-payload-p4242-9f86d081884c"] }
 */
export function sweepLeftovers(options: LeftoverSweepOptions = {}): SweptLeftovers {
  const tmpDir = options.tmpDir ?? os.tmpdir();
  const shmDir = options.shmDir ?? SHM_DIR;
  const gone = ownerGone();
  const rankFileGone = (name: string): boolean => {
    const m = RANK_FILE_RE.exec(name);
    return m !== null && gone(Number(m[1]));
  };
  let listening: Set<string> | undefined | null = null; // read on first need
  const tmp = removeWhere(tmpDir, (name) => {
    const run = RUN_DIR_RE.exec(name);
    if (run) return gone(Number(run[1]), run[2]);
    if (OLD_RUN_DIR_RE.test(name)) {
      if (listening === null) listening = boundUnixSockets();
      return listening !== undefined && oldRunDirAbandoned(path.join(tmpDir, name), listening);
    }
    return rankFileGone(name);
  });
  const shm = removeSegmentsOfGoneOwners(shmDir, DEFAULT_SEGMENT_PREFIX, gone, rankFileGone);
  return { tmp, shm };
}

/** A `gone(pid, start?)` that asks about each pid once per sweep. */
function ownerGone(): (pid: number, start?: string) => boolean {
  const alive = new Map<number, boolean>();
  return (pid, start) => {
    if (pid <= 0 || pid === process.pid) return false;
    let isAlive = alive.get(pid);
    if (isAlive === undefined) alive.set(pid, (isAlive = processAlive(pid)));
    if (!isAlive) return true;
    // Alive, but a different process if it started at another time than the owner.
    if (start === undefined) return false;
    const now = processStartTime(pid);
    return now !== undefined && now !== start;
  };
}

/** Paths of the unix sockets bound in this network namespace, or `undefined` when `/proc/net/unix` cannot be read. */
function boundUnixSockets(): Set<string> | undefined {
  try {
    const paths = new Set<string>();
    for (const line of fs.readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
      // "Num RefCount Protocol Flags Type St Inode Path": the path is the 8th field and may hold spaces.
      const fields = line.trim().split(/\s+/);
      if (fields.length >= 8) paths.add(fields.slice(7).join(" "));
    }
    return paths;
  } catch {
    return undefined;
  }
}

/**
 * Whether an old-style run directory is a dead runner's: it holds a control
 * socket that no process has bound (a live runner's is in `/proc/net/unix`
 * from bind to close), and nothing but that and rank error files. A directory
 * without a socket (a tcp runner, or one not bound yet) cannot be told apart
 * from a live one, so it stays.
 */
function oldRunDirAbandoned(dir: string, listening: Set<string>): boolean {
  try {
    const entries = fs.readdirSync(dir);
    if (!entries.includes("control.sock") || !entries.every((e) => OLD_RUN_DIR_ENTRY_RE.test(e))) return false;
    const socket = path.join(dir, "control.sock");
    return fs.lstatSync(socket).isSocket() && !listening.has(socket);
  } catch {
    return false;
  }
}

/** Removes the entries of `dir` that `stale(name)` picks; returns their names. Never throws. */
function removeWhere(dir: string, stale: (name: string) => boolean): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    try {
      if (!stale(name)) continue;
      // On Linux shm_unlink(name) is exactly this unlink; fs needs no addon.
      fs.rmSync(path.join(dir, name), { recursive: true });
      removed.push(name);
    } catch {
      // already gone (another sweeper won), or not ours to remove
    }
  }
  return removed;
}
