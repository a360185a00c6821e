import fs from "node:fs";

/**
 * The fields of `/proc/<pid>/stat` after `comm`, from field 3 (state) on, or
 * `undefined` when the process or /proc is not there. `comm` may hold spaces
 * and parentheses, so the split starts after its last ")".
 */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`
 * field 22), as a decimal string; `undefined` without /proc or that process.
 * A pid and its start time name one process for the host's uptime: a pid
 * reused by a later process comes with a later start time.
 * @example processStartTime(process.pid) // "123456"
 */
export function processStartTime(pid: number): string | undefined {
  const start = statFields(pid)?.[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

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
  const fields = statFields(pid);
  return fields === undefined || fields[0] !== "Z"; // no /proc: trust kill(0)
}
