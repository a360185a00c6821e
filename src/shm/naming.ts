import { randomBytes } from "node:crypto";
import { ValidationError } from "../errors.js";
import { processStartTime } from "./owner.js";

/** Prefix of segments made without one. @default "multirank" */
export const DEFAULT_SEGMENT_PREFIX = "multirank";

// Names become files in /dev/shm; keep them to characters every shell and
// filesystem takes, and leave room for the "-p<pid>-<hex>" tail.
const PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const TAIL_RE = /-p(\d{1,10})-[0-9a-f]{12}$/;

/**
 * Checks a segment-name prefix.
 * @throws {ValidationError} naming `field` when it is not 1 to 200 of `[A-Za-z0-9._-]`, starting alphanumeric.
 */
export function checkPrefix(prefix: unknown, field = "options.prefix"): string {
  if (typeof prefix !== "string" || !PREFIX_RE.test(prefix)) {
    throw new ValidationError(`${field} must be 1 to 200 characters of [A-Za-z0-9._-], starting with a letter or digit (got ${JSON.stringify(prefix)})`);
  }
  return prefix;
}

/**
 * A fresh segment name, `<prefix>-p<pid>-<12 hex>`. The owner's pid is part of
 * the name so {@link sweepStaleSegments} can tell a dead owner's leftovers from
 * a live one's segments.
 * @example segmentName("multirank") // "multirank-p4242-9f86d081884c"
 */
export function segmentName(prefix = DEFAULT_SEGMENT_PREFIX, pid = process.pid): string {
  return `${checkPrefix(prefix)}-p${pid}-${randomBytes(6).toString("hex")}`;
}

/**
 * The owner pid embedded in a name made by {@link segmentName} with `prefix`
 * (any prefix when omitted), or `undefined` when `name` is not one.
 * @example segmentOwner("multirank-p4242-9f86d081884c", "multirank") // 4242
 */
export function segmentOwner(name: string, prefix?: string): number | undefined {
  if (prefix !== undefined && !name.startsWith(`${prefix}-`)) return undefined;
  const m = TAIL_RE.exec(name);
  if (!m || (prefix !== undefined && m.index < prefix.length)) return undefined;
  const pid = Number(m[1]);
  return pid > 0 ? pid : undefined;
}

/**
 * Run directories (`<tmpdir>/multirank-run-p<pid>-s<start>-XXXXXX`, made by
 * `mkdtemp` with {@link runDirPrefix}): group 1 is the owner's pid, group 2 its
 * start time in clock ticks after boot (absent where /proc is missing).
 */
export const RUN_DIR_RE = /^multirank-run-p(\d{1,10})(?:-s(\d{1,20}))?-[A-Za-z0-9]{6}$/;

/**
 * The `mkdtemp` prefix of a runner's run directory, naming its owner (pid and
 * start time) so `sweepLeftovers` can tell a dead runner's directory from a
 * live one's, even after the pid is reused.
 * @example mkdtempSync(join(tmpdir(), runDirPrefix())) // "/tmp/multirank-run-p4242-s889123-Ab3xYz"
 */
export function runDirPrefix(pid = process.pid, startTime = processStartTime(pid)): string {
  return `multirank-run-p${pid}${startTime === undefined ? "" : `-s${startTime}`}-`;
}
