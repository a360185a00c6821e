/** Deciding, in the runner, which device and cores each rank gets. */
import { ValidationError } from "../errors.js";
import { defaultAllowedCpus } from "./affinity.js";
import { splitCpus } from "./cpu-list.js";
import { cudaAvailability, listDevices } from "./discovery.js";
import type { CudaDeviceInfo, DeviceSelection, RankDevicePlan } from "./types.js";

/** Options for {@link planDevices}. */
export interface PlanDevicesOptions {
  /**
   * Give each rank a `CUDA_VISIBLE_DEVICES` naming only its own device. Off by
   * default because it stops peer-to-peer access between the ranks' GPUs.
   * @default false
   */
  isolateDevices?: boolean;
  /**
   * The CUDA devices to plan over, as {@link listDevices} returns them.
   * @default listDevices() when the selection needs CUDA devices (discovery)
   */
  devices?: readonly CudaDeviceInfo[];
  /**
   * The cores ranks may use; a device's local cores are intersected with them.
   * @default this process's CPU affinity ({@link getCpuAffinity})
   */
  allowedCpus?: readonly number[];
  /**
   * Cores each rank gets, exactly. A CUDA rank takes them from its device's
   * local cores when there are enough, else from the allowed cores; ranks
   * drawing on the same cores get consecutive runs of them, wrapping around
   * (so they share cores) when the ranks need more than there are.
   * @default unset: the cores are split evenly among the ranks
   */
  cpusPerRank?: number;
}

type RankDevice = RankDevicePlan["device"];

/**
 * Maps rank r to a device and a set of cores. Pure when `options.devices` and
 * `options.allowedCpus` are given; otherwise it discovers them.
 *
 * - `"auto"`: rank r gets CUDA device r when CUDA is available, else CPU.
 *   Asking for more ranks than devices is an error, not silent sharing.
 * - `"cpu"`: every rank on CPU.
 * - a list: entry r is rank r's device: an index, a UUID (or unique prefix),
 *   or `"cpu"`. It must have exactly `worldSize` entries.
 *
 * Cores: a CUDA rank gets its device's local cores (its NUMA node), split
 * evenly among the ranks whose devices share those cores, so eight ranks on a
 * two-socket box do not all run OMP thread pools over the same socket. A rank
 * whose device has no known locality, and every CPU rank, shares the allowed
 * cores the same way: 2 ranks on 2 cores get one each; with more ranks than
 * cores, cores are handed out round robin.
 *
 * With `options.cpusPerRank`, every rank gets exactly that many cores instead.
 *
 * @throws {ValidationError} naming the field: `worldSize`, `options.devices[2]`
 *   (no such index/UUID), `options.allowedCpus`, more ranks than devices, or
 *   `options.cpusPerRank` above the number of allowed cores.
 * @throws {NativeError} when discovery is needed and the driver is installed but failing.
 * @example
 * planDevices("auto", 2, { devices: [], allowedCpus: [0, 1] });
 * // [{ rank: 0, device: { kind: "cpu" }, cpus: [0], isolate: false },
 * //  { rank: 1, device: { kind: "cpu" }, cpus: [1], isolate: false }]
 */
export function planDevices(selection: DeviceSelection, worldSize: number, options: PlanDevicesOptions = {}): RankDevicePlan[] {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new ValidationError(`worldSize must be a positive integer, got ${String(worldSize)}`);
  }
  const isolate = options.isolateDevices ?? false;
  if (typeof isolate !== "boolean") throw new ValidationError("options.isolateDevices must be a boolean");
  const allowedCpus = validateAllowedCpus(options.allowedCpus ?? defaultAllowedCpus());
  const perRank = options.cpusPerRank;
  if (perRank !== undefined) {
    if (!Number.isInteger(perRank) || perRank < 1) throw new ValidationError(`options.cpusPerRank must be a positive integer, got ${String(perRank)}`);
    if (perRank > allowedCpus.length) {
      throw new ValidationError(`options.cpusPerRank is ${perRank} but this process may use only ${allowedCpus.length} core${allowedCpus.length === 1 ? "" : "s"} (${allowedCpus.join(",")})`);
    }
  }
  const needsCuda = selection === "auto" || (Array.isArray(selection) && selection.some((entry) => entry !== "cpu"));
  const inventory = needsCuda ? discover(options.devices) : { devices: [], why: "" };
  const rankDevices = chooseDevices(selection, worldSize, inventory);
  const cpus = assignCpus(rankDevices, inventory.devices, allowedCpus, perRank);
  return rankDevices.map((device, rank) => ({ rank, device, cpus: cpus[rank]!, isolate }));
}

function validateAllowedCpus(cpus: readonly number[]): number[] {
  if (!Array.isArray(cpus) || cpus.length === 0) {
    throw new ValidationError("options.allowedCpus must be a non-empty array of CPU numbers");
  }
  cpus.forEach((cpu, i) => {
    if (!Number.isInteger(cpu) || cpu < 0) {
      throw new ValidationError(`options.allowedCpus[${i}] must be a non-negative integer, got ${String(cpu)}`);
    }
  });
  return [...new Set(cpus)].sort((a, b) => a - b);
}

