/**
 * Deployment artifacts as gzipped tar archives: written deterministically
 * (sorted entries, zero times and owners, fixed modes, so the same files give
 * the same bytes) and read defensively (regular files and folders only, no
 * path that leaves the root, bounded in size and count).
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { ArtifactError } from "../errors.js";

/** One file in an archive. */
export interface TarFile {
  /** Relative POSIX path, no `..`, no leading `/`. */
  path: string;
  data: Buffer;
  /** @default 0o644 */
  mode?: number;
}

/** Limits of {@link readTarGz}. */
export interface TarLimits {
  /** Most bytes once decompressed. @default 1 GiB */
  maxBytes?: number;
  /** Most entries. @default 10000 */
  maxEntries?: number;
}

const BLOCK = 512;

/** Writes `files` as a gzipped tar, byte for byte the same for the same files. @throws {ArtifactError} for an unsafe or too long path. */
export function writeTarGz(files: readonly TarFile[]): Buffer {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const blocks: Buffer[] = [];
  const seen = new Set<string>();
  for (const file of sorted) {
    checkPath(file.path);
    if (seen.has(file.path)) throw new ArtifactError(`two files are named ${file.path}`, file.path);
    seen.add(file.path);
    blocks.push(header(file.path, file.data.length, file.mode ?? 0o644));
    blocks.push(file.data);
    const pad = (BLOCK - (file.data.length % BLOCK)) % BLOCK;
    if (pad > 0) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(BLOCK * 2));
  // gzip's header holds no time or name when zlib writes it: deterministic.
  return gzipSync(Buffer.concat(blocks), { level: 9 });
}

/**
 * Reads a gzipped tar into its files.
 * @throws {ArtifactError} naming the entry: a link, a device, a path that escapes the root, too many bytes or entries, a corrupt archive.
 */
export function readTarGz(archive: Buffer, limits: TarLimits = {}): Map<string, Buffer> {
  const maxBytes = limits.maxBytes ?? 1024 ** 3;
  const maxEntries = limits.maxEntries ?? 10_000;
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: maxBytes });
  } catch (error) {
    const tooBig = (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" || /maxOutputLength|too large/i.test((error as Error).message);
    throw new ArtifactError(tooBig ? `the artifact is over ${maxBytes} bytes once decompressed` : `the artifact is not a gzipped tar: ${(error as Error).message}`, undefined, { cause: error });
  }
  if (tar.length < BLOCK * 2 || tar.length % BLOCK !== 0) throw new ArtifactError(`the artifact is not a tar archive (${tar.length} bytes, not whole ${BLOCK}-byte blocks)`);
  const files = new Map<string, Buffer>();
  let entries = 0;
  for (let offset = 0; offset + BLOCK <= tar.length; ) {
    const head = tar.subarray(offset, offset + BLOCK);
    if (head.every((byte) => byte === 0)) break;
    if (++entries > maxEntries) throw new ArtifactError(`the artifact has more than ${maxEntries} entries`);
    if (!checksumMatches(head)) throw new ArtifactError(`the artifact is corrupt: a header checksum does not match at byte ${offset}`);
    const name = text(head, 0, 100);
    const prefix = text(head, 345, 155);
    // `tar -C dir .` writes `./name`: the same file as `name`.
    const path = (prefix ? `${prefix}/${name}` : name).replace(/^(\.\/)+/, "");
    const size = Number.parseInt(text(head, 124, 12) || "0", 8);
    const type = String.fromCharCode(head[156]!);
    if (!Number.isSafeInteger(size) || size < 0) throw new ArtifactError(`entry ${path} has a bad size`, path);
    const start = offset + BLOCK;
    if (start + size > tar.length) throw new ArtifactError(`entry ${path} runs past the end of the archive`, path);
    if (type === "0" || type === "\0") {
      checkPath(path);
      if (files.has(path)) throw new ArtifactError(`the artifact holds ${path} twice`, path);
      files.set(path, Buffer.from(tar.subarray(start, start + size)));
    } else if (type === "5") {
      const dir = path.replace(/\/$/, "");
      if (dir !== "" && dir !== ".") checkPath(dir);
    } else {
      const kind = type === "2" ? `a symlink to ${text(head, 157, 100)}` : type === "1" ? `a hard link to ${text(head, 157, 100)}` : `an entry of type ${JSON.stringify(type)}`;
      throw new ArtifactError(`entry ${path} is ${kind}; an artifact holds regular files only`, path);
    }
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
  }
  return files;
}

function checkPath(path: string): void {
  const bad =
    path === "" ||
    path.startsWith("/") ||
    path.includes("\\") ||
    path.includes("\0") ||
    /^[A-Za-z]:/.test(path) ||
    path.split("/").some((part) => part === ".." || part === "." || part === "");
  if (bad) throw new ArtifactError(`entry ${JSON.stringify(path)} escapes the artifact's root (absolute, empty or .. parts)`, path);
}

function header(path: string, size: number, mode: number): Buffer {
  const head = Buffer.alloc(BLOCK);
  let name = path;
  let prefix = "";
  if (Buffer.byteLength(path) > 100) {
    const cut = path.lastIndexOf("/", 155);
    if (cut <= 0 || Buffer.byteLength(path.slice(cut + 1)) > 100) throw new ArtifactError(`path ${path} is too long for the archive`, path);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
  }
  head.write(name, 0, 100, "utf8");
  octal(head, 100, 8, mode);
  octal(head, 108, 8, 0);
  octal(head, 116, 8, 0);
  octal(head, 124, 12, size);
  octal(head, 136, 12, 0);
  head.fill(0x20, 148, 156); // the checksum counts itself as spaces
  head.write("0", 156);
  head.write("ustar\u000000", 257, 8, "binary");
  head.write(prefix, 345, 155, "utf8");
  octal(head, 148, 8, sum(head));
  return head;
}

function octal(buffer: Buffer, offset: number, length: number, value: number): void {
  buffer.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length, "ascii");
}

function sum(head: Buffer): number {
  let total = 0;
  for (const byte of head) total += byte;
  return total;
}

function checksumMatches(head: Buffer): boolean {
  const stored = Number.parseInt(text(head, 148, 8) || "0", 8);
  const copy = Buffer.from(head);
  copy.fill(0x20, 148, 156);
  return sum(copy) === stored;
}

function text(buffer: Buffer, offset: number, length: number): string {
  const slice = buffer.subarray(offset, offset + length);
  const end = slice.indexOf(0);
  return slice.subarray(0, end === -1 ? length : end).toString("utf8").trim();
}
