/**
 * Per-rank limits an app or a remote function may ask for: `memory` (GiB per
 * rank) and `cpu` (cores per rank). One validator for both front doors
 * (`defineApp` and `remote()`), so their messages and bounds agree.
 */
import { ValidationError } from "../errors.js";
import { MIN_MEMORY_LIMIT_MIB } from "../runner/options.js";

/**
 * Checks a `memory` option (GiB per rank) and returns it in whole MiB, as the
 * runner's `memoryLimitMiB` takes it.
 * @throws {ValidationError} naming `field` unless it is a finite number of GiB of at least 1/16 (64 MiB).
 * @example memoryToMiB(0.5, "options.memory") // 512
 */
export function memoryToMiB(value: unknown, field: string): number {
  const mib = typeof value === "number" && Number.isFinite(value) ? Math.round(value * 1024) : Number.NaN;
  if (!(mib >= MIN_MEMORY_LIMIT_MIB)) {
    throw new ValidationError(`${field} must be a number of GiB per rank of at least ${MIN_MEMORY_LIMIT_MIB / 1024} (${MIN_MEMORY_LIMIT_MIB} MiB); got ${String(value)}`);
  }
  return mib;
}

/**
 * Checks a `cpu` option (cores per rank).
 * @throws {ValidationError} naming `field` unless it is an integer of at least 1.
 */
export function checkCpuCount(value: unknown, field: string): number {
  if (!Number.isInteger(value) || (value as number) < 1) throw new ValidationError(`${field} must be a whole number of cores per rank, at least 1; got ${String(value)}`);
  return value as number;
}
