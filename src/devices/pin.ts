/**
 * Pinning a rank: the runner turns a {@link RankDevicePlan} into environment
 * variables ({@link childEnvForPlan}); the rank reads the plan back
 * ({@link planFromEnv}) and applies it before loading user code
 * ({@link pinCurrentProcess}).
 */
import { NativeError, ValidationError } from "../errors.js";
import { setCpuAffinity } from "./affinity.js";
import { callNative } from "./addon.js";
import type { RankDevicePlan, WorkerDevice } from "./types.js";

/** The variable that carries a rank's plan, as JSON. */
export const DEVICE_PLAN_ENV = "MULTIRANK_DEVICE_PLAN";
/** The runner's pid, for the parent-death race check in {@link setParentDeathSignal}. */
export const PARENT_PID_ENV = "MULTIRANK_PARENT_PID";

/**
 * The environment the runner merges into rank `plan.rank`'s spawn env:
 * `MULTIRANK_DEVICE_PLAN` (the plan as JSON), `MULTIRANK_PARENT_PID` (this
 * process), `OMP_NUM_THREADS` (the rank's core count) and, when
 * `plan.isolate`, `CUDA_VISIBLE_DEVICES` (the device's UUID; empty for a CPU
 * rank, hiding every GPU). Set before spawn because CUDA and OpenMP read them
 * once, at start-up.
 *
 * @example
 * spawn(process.execPath, [rankMain], { env: { ...process.env, ...childEnvForPlan(plan) } });
 */
export function childEnvForPlan(plan: RankDevicePlan): Record<string, string> {
  const env: Record<string, string> = {
    [DEVICE_PLAN_ENV]: JSON.stringify(plan),
    [PARENT_PID_ENV]: String(process.pid),
  };
  if (plan.cpus.length > 0) env.OMP_NUM_THREADS = String(plan.cpus.length);
  if (plan.isolate) env.CUDA_VISIBLE_DEVICES = plan.device.kind === "cuda" ? plan.device.uuid : "";
  return env;
}

/**
 * Reads and checks the plan {@link childEnvForPlan} left in the environment.
 * Returns `undefined` when there is none (a rank started by hand).
 *
 * @throws {ValidationError} when `MULTIRANK_DEVICE_PLAN` is not a valid plan.
 */
export function planFromEnv(env: NodeJS.ProcessEnv = process.env): RankDevicePlan | undefined {
  const text = env[DEVICE_PLAN_ENV];
  if (text === undefined || text === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`${DEVICE_PLAN_ENV} is not JSON`, { cause: error });
  }
  return validatePlan(parsed, DEVICE_PLAN_ENV);
}

function validatePlan(value: unknown, where: string): RankDevicePlan {
  const bad = (what: string): never => {
    throw new ValidationError(`${where}: ${what}`);
  };
  if (typeof value !== "object" || value === null) return bad("must be an object");
  const plan = value as Record<string, unknown>;
  if (!Number.isInteger(plan.rank) || (plan.rank as number) < 0) bad("rank must be a non-negative integer");
  if (!Array.isArray(plan.cpus) || !plan.cpus.every((c) => Number.isInteger(c) && c >= 0)) bad("cpus must be an array of CPU numbers");
  if (typeof plan.isolate !== "boolean") bad("isolate must be a boolean");
  const device = plan.device as Record<string, unknown> | null | undefined;
  if (typeof device !== "object" || device === null) return bad("device must be an object");
  if (device.kind === "cuda") {
    if (!Number.isInteger(device.index) || (device.index as number) < 0) bad("device.index must be a non-negative integer");
    if (typeof device.uuid !== "string" || device.uuid === "") bad("device.uuid must be a UUID string");
  } else if (device.kind !== "cpu") {
    bad('device.kind must be "cuda" or "cpu"');
  }
  return value as RankDevicePlan;
}

/**
 * Applies `plan` to this process; a rank calls it before loading user code:
 * 1. a CUDA rank finds its device by UUID (robust to `CUDA_VISIBLE_DEVICES`
 *    renumbering), retains its primary context and makes it current, so CUDA
 *    libraries loaded later run on it;
 * 2. pins every thread to `plan.cpus` (skipped when empty);
 * 3. sets `process.env.OMP_NUM_THREADS` to the core count (OpenMP reads it
 *    when a native library first starts its pool, i.e. later).
 *
 * @returns what `worker.device` reports.
 * @throws {ValidationError} for a malformed plan.
 * @throws {NativeError} when CUDA is unavailable in this process (`status` is
 *   the driver's), the device is not visible (`"CUDA_ERROR_INVALID_DEVICE"`),
 *   making it current fails, or the cores cannot be used (`"EINVAL"`).
 * @example
 * const plan = planFromEnv();
 * const device = plan ? pinCurrentProcess(plan) : { kind: "cpu", cpus: getCpuAffinity() };
 */
export function pinCurrentProcess(plan: RankDevicePlan): WorkerDevice {
  validatePlan(plan, "plan");
  let device: WorkerDevice;
  if (plan.device.kind === "cuda") {
    const wanted = plan.device;
    const cuda = callNative((addon) => addon.cudaAvailability());
    if (!cuda.available) {
      throw new NativeError(`rank ${plan.rank} cannot use CUDA device ${wanted.index} (${wanted.uuid}): ${cuda.reason}`, {
        status: cuda.status,
      });
    }
    // Only the rank's own device is needed; skip NVML (withCpus = false).
    const local = callNative((addon) => addon.listDevices(false)).find((d) => d.uuid === wanted.uuid);
    if (!local) {
      throw new NativeError(
        `rank ${plan.rank}: CUDA device ${wanted.uuid} is not visible in this process ` +
          `(CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? "<unset>"})`,
        { status: "CUDA_ERROR_INVALID_DEVICE" },
      );
    }
    callNative((addon) => addon.makeDeviceCurrent(local.index));
    device = {
      kind: "cuda",
      index: wanted.index,
      localIndex: local.index,
      uuid: local.uuid,
      name: local.name,
      pciBusId: local.pciBusId,
      totalMemory: local.totalMemory,
      computeCapability: [local.computeCapability[0], local.computeCapability[1]],
      cpus: [...plan.cpus],
    };
  } else {
    device = { kind: "cpu", cpus: [...plan.cpus] };
  }
  if (plan.cpus.length > 0) {
    setCpuAffinity(plan.cpus);
    process.env.OMP_NUM_THREADS = String(plan.cpus.length);
  }
  return device;
}
