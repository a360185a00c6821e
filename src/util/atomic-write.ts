import { randomBytes } from "node:crypto";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Writes `data` to `path` through a temporary sibling and a rename, so a
 * reader (or a restart after a crash) sees the old file or the new one,
 * never half of one. Creates the parent directory. `mode` is the file's
 * permission bits, set on the draft before it holds any data (so a secret is
 * never readable by others, not even for a moment).
 */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, mode?: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const draft = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(draft, data, mode === undefined ? {} : { mode, flag: "wx" });
    renameSync(draft, path);
  } catch (error) {
    rmSync(draft, { force: true });
    throw error;
  }
}
