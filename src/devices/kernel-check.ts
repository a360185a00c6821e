/**
 * Proof that a process computes on the GPU it holds a context on: the device
 * of the current context, and a vector add from PTX embedded in the addon
 * (native/cuda_kernel.cc). The GPU smoke test (`npm run smoke:gpu`) runs both
 * in every rank.
 */
import { NativeError, ValidationError } from "../errors.js";
import { addonPath, callNative, type NativeAddon, type NativeVectorAddCheck } from "./addon.js";

/** The device the calling thread's current CUDA context is on. */
export interface CurrentCudaDevice {
  /** CUDA ordinal in this process (after any `CUDA_VISIBLE_DEVICES`). */
  index: number;
  /** `GPU-xxxxxxxx-…`, as `listDevices()` reports it. */
  uuid: string;
}

/** The result of {@link cudaVectorAddCheck} (the addon's own object, documented there). */
export type VectorAddCheck = NativeVectorAddCheck;

/** The largest `n` {@link cudaVectorAddCheck} takes (64 MiB per buffer). */
export const VECTOR_ADD_MAX_ELEMENTS = 1 << 24;

/** The addon, after checking it is new enough to have `name` (an old build would fail with a bare TypeError). */
function kernelCall<T>(name: "cudaCurrentDevice" | "cudaVectorAddCheck" | "cudaVecAddPtx", fn: (addon: NativeAddon) => T): T {
  return callNative((addon) => {
    if (typeof (addon as Partial<NativeAddon>)[name] !== "function") {
      throw new NativeError(`the multirank addon at ${addonPath()} has no ${name}: it predates it (run \`npm run build:native\`)`, {
        status: "MULTIRANK_ADDON_NOT_LOADED",
      });
    }
    return fn(addon);
  });
}

/**
 * The device of this thread's current CUDA context (`cuCtxGetCurrent`,
 * `cuCtxGetDevice`, `cuDeviceGetUuid`). In a rank on a CUDA device that is the
 * device the runner planned for it, made current before the worker loaded.
 *
 * @throws {NativeError} status `"CUDA_ERROR_INVALID_CONTEXT"` when no context is
 *   current (a CPU rank, or a process never pinned), the driver's status when
 *   CUDA is unavailable, `"MULTIRANK_SYMBOL_NOT_FOUND"` for a driver lacking a
 *   kernel entry point.
 * @example
 * currentCudaDevice(); // { index: 1, uuid: "GPU-8f6c…" }
 */
export function currentCudaDevice(): CurrentCudaDevice {
  const { index, uuid } = kernelCall("cudaCurrentDevice", (addon) => addon.cudaCurrentDevice());
  return { index, uuid };
}

/**
 * Adds two vectors of `n` floats on the current context's device, through the
 * CUDA driver API (module load of embedded PTX, allocate, copy, launch,
 * synchronize, copy back, free), and compares the result with the host's.
 * Blocks the event loop while it runs (milliseconds; the first call in a
 * process also JIT-compiles the PTX).
 *
 * @param n elements, an integer from 1 to {@link VECTOR_ADD_MAX_ELEMENTS}. @default 1048576
 * @returns `ok: false` with `maxError` when the numbers are wrong; failing
 *   calls throw instead.
 * @throws {ValidationError} when `n` is out of range.
 * @throws {NativeError} naming the failing call (`"cuLaunchKernel failed on device 1 (GPU-…): CUDA_ERROR_LAUNCH_FAILED"`),
 *   with the CUDA status as `status`; the same errors as {@link currentCudaDevice}.
 * @example
 * const check = cudaVectorAddCheck(1 << 20);
 * if (!check.ok) throw new Error(`GPU ${check.uuid} added wrong: max error ${check.maxError}`);
 */
export function cudaVectorAddCheck(n = 1 << 20): VectorAddCheck {
  if (!Number.isInteger(n) || n < 1 || n > VECTOR_ADD_MAX_ELEMENTS) {
    throw new ValidationError(`n must be an integer from 1 to ${VECTOR_ADD_MAX_ELEMENTS}, got ${String(n)}`);
  }
  const { ok, maxError, index, uuid, ms } = kernelCall("cudaVectorAddCheck", (addon) => addon.cudaVectorAddCheck(n));
  return { ok, n, maxError, index, uuid, ms };
}

/** The PTX text {@link cudaVectorAddCheck} loads (for checking it with `ptxas`). */
export function vectorAddPtx(): string {
  return kernelCall("cudaVecAddPtx", (addon) => addon.cudaVecAddPtx());
}
