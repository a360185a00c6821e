import fs from "node:fs";
import { callNative, loadAddon, type NativeAddon } from "../devices/addon.js";
import { NativeError } from "../errors.js";

/** Where POSIX shared memory lives on Linux. */
export const SHM_DIR = "/dev/shm";

/** The addon, when it loads and was built with the shared-memory functions. */
export function shmAddon(): NativeAddon | undefined {
  try {
    const addon = loadAddon();
    return typeof addon.shmCreate === "function" ? addon : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether {@link SharedSegment} can work here: the native addon is built with
 * shared-memory support and `/dev/shm` is a writable directory. Never throws.
 * @example if (shmAvailable()) seg = SharedSegment.create({ size: 1 << 20 });
 */
export function shmAvailable(): boolean {
  if (process.platform !== "linux" || shmAddon() === undefined) return false;
  try {
    fs.accessSync(SHM_DIR, fs.constants.W_OK);
    return fs.statSync(SHM_DIR).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Bytes still free in `dir` for an unprivileged process (`statvfs`).
 * @default dir "/dev/shm"
 * @throws {NativeError} with the errno name as `status` (`"ENOENT"`), or
 *   status `"MULTIRANK_ADDON_NOT_LOADED"`/`"MULTIRANK_SHM_UNSUPPORTED"` without the addon.
 */
export function shmFreeBytes(dir: string = SHM_DIR): number {
  if (shmAddon() === undefined) loadAddonWithShm();
  return callNative((addon) => addon.shmFreeBytes(dir));
}

/** The addon with shared-memory support. @throws {NativeError} when it is missing or too old. */
export function loadAddonWithShm(): NativeAddon {
  const addon = loadAddon(); // throws MULTIRANK_ADDON_NOT_LOADED itself
  if (typeof addon.shmCreate !== "function") {
    throw new NativeError("the loaded multirank addon has no shared-memory support (rebuild it with `npm run build:native`)", {
      status: "MULTIRANK_SHM_UNSUPPORTED",
    });
  }
  return addon;
}
