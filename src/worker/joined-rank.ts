import type { Logger } from "pino";
import { NativeError } from "../errors.js";
import { pinCurrentProcess, planDevices, setParentDeathSignal, type RankDevicePlan, type WorkerDevice } from "../devices/index.js";
import { chooseHostAddr } from "../collectives/host.js";
import { findFreePort } from "../util/free-port.js";
import type { RankPlacement } from "./launcher-env.js";

/*
 * What a rank that joins a runner (`multirank rank`, started by mpirun, srun,
 * Kubernetes or torchrun) does for itself that the runner does for the ranks
 * it spawns: pick its device, and (rank 0) find where the process group meets.
 */

/**
 * Pins this process to its host's device for its local rank, as the runner
 * pins the ranks it spawns: the plan is the runner's own (`planDevices`,
 * "auto") over the ranks of this host, so local rank r gets GPU r and its
 * local cores, or on a host without CUDA the r-th share of the cores. The
 * parent-death signal ties the rank to the launcher's process that started it.
 * @throws {ValidationError} more local ranks than this host has GPUs.
 */
export function pinLocalRank(placement: RankPlacement, logger: Logger): WorkerDevice {
  try {
    setParentDeathSignal("SIGKILL");
  } catch (error) {
    logger.debug({ err: error }, "parent-death signal unavailable");
  }
  let plans: RankDevicePlan[];
  try {
    plans = planDevices("auto", placement.localWorldSize);
  } catch (error) {
    // Without a usable addon or driver the rank still runs, on its share of the cores.
    if (!(error instanceof NativeError)) throw error;
    logger.warn({ err: error }, "device discovery failed; the rank runs on the CPU");
    plans = planDevices("cpu", placement.localWorldSize);
  }
  const plan = { ...plans[placement.localRank]!, rank: placement.rank };
  // Read once by OpenMP runtimes a worker may load later; a launcher's own setting wins.
  if (plan.cpus.length > 0) process.env.OMP_NUM_THREADS ??= String(plan.cpus.length);
  return pinCurrentProcess(plan);
}

/**
 * Where rank 0 offers the process group's rendezvous: the address its peers
 * on other hosts dial, chosen as the group chooses its own
 * (`chooseHostAddr` with the runner as the master: `MULTIRANK_HOST_ADDR`,
 * else the local address of the route to the runner, else the first
 * external IPv4 address), and a port free on it now.
 */
export async function groupMeetingPoint(runnerEndpoint: string, env: NodeJS.ProcessEnv = process.env): Promise<{ masterAddr: string; masterPort: number }> {
  const runner = /^tcp:\/\/\[?([^\]]+?)\]?:(\d+)$/.exec(runnerEndpoint);
  const chosen = await chooseHostAddr({ env, masterAddr: runner?.[1] ?? "127.0.0.1", masterPort: Number(runner?.[2] ?? 0) });
  // Nothing better than the runner's own address: that is not ours to bind.
  const masterAddr = chosen.source === "masterAddr" ? "127.0.0.1" : chosen.address;
  return { masterAddr, masterPort: await findFreePort(masterAddr) };
}
