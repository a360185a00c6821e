import fs from "node:fs";
import path from "node:path";
import { SHM_DIR } from "./available.js";
import { checkPrefix, segmentOwner } from "./naming.js";

/**
 * Whether `pid` is a live process. A zombie (killed, not yet reaped by its
 * parent) counts as dead: it will never unlink anything again.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, just not ours to signal.
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
  try {
    // "<pid> (<comm>) <state> ...": comm may hold spaces and parentheses.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

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
  const dir = options.dir ?? SHM_DIR;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = segmentOwner(name, prefix);
    if (pid === undefined || pid === process.pid || processAlive(pid)) continue;
    try {
      // On Linux shm_unlink(name) is exactly this unlink; fs needs no addon.
      fs.unlinkSync(path.join(dir, name));
      removed.push(name);
    } catch {
      // already gone, or not ours to remove
    }
  }
  return removed;
}
