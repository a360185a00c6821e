/** CUDA device discovery through the native addon's dlopen()ed driver. */
import { NativeError } from "../errors.js";
import { callNative, loadAddon, toMultirankError, type NativeDeviceInfo } from "./addon.js";
import type { CudaAvailability, CudaDeviceInfo } from "./types.js";

/**
 * Whether CUDA can be used in this process, and if not, why. Never throws: a
 * missing addon, a missing `libcuda.so.1`, a driver lacking a symbol, and a
 * failing `cuInit` all come back as `{ available: false, reason, status }`.
 * The driver is opened and initialised once per process; the answer is fixed
 * after the first call.
 *
 * The library is `MULTIRANK_CUDA_LIBRARY`, else `MULTIRANK_FAKE_DRIVER`, else
 * `libcuda.so.1`.
 *
 * @example
 * const cuda = cudaAvailability();
 * if (!cuda.available) log.info(`running on CPU: ${cuda.reason}`);
 */
export function cudaAvailability(): CudaAvailability {
  let native;
  try {
    native = loadAddon().cudaAvailability();
  } catch (error) {
    const status = error instanceof NativeError ? error.status : undefined;
    return { available: false, reason: error instanceof Error ? error.message : String(error), ...(status ? { status } : {}) };
  }
  if (native.available) {
    return { available: true, driverVersion: native.driverVersion, deviceCount: native.deviceCount, library: native.library };
  }
  return { available: false, reason: native.reason, status: native.status };
}

function toDeviceInfo(device: NativeDeviceInfo): CudaDeviceInfo {
  return {
    index: device.index,
    name: device.name,
    uuid: device.uuid,
    pciBusId: device.pciBusId,
    totalMemory: device.totalMemory,
    computeCapability: [device.computeCapability[0], device.computeCapability[1]],
    cpus: device.cpus,
    cpuSource: device.cpuSource,
  };
}

/**
 * Every CUDA device this process can see, in ordinal order, with the CPU
 * cores local to each (NVML's affinity, else sysfs `local_cpulist`, else `[]`).
 *
 * Returns `[]` when no CUDA driver is installed (`libcuda.so.1` cannot be
 * opened): that is a CPU-only machine, not an error. Blocks while the driver
 * initialises (seconds on a cold GPU); prefer {@link listDevicesAsync} on a
 * busy event loop.
 *
 * @throws {NativeError} when the driver is installed but unusable: `status` is
 *   the CUDA status (`"CUDA_ERROR_NO_DEVICE"` from `cuInit`, ...) or
 *   `"MULTIRANK_SYMBOL_NOT_FOUND"` for a driver lacking an entry point; also
 *   `"MULTIRANK_ADDON_NOT_LOADED"` when the addon is not built.
 * @example
 * for (const d of listDevices()) console.log(d.index, d.name, d.cpus);
 */
export function listDevices(): CudaDeviceInfo[] {
  return callNative((addon) => addon.listDevices(true)).map(toDeviceInfo);
}

/**
 * {@link listDevices} on a libuv pool thread, so the event loop keeps running
 * while the driver initialises. Same result and errors, as a promise.
 */
export async function listDevicesAsync(): Promise<CudaDeviceInfo[]> {
  try {
    return (await loadAddon().listDevicesAsync(true)).map(toDeviceInfo);
  } catch (error) {
    throw toMultirankError(error);
  }
}
