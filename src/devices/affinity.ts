/** CPU affinity of the current process, through the native addon. */
import { availableParallelism } from "node:os";
import { ValidationError } from "../errors.js";
import { callNative } from "./addon.js";

/**
 * Pins the whole process (every thread, including libuv's pool) to `cpus`.
 *
 * @throws {ValidationError} when `cpus` is empty or holds anything but
 *   integers from 0 to 65535.
 * @throws {NativeError} status `"EINVAL"` when none of the CPUs is usable
 *   (offline or outside the container's cpuset), or when the addon is not built.
 * @example setCpuAffinity([0, 1]);
 */
export function setCpuAffinity(cpus: readonly number[]): void {
  if (!Array.isArray(cpus) || cpus.length === 0) throw new ValidationError("cpus must be a non-empty array of CPU numbers");
  cpus.forEach((cpu, i) => {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu > 65535) {
      throw new ValidationError(`cpus[${i}] must be an integer from 0 to 65535, got ${String(cpu)}`);
    }
  });
  callNative((addon) => addon.setCpuAffinity(cpus));
}

/**
 * The CPUs the calling thread may run on, ascending.
 *
 * @throws {NativeError} when the addon is not built.
 * @example getCpuAffinity(); // [0, 1]
 */
export function getCpuAffinity(): number[] {
  return callNative((addon) => addon.getCpuAffinity());
}

/**
 * The cores ranks may be spread over: this process's affinity, or
 * `0..availableParallelism()-1` when the addon cannot be loaded (planning
 * must still work where pinning cannot).
 */
export function defaultAllowedCpus(): number[] {
  try {
    return getCpuAffinity();
  } catch {
    return Array.from({ length: availableParallelism() }, (_, i) => i);
  }
}
