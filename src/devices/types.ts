/** Shapes shared by device discovery, planning and pinning. */

/** Where {@link CudaDeviceInfo.cpus} came from: NVML, sysfs `local_cpulist`, or neither. */
export type CpuLocalitySource = "nvml" | "sysfs" | "none";

/** One CUDA device as the driver reports it, in driver ordinal order. */
export interface CudaDeviceInfo {
  /** CUDA ordinal in this process (after any `CUDA_VISIBLE_DEVICES`). */
  index: number;
  /** Marketing name, e.g. `"NVIDIA H100 80GB HBM3"`. */
  name: string;
  /** `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as `nvidia-smi -L` prints it. */
  uuid: string;
  /** PCI address in sysfs/lspci form, lower case: `"0000:3b:00.0"`. */
  pciBusId: string;
  /** Device memory in bytes. */
  totalMemory: number;
  /** `[major, minor]`, e.g. `[9, 0]` for Hopper. */
  computeCapability: [number, number];
  /** CPU cores local to the device (its NUMA node); `[]` when unknown. */
  cpus: number[];
  /** Where `cpus` came from. Absent on hand-written device lists. */
  cpuSource?: CpuLocalitySource;
}

/**
 * What a rank was pinned to, as `worker.device` reports it. `index` is the
 * runner's ordinal for the device; `localIndex` is the ordinal inside the rank,
 * which differs when `isolateDevices` sets `CUDA_VISIBLE_DEVICES` (then it is 0).
 */
export type WorkerDevice =
  | {
      kind: "cuda";
      index: number;
      localIndex: number;
      uuid: string;
      name: string;
      pciBusId: string;
      totalMemory: number;
      computeCapability: [number, number];
      cpus: number[];
    }
  | { kind: "cpu"; cpus: number[] };

/**
 * Which devices the ranks use: `"auto"` (every rank on its own CUDA device when
 * there are any, else CPU), `"cpu"`, or one entry per rank: a CUDA index, a
 * device UUID (or a unique prefix of one), or `"cpu"`.
 */
export type DeviceSelection = "auto" | "cpu" | ReadonlyArray<number | string>;

/** The runner's decision for one rank; travels to the rank in `MULTIRANK_DEVICE_PLAN`. */
export interface RankDevicePlan {
  rank: number;
  device: { kind: "cuda"; index: number; uuid: string } | { kind: "cpu" };
  /** Cores the rank is pinned to; `OMP_NUM_THREADS` is their count. */
  cpus: number[];
  /** Whether the rank's `CUDA_VISIBLE_DEVICES` hides every other device. */
  isolate: boolean;
}

/** The result of {@link cudaAvailability}. */
export type CudaAvailability =
  | { available: true; driverVersion: number; deviceCount: number; library: string }
  | { available: false; reason: string; status?: string };