interface Inventory {
  devices: readonly CudaDeviceInfo[];
  /** Why `devices` is empty, for error messages. */
  why: string;
}

/** The given devices, or the discovered ones with the reason when there are none. */
function discover(given: readonly CudaDeviceInfo[] | undefined): Inventory {
  if (given) return { devices: given, why: "the device list given to planDevices is empty" };
  const cuda = cudaAvailability();
  if (!cuda.available) return { devices: [], why: cuda.reason };
  return { devices: listDevices(), why: "the driver reports none" };
}

function chooseDevices(selection: DeviceSelection, worldSize: number, { devices, why }: Inventory): RankDevice[] {
  const cpu = (): RankDevice => ({ kind: "cpu" });
  if (selection === "cpu") return Array.from({ length: worldSize }, cpu);
  if (selection === "auto") {
    if (devices.length === 0) return Array.from({ length: worldSize }, cpu);
    if (worldSize > devices.length) {
      throw new ValidationError(
        `worldSize is ${worldSize} but only ${devices.length} CUDA device(s) are visible; lower worldSize, ` +
          `list devices explicitly (options.devices) to share GPUs, or use devices: "cpu"`,
      );
    }
    return devices.slice(0, worldSize).map((d) => ({ kind: "cuda", index: d.index, uuid: d.uuid }));
  }
  if (!Array.isArray(selection)) {
    throw new ValidationError('options.devices must be "auto", "cpu" or an array of device indices, UUIDs or "cpu"');
  }
  if (selection.length !== worldSize) {
    throw new ValidationError(`options.devices has ${selection.length} entries but worldSize is ${worldSize}; give one per rank`);
  }
  return selection.map((entry, i): RankDevice => {
    const field = `options.devices[${i}]`;
    if (entry === "cpu") return cpu();
    if (typeof entry === "number") {
      if (!Number.isInteger(entry) || entry < 0) throw new ValidationError(`${field} must be a non-negative integer, got ${entry}`);
      const device = devices.find((d) => d.index === entry);
      if (!device) {
        throw new ValidationError(
          devices.length === 0
            ? `${field} asks for CUDA device ${entry} but no CUDA device is available (${why})`
            : `${field} asks for CUDA device ${entry} but only ${devices.length} exist (indices 0-${devices.length - 1})`,
        );
      }
      return { kind: "cuda", index: device.index, uuid: device.uuid };
    }
    if (typeof entry === "string" && entry.length > 0) {
      const matches = devices.filter((d) => d.uuid === entry || d.uuid.startsWith(entry));
      if (matches.length !== 1) {
        throw new ValidationError(
          matches.length === 0
            ? `${field} is "${entry}", which names no CUDA device${devices.length === 0 ? ` (${why})` : ""}`
            : `${field} is "${entry}", which matches ${matches.length} devices; give more of the UUID`,
        );
      }
      return { kind: "cuda", index: matches[0]!.index, uuid: matches[0]!.uuid };
    }
    throw new ValidationError(`${field} must be a device index, a device UUID or "cpu", got ${JSON.stringify(entry)}`);
  });
}

function assignCpus(rankDevices: readonly RankDevice[], devices: readonly CudaDeviceInfo[], allowed: readonly number[], perRank: number | undefined): number[][] {
  const allowedSet = new Set(allowed);
  const localCpus = (device: RankDevice): number[] => {
    if (device.kind !== "cuda") return [];
    const info = devices.find((d) => d.uuid === device.uuid);
    return [...new Set(info?.cpus ?? [])].filter((cpu) => allowedSet.has(cpu)).sort((a, b) => a - b);
  };
  // Group ranks by the core pool they draw from, then split each pool evenly.
  const groups = new Map<string, { pool: number[]; ranks: number[] }>();
  rankDevices.forEach((device, rank) => {
    const local = localCpus(device);
    const pool = local.length > 0 && local.length >= (perRank ?? 1) ? local : [...allowed];
    const key = pool.join(",");
    const group = groups.get(key) ?? { pool, ranks: [] };
    group.ranks.push(rank);
    groups.set(key, group);
  });
  const out: number[][] = new Array(rankDevices.length);
  for (const { pool, ranks } of groups.values()) {
    const parts = perRank === undefined ? splitCpus(pool, ranks.length) : takeCpus(pool, ranks.length, perRank);
    ranks.forEach((rank, i) => (out[rank] = parts[i]!));
  }
  return out;
}

/** `parts` runs of `size` consecutive cores of `pool` (size <= pool.length), wrapping around when they need more than the pool holds. */
function takeCpus(pool: readonly number[], parts: number, size: number): number[][] {
  return Array.from({ length: parts }, (_, part) => Array.from({ length: size }, (_, i) => pool[(part * size + i) % pool.length]!).sort((a, b) => a - b));
}
