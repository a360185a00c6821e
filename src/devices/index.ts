/**
 * Devices: CUDA discovery and pinning through the native addon, CPU affinity
 * and the parent-death signal. See docs/gpus.md.
 */
export type { CpuLocalitySource, CudaAvailability, CudaDeviceInfo, DeviceSelection, RankDevicePlan, WorkerDevice } from "./types.js";
export { addonPath, loadAddon, type NativeAddon, type NativeCudaAvailability, type NativeCurrentDevice, type NativeDeviceInfo, type NativeVectorAddCheck } from "./addon.js";
export { cudaAvailability, listDevices, listDevicesAsync } from "./discovery.js";
export { cudaVectorAddCheck, currentCudaDevice, vectorAddPtx, VECTOR_ADD_MAX_ELEMENTS, type CurrentCudaDevice, type VectorAddCheck } from "./kernel-check.js";
export { planDevices, type PlanDevicesOptions } from "./plan.js";
export { childEnvForPlan, pinCurrentProcess, planFromEnv, DEVICE_PLAN_ENV, PARENT_PID_ENV } from "./pin.js";
export { defaultAllowedCpus, getCpuAffinity, setCpuAffinity } from "./affinity.js";
export { getParentDeathSignal, setParentDeathSignal, type ParentDeathSignalOptions } from "./parent-death.js";
export { formatCpuList, parseCpuList, splitCpus } from "./cpu-list.js";
