/**
 * `syncDir`: put a local directory into a host's data root, sending only the
 * files whose content the host does not already hold. On the local host it is
 * a copy; on a server it is two HTTP steps (plan, then one upload per needed
 * file) against the routes of `data-routes.ts`.
 */
import { createReadStream } from "node:fs";
import { lstat, mkdir, readdir, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { Readable } from "node:stream";
import { AbortError, ValidationError } from "../errors.js";
import { httpBaseUrl } from "../util/http-url.js";
import { DataSyncError } from "./data-errors.js";
import { hashFile, targetMatches, writeFileAtomic } from "./data-files.js";
import { checkRelativePath, dataRoot, resolveDataFile, resolveDataPath } from "./data-root.js";

/** One regular file of a tree: its path relative to the tree (POSIX), size, SHA-256 (hex) and permission bits. */
export interface TreeEntry {
  path: string;
  size: number;
  sha256: string;
  mode: number;
}

/** An entry {@link hashTree} did not take, and why: sockets, FIFOs and devices have no content to copy; a dangling symlink points nowhere. */
export interface SpecialEntry {
  path: string;
  kind: "socket" | "fifo" | "block-device" | "character-device" | "dangling-symlink";
}

/** The files of a tree, sorted by path, with the entries that were left out in `special`. */
export type TreeManifest = TreeEntry[] & { readonly special: readonly SpecialEntry[] };

/**
 * Lists and hashes every regular file under `localDir`. Symlinks are followed
 * when they point inside `localDir` (a link to a directory is walked as a
 * directory); one that points outside is refused, and so is a link loop.
 * Nothing is skipped silently: sockets, FIFOs, devices and dangling links
 * are listed in the result's `special`.
 *
 * @throws ValidationError when `localDir` is not a directory, or a symlink leaves it or loops.
 * @throws AbortError when `signal` aborts.
 */
export async function hashTree(localDir: string, options: { signal?: AbortSignal } = {}): Promise<TreeManifest> {
  return abortable(options.signal, "hashTree", () => listTree(localDir, options.signal));
}

async function listTree(localDir: string, signal: AbortSignal | undefined): Promise<TreeManifest> {
  if (typeof localDir !== "string" || localDir === "") throw new ValidationError("localDir must be a non-empty path");
  let realRoot: string;
  try {
    realRoot = await realpath(localDir);
    if (!(await stat(realRoot)).isDirectory()) throw new ValidationError(`localDir ${localDir} is not a directory`);
  } catch (error) {
    if (error instanceof ValidationError) throw error;
    throw new ValidationError(`localDir ${localDir} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const files: TreeEntry[] = [];
  const special: SpecialEntry[] = [];

  const walk = async (realDir: string, prefix: string, open: ReadonlySet<string>): Promise<void> => {
    const entries = (await readdir(realDir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      signal?.throwIfAborted();
      const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      let full = join(realDir, entry.name);
      let stats = await lstat(full);
      if (stats.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(full);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT") {
            special.push({ path: rel, kind: "dangling-symlink" });
            continue;
          }
          if (code === "ELOOP") throw new ValidationError(`localDir ${localDir} holds ${rel}, a symlink loop`, { cause: error });
          throw error;
        }
        if (!inside(realRoot, target)) throw new ValidationError(`localDir ${localDir} holds ${rel}, a symlink to ${target} outside it`);
        full = target;
        stats = await stat(target);
      }
      if (stats.isDirectory()) {
        if (open.has(full)) throw new ValidationError(`localDir ${localDir} holds ${rel}, a symlink back to a directory above it (a loop)`);
        await walk(full, rel, new Set([...open, full]));
      } else if (stats.isFile()) {
        const { sha256, size } = await hashFile(full, signal);
        files.push({ path: rel, size, sha256, mode: stats.mode & 0o777 });
      } else {
        special.push({ path: rel, kind: specialKind(stats) });
      }
    }
  };
  await walk(realRoot, "", new Set([realRoot]));
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return Object.assign(files, { special: Object.freeze(special) });
}

/** What {@link syncDir} did. Files in the target that `localDir` lacks are left alone (nothing is removed). */
export interface SyncDirResult {
  /** The directory on the host: an absolute path there (what `dataPath(remoteDir)` answers on that host). */
  path: string;
  /** Files written, relative POSIX paths. */
  uploaded: string[];
  /** Files the host already held with the same content and mode. */
  skipped: string[];
  /** Entries of `localDir` that were not files (sockets, FIFOs, devices, dangling links), not sent. */
  special: SpecialEntry[];
}

/** Options of {@link syncDirLocal}. */
export interface SyncDirLocalOptions {
  /** The data root to write under. @default dataRoot() */
  root?: string;
  signal?: AbortSignal;
}

/**
 * Copies `localDir` into `resolveDataPath(root, remoteDir)` on this machine.
 * A file whose target already has the same size, SHA-256 and mode is
 * skipped (the target is hashed, so no side manifest can go stale); every
 * other file is written to a temporary name and renamed into place.
 *
 * @throws ValidationError when `remoteDir` or a file path leaves the root, or a symlink in `localDir` leaves it.
 * @throws AbortError when `signal` aborts; files already renamed stay.
 */
export async function syncDirLocal(localDir: string, remoteDir: string, options: SyncDirLocalOptions = {}): Promise<SyncDirResult> {
  const root = options.root ?? dataRoot();
  if (typeof root !== "string" || !isAbsolute(root)) throw new ValidationError(`options.root must be an absolute path, got ${JSON.stringify(root)}`);
  const { signal } = options;
  return abortable(signal, "syncDir", async () => {
    // Refuse a bad target before reading a byte of the source.
    const target = resolveDataPath(root, remoteDir);
    const tree = await hashTree(localDir, signal ? { signal } : {});
    const destinations = tree.map((entry) => resolveDataFile(root, remoteDir, entry.path));
    await mkdir(target, { recursive: true });
    const uploaded: string[] = [];
    const skipped: string[] = [];
    for (const [index, entry] of tree.entries()) {
      signal?.throwIfAborted();
      const dest = destinations[index]!;
      if (await targetMatches(dest, entry, signal)) {
        skipped.push(entry.path);
        continue;
      }
      await mkdir(dirname(dest), { recursive: true });
      // Re-check once the directories exist: mkdir follows no links, but one could have been there.
      resolveDataFile(root, remoteDir, entry.path);
      await writeFileAtomic(dest, createReadStream(join(localDir, ...entry.path.split("/"))), { mode: entry.mode, ...(signal ? { signal } : {}) });
      uploaded.push(entry.path);
    }
    return { path: target, uploaded, skipped, special: [...tree.special] };
  });
}

/** A server's data endpoint: its base URL and an admin key (`multirank serve --admin-key`). */
export interface RemoteDataHost {
  /** Base URL of the server, `http(s)://host:port`. */
  url: string;
  /** The admin key, sent as `Authorization: Key <adminKey>`; omit only for a loopback server without one. */
  adminKey?: string;
}

/** Options of {@link syncDirRemote}. */
export interface SyncDirRemoteOptions extends RemoteDataHost {
  signal?: AbortSignal;
  /** The fetch to use. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * Sends `localDir` to a server's data root: `POST /fn/data/plan` with the
 * file list (the server answers which files it lacks), then one streamed
 * `PUT /fn/data/file` per needed file, which the server verifies against the
 * SHA-256 before renaming it into place.
 *
 * @throws DataSyncError when the server refuses a step (`status` and `remoteCode` say why) or cannot be reached.
 * @throws ValidationError for bad options or a symlink in `localDir` that leaves it.
 * @throws AbortError when `signal` aborts.
 */
export async function syncDirRemote(localDir: string, remoteDir: string, options: SyncDirRemoteOptions): Promise<SyncDirResult> {
  const base = httpBaseUrl(options?.url, "options.url");
  if (options.adminKey !== undefined && (typeof options.adminKey !== "string" || options.adminKey === "" || /\s/.test(options.adminKey))) {
    throw new ValidationError("options.adminKey must be a non-empty string without spaces");
  }
  if (typeof remoteDir !== "string" || remoteDir === "") throw new ValidationError("remoteDir must be a non-empty path");
  const doFetch = options.fetch ?? globalThis.fetch;
  const { signal } = options;
  const headers: Record<string, string> = options.adminKey === undefined ? {} : { authorization: `Key ${options.adminKey}` };
  return abortable(signal, "syncDir", async () => {
    const tree = await hashTree(localDir, signal ? { signal } : {});
    // The server refuses such names too, but only after the plan; refuse them before anything is sent.
    for (const entry of tree) checkRelativePath(entry.path);
    const plan = await request(doFetch, `${base}/fn/data/plan`, "plan", {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify({ remoteDir, files: tree.map(({ path, size, sha256, mode }) => ({ path, size, sha256, mode })) }),
      ...(signal ? { signal } : {}),
    });
    if (typeof plan !== "object" || plan === null || typeof plan.path !== "string" || !Array.isArray(plan.need)) {
      throw new DataSyncError(`the server at ${base} answered the plan with an unexpected body`);
    }
    const need = new Set(plan.need as unknown[]);
    const uploaded: string[] = [];
    const skipped: string[] = [];
    for (const entry of tree) {
      signal?.throwIfAborted();
      if (!need.has(entry.path)) {
        skipped.push(entry.path);
        continue;
      }
      const query = new URLSearchParams({ remoteDir, path: entry.path, sha256: entry.sha256, size: String(entry.size), mode: entry.mode.toString(8) });
      const file = join(localDir, ...entry.path.split("/"));
      await request(doFetch, `${base}/fn/data/file?${query}`, `upload of ${entry.path}`, {
        method: "PUT",
        headers: { ...headers, "content-type": "application/octet-stream" },
        // Streamed, never read whole: model files can be larger than memory.
        body: entry.size === 0 ? new Uint8Array(0) : (Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>),
        duplex: "half",
        ...(signal ? { signal } : {}),
      } as RequestInit);
      uploaded.push(entry.path);
    }
    return { path: plan.path, uploaded, skipped, special: [...tree.special] };
  });
}

/** Options of {@link syncDir}. */
export interface SyncDirOptions {
  /**
   * Where to send the directory: omitted, this machine's data root; a
   * {@link RemoteDataHost} `{ url, adminKey }`, that server's `--data-dir`.
   * @default the local host
   */
  host?: RemoteDataHost;
  /** Local host only: the data root. @default dataRoot() */
  root?: string;
  signal?: AbortSignal;
  /** Remote host only: the fetch to use. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * Uploads `localDir` to a host's data root under `remoteDir` (`/data/models`
 * or `models`), skipping files the host already holds with the same
 * SHA-256, and returns the path there. Inside a function,
 * `dataPath(remoteDir)` gives the same directory.
 *
 * @example
 * const { path } = await syncDir("./weights", "/data/models");                       // this machine
 * await syncDir("./weights", "/data/models", { host: { url, adminKey: "admin-1" } }); // a server
 * @throws ValidationError when `remoteDir` leaves the data root; DataSyncError when a server refuses.
 */
export async function syncDir(localDir: string, remoteDir: string, options: SyncDirOptions = {}): Promise<SyncDirResult> {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  const { host, root, signal } = options;
  if (host !== undefined) {
    if (typeof host !== "object" || host === null) throw new ValidationError("options.host must be { url, adminKey }");
    if (root !== undefined) throw new ValidationError("options.root applies to the local host only; a server writes under its own --data-dir");
    return syncDirRemote(localDir, remoteDir, {
      url: host.url,
      ...(host.adminKey !== undefined ? { adminKey: host.adminKey } : {}),
      ...(signal ? { signal } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  }
  return syncDirLocal(localDir, remoteDir, { ...(root !== undefined ? { root } : {}), ...(signal ? { signal } : {}) });
}

function inside(base: string, candidate: string): boolean {
  const rel = relative(base, candidate);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function specialKind(stats: import("node:fs").Stats): SpecialEntry["kind"] {
  if (stats.isSocket()) return "socket";
  if (stats.isFIFO()) return "fifo";
  if (stats.isBlockDevice()) return "block-device";
  return "character-device";
}


// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function request(doFetch: typeof fetch, url: string, what: string, init: RequestInit): Promise<any> {
  let response: Response;
  try {
    response = await doFetch(url, init);
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new DataSyncError(`the ${what} could not reach ${new URL(url).origin}: ${(error as Error).message}`, { cause: error });
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const fields = (typeof body === "object" && body !== null ? body : {}) as { error?: unknown; message?: unknown; detail?: unknown; code?: unknown };
    const reason = [fields.detail, fields.message, fields.error].find((v) => typeof v === "string") ?? (text.slice(0, 200) || response.statusText);
    throw new DataSyncError(`the server at ${new URL(url).origin} refused the ${what}: HTTP ${response.status}: ${String(reason)}`, {
      status: response.status,
      ...(typeof fields.code === "string" ? { remoteCode: fields.code } : {}),
    });
  }
  return body;
}

/** Runs `body`, turning any failure after `signal` aborted into an {@link AbortError} with the signal's reason as cause. */
async function abortable<T>(signal: AbortSignal | undefined, what: string, body: () => Promise<T>): Promise<T> {
  try {
    signal?.throwIfAborted();
    return await body();
  } catch (error) {
    if (signal?.aborted && !(error instanceof AbortError)) throw new AbortError(`${what} was aborted`, { cause: signal.reason });
    throw error;
  }
}
