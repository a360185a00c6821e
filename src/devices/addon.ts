/**
 * Loading the native addon, once per process, and the typed shape of what it
 * exports. Every call into the addon goes through {@link callNative}, which
 * turns the addon's coded errors into {@link NativeError} / {@link ValidationError}.
 */
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeError, ValidationError } from "../errors.js";
import type { CpuLocalitySource } from "./types.js";

/** One device as the addon returns it. */
export interface NativeDeviceInfo {
  index: number;
  name: string;
  uuid: string;
  pciBusId: string;
  totalMemory: number;
  computeCapability: [number, number];
  cpus: number[];
  cpuSource: CpuLocalitySource;
}

/** `cudaAvailability()` as the addon returns it. */
export type NativeCudaAvailability =
  | { available: true; library: string; driverVersion: number; deviceCount: number }
  | { available: false; library: string; reason: string; status: string; libraryMissing: boolean };

/** `cudaCurrentDevice()` as the addon returns it: the current context's device. */
export interface NativeCurrentDevice {
  index: number;
  uuid: string;
}

/** `cudaVectorAddCheck(n)` as the addon returns it (`VectorAddCheck` in the public API). */
export interface NativeVectorAddCheck {
  /** Whether every element of `c` equals the host's `a[i] + b[i]` exactly. */
  ok: boolean;
  /** Elements added. */
  n: number;
  /** Largest `|c[i] - (a[i] + b[i])|`; `Infinity` when an element is NaN (never written). */
  maxError: number;
  /** The device it ran on: CUDA ordinal in this process. */
  index: number;
  /** The device it ran on: UUID. */
  uuid: string;
  /** Wall time from the first allocation to the last free, module JIT included. */
  ms: number;
}

/** What `build/Release/multirank.node` exports (registered in native/addon.cc). */
export interface NativeAddon {
  readonly napiVersion: number;
  cudaAvailability(): NativeCudaAvailability;
  listDevices(withCpus?: boolean): NativeDeviceInfo[];
  listDevicesAsync(withCpus?: boolean): Promise<NativeDeviceInfo[]>;
  makeDeviceCurrent(index: number): void;
  // Kernels on the current context (native/cuda_kernel.h; typed face in kernel-check.ts).
  cudaCurrentDevice(): NativeCurrentDevice;
  cudaVectorAddCheck(n: number): NativeVectorAddCheck;
  cudaVecAddPtx(): string;
  setCpuAffinity(cpus: readonly number[]): void;
  getCpuAffinity(): number[];
  setParentDeathSignal(signal: number, expectedParentPid: number): boolean;
  getParentDeathSignal(): number;
  // Shared memory (native/shared_memory.h; typed face in src/shm/).
  shmCreate(name: string, size: number): ArrayBuffer;
  shmOpen(name: string, readOnly?: boolean): ArrayBuffer;
  shmRemap(buffer: ArrayBuffer, name: string): void;
  shmUnlink(name: string): void;
  shmClose(buffer: ArrayBuffer): boolean;
  shmFreeBytes(dir?: string): number;
  // The reduction kernel of the shared-memory all-reduce (native/reduce_kernel.h).
  reduceArrays<A extends Float32Array | Float64Array | Int32Array>(acc: A, sources: readonly A[], op: "sum" | "avg" | "prod" | "min" | "max"): void;
}

// src/devices/addon.ts and dist/devices/addon.js are both two levels below the
// package root, so one relative path serves the sources and the build.
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

let cached: { addon: NativeAddon } | { error: NativeError } | undefined;

/**
 * The path {@link loadAddon} loads: `MULTIRANK_ADDON_PATH` when set, else
 * `<package>/build/Release/multirank.node` (what `npm run build:native` writes).
 */
export function addonPath(): string {
  return process.env.MULTIRANK_ADDON_PATH || resolve(packageRoot, "build", "Release", "multirank.node");
}

/**
 * Loads the addon the first time and returns the same object afterwards.
 * A failure is cached as well, so a broken binary is reported the same way
 * every time without retrying `dlopen`.
 *
 * @throws {NativeError} status `"MULTIRANK_ADDON_NOT_LOADED"` when the binary
 *   is missing or cannot be loaded; the message names the path tried.
 * @example
 * const addon = loadAddon();
 * addon.getCpuAffinity(); // [0, 1]
 */
export function loadAddon(): NativeAddon {
  if (cached === undefined) {
    const path = addonPath();
    try {
      const required: unknown = createRequire(import.meta.url)(path);
      if (typeof required !== "object" || required === null || typeof (required as NativeAddon).listDevices !== "function") {
        throw new TypeError("the file does not export the multirank addon's functions");
      }
      cached = { addon: required as NativeAddon };
    } catch (error) {
      const detail = error instanceof Error ? error.message.split("\n")[0] : String(error);
      cached = {
        error: new NativeError(`cannot load the multirank native addon from ${path}: ${detail} (run \`npm run build:native\`)`, {
          status: "MULTIRANK_ADDON_NOT_LOADED",
          cause: error,
        }),
      };
    }
  }
  if ("error" in cached) throw cached.error;
  return cached.addon;
}

/**
 * Runs `fn` (a call into the addon) and rebuilds its errors: the addon throws
 * plain `Error`s carrying `code` and `status`; callers get our classes.
 */
export function callNative<T>(fn: (addon: NativeAddon) => T): T {
  const addon = loadAddon();
  try {
    return fn(addon);
  } catch (error) {
    throw toMultirankError(error);
  }
}

/** The same conversion for a rejected promise from the addon. */
export function toMultirankError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const { code, status } = error as Error & { code?: unknown; status?: unknown };
  if (code === "MULTIRANK_ERR_NATIVE") {
    return new NativeError(error.message, { cause: error, ...(typeof status === "string" ? { status } : {}) });
  }
  if (code === "MULTIRANK_ERR_INVALID_ARGUMENT") return new ValidationError(error.message, { cause: error });
  return error;
}
