/**
 * The data root: the one directory on a host where `syncDir` writes and from
 * which a function reads its persistent files. Paths use fal's `/data/...`
 * convention; every path is checked to stay inside the root, symlinks
 * included, before anything reads or writes it.
 */
import { lstatSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { ValidationError } from "../errors.js";

/** The prefix fal-serverless gives persistent data; it stands for the data root. */
export const DATA_PREFIX = "/data";

/**
 * The data root of this host: `MULTIRANK_DATA_DIR` (made absolute against
 * the working directory), or `~/.local/share/multirank` when it is unset or
 * empty. Inside a function's environment the host sets `MULTIRANK_DATA_DIR`
 * to its own root, so the same call answers correctly on every host.
 *
 * @param env the environment to read. @default process.env
 * @example dataRoot({ MULTIRANK_DATA_DIR: "/srv/data" }) // "/srv/data"
 */
export function dataRoot(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MULTIRANK_DATA_DIR;
  if (configured !== undefined && configured !== "") {
    if (configured.includes("\0")) throw new ValidationError("MULTIRANK_DATA_DIR must not contain NUL bytes");
    return resolve(configured);
  }
  return join(env.HOME || homedir(), ".local", "share", "multirank");
}

/**
 * Maps `remotePath` to an absolute path inside `root`.
 *
 * `remotePath` is fal's `/data/...` form (`/data` stands for the root), a
 * path relative to the root (`models/x`), or an absolute path already inside
 * the root. `..` is allowed while it stays inside. Refused, with a
 * {@link ValidationError} naming the path: an empty path, NUL bytes, any
 * other absolute path, a path that leaves the root after normalisation, and a
 * path that would leave it through a symlink (checked on the real path of
 * the deepest part that exists, so a link inside the root that points out is
 * caught even when the rest of the path does not exist yet).
 *
 * @example resolveDataPath("/srv/data", "/data/models") // "/srv/data/models"
 * @throws ValidationError when the path leaves the root or `root` is not absolute.
 */
export function resolveDataPath(root: string, remotePath: string): string {
  if (typeof root !== "string" || !isAbsolute(root)) throw new ValidationError(`the data root must be an absolute path, got ${JSON.stringify(root)}`);
  if (typeof remotePath !== "string" || remotePath === "") throw new ValidationError(`a data path must be a non-empty string, got ${JSON.stringify(remotePath)}`);
  if (remotePath.includes("\0")) throw new ValidationError(`data path ${JSON.stringify(remotePath)} contains a NUL byte`);
  const base = resolve(root);
  let candidate: string;
  if (remotePath === DATA_PREFIX || remotePath.startsWith(`${DATA_PREFIX}/`)) {
    // "/data/x" means "<root>/x": drop the prefix and every slash after it so the rest is relative.
    candidate = resolve(base, remotePath.slice(DATA_PREFIX.length).replace(/^\/+/, "") || ".");
  } else {
    candidate = resolve(base, remotePath);
  }
  return checkInside(base, candidate, remotePath);
}

/**
 * The real path of `path` inside this host's data root (`dataRoot()`), for
 * use inside a function: `dataPath("/data/models")` is where
 * `syncDir(dir, "/data/models")` put the files.
 *
 * @throws ValidationError when the path leaves the root.
 */
export function dataPath(path: string): string {
  return resolveDataPath(dataRoot(), path);
}

/**
 * The absolute path of file `file` of a synced directory: `remoteDir` as
 * {@link resolveDataPath} takes it, `file` a relative POSIX path as
 * {@link hashTree} writes it (no empty, `.` or `..` segments, no leading
 * slash, no backslash, no NUL). Checked to stay inside `root`, symlinks
 * included.
 *
 * @throws ValidationError naming the path when either part is refused.
 */
export function resolveDataFile(root: string, remoteDir: string, file: string): string {
  checkRelativePath(file);
  const dir = resolveDataPath(root, remoteDir);
  return checkInside(resolve(root), join(dir, ...file.split("/")), `${remoteDir}/${file}`);
}

/** Throws unless `file` is a clean relative POSIX path (the form file lists and uploads use). */
export function checkRelativePath(file: string): void {
  if (typeof file !== "string" || file === "") throw new ValidationError(`a file path must be a non-empty string, got ${JSON.stringify(file)}`);
  const bad =
    file.includes("\0") ||
    file.includes("\\") ||
    file.startsWith("/") ||
    file.split("/").some((segment) => segment === "" || segment === "." || segment === "..");
  if (bad) throw new ValidationError(`file path ${JSON.stringify(file)} must be relative, with "/" between names and no empty, "." or ".." parts`);
}

/**
 * Returns `candidate` when it is `base` or below it, both lexically and after
 * resolving symlinks; throws otherwise. `shown` is the path as the caller
 * wrote it, for the message.
 * @internal
 */
export function checkInside(base: string, candidate: string, shown: string): string {
  if (!within(base, candidate)) throw new ValidationError(`data path ${JSON.stringify(shown)} leaves the data root ${base}`);
  // A symlink anywhere between the root and the candidate could point out; compare real paths.
  const realBase = realpathDeep(base, shown);
  const realCandidate = realpathDeep(candidate, shown);
  if (!within(realBase, realCandidate)) throw new ValidationError(`data path ${JSON.stringify(shown)} leaves the data root ${base} through a symlink`);
  return candidate;
}

function within(base: string, candidate: string): boolean {
  const rel = relative(base, candidate);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** The real path of the deepest existing ancestor of `path` (itself included), with the rest appended. */
function realpathDeep(path: string, shown: string): string {
  const rest: string[] = [];
  let current = path;
  for (;;) {
    try {
      return join(realpathSync.native(current), ...rest.reverse());
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
      // realpath fails on a dangling symlink too; lstat tells it from a missing entry. Where it
      // points can change, so such a link is refused rather than guessed at.
      if (code === "ENOENT" && existsAsLink(current)) {
        throw new ValidationError(`data path ${JSON.stringify(shown)} goes through ${current}, a symlink to nothing`);
      }
    }
    const parent = dirname(current);
    if (parent === current) return path;
    rest.push(basename(current));
    current = parent;
  }
}

function existsAsLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
