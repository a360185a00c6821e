/**
 * The file steps both hosts share when they receive a synced directory:
 * "does the target already hold these bytes?" and "write these bytes
 * atomically". The local host calls them directly; a server calls them from
 * its data routes.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/** What a synced file should be: its size, content hash and (optionally) permission bits. */
export interface FileWant {
  size: number;
  sha256: string;
  /** Permission bits (`0o755`); undefined leaves the comparison and the target's bits alone. */
  mode?: number;
}

/** The SHA-256 (hex) and byte count of a file. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  await pipeline(
    createReadStream(path),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
      }
    },
    signal ? { signal } : {},
  );
  return { sha256: hash.digest("hex"), size };
}

/**
 * True when `path` is a regular file with `want`'s size, hash and (when
 * given) mode. A size mismatch answers without reading the file; a symlink or
 * directory never matches (the write replaces a link, and fails on a directory).
 */
export async function targetMatches(path: string, want: FileWant, signal?: AbortSignal): Promise<boolean> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return false;
    throw error;
  }
  if (!stats.isFile() || stats.size !== want.size) return false;
  if (want.mode !== undefined && (stats.mode & 0o777) !== want.mode) return false;
  return (await hashFile(path, signal)).sha256 === want.sha256;
}

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Permission bits of the written file. @default 0o644 */
  mode?: number;
  /** Refuse the write past this many bytes; `tooLarge` makes the error. */
  maxBytes?: number;
  tooLarge?: (limit: number) => Error;
  /** Called with what was written before it is renamed into place; throwing discards it. */
  verify?: (written: { sha256: string; size: number }) => void;
  signal?: AbortSignal;
}

/**
 * Streams `source` into a temporary file beside `dest` and renames it over
 * `dest`, so a reader sees the old file or the whole new one, never a part.
 * On any failure (the source errors, a limit, `verify` throws, an abort) the
 * temporary file is removed and `dest` is untouched. The parent directory
 * must exist.
 */
export async function writeFileAtomic(dest: string, source: Readable, options: AtomicWriteOptions = {}): Promise<{ sha256: string; size: number }> {
  // Short and fixed-length: a long target name plus a suffix could pass NAME_MAX.
  const temp = join(dirname(dest), `.multirank-${randomBytes(8).toString("hex")}.tmp`);
  const hash = createHash("sha256");
  let size = 0;
  const limit = options.maxBytes ?? Number.POSITIVE_INFINITY;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      if (size > limit) return done(options.tooLarge?.(limit) ?? new RangeError(`the file is over ${limit} bytes`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(temp, { flags: "wx", mode: 0o600 }), options.signal ? { signal: options.signal } : {});
    const written = { sha256: hash.digest("hex"), size };
    options.verify?.(written);
    await chmod(temp, options.mode ?? 0o644);
    await rename(temp, dest);
    return written;
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}
