import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import type { ProcessGroup } from "../collectives/index.js";
import { pinCurrentProcess, planFromEnv, setParentDeathSignal, type WorkerDevice } from "../devices/index.js";
import type { GroupRendezvous } from "../transport/messages.js";
import type { RankEnv } from "./rank-env.js";

/**
 * Pins this rank before any user code loads: the parent-death signal first
 * (so nothing after it can orphan us), then device and CPU affinity.
 */
export function pinRank(logger: Logger): WorkerDevice {
  try {
    setParentDeathSignal("SIGKILL");
  } catch (error) {
    logger.debug({ err: error }, "parent-death signal unavailable; relying on the death pipe");
  }
  const plan = planFromEnv();
  if (!plan) return { kind: "cpu", cpus: Array.from({ length: availableParallelism() }, (_, i) => i) };
  return pinCurrentProcess(plan);
}

/**
 * Joins the process group with the runner's secret (no sockets for a world of
 * one): at MASTER_ADDR:MASTER_PORT for a spawned rank, or where `rendezvous`
 * (the runner's `setup`, in attach mode) says, since there the runner could
 * not know an address all hosts reach before rank 0 reported one.
 */
export async function createRankGroup(env: RankEnv, logger: Logger, rendezvous?: GroupRendezvous): Promise<ProcessGroup> {
  // Loaded here, not with the runtime: the collectives are most of the rank's code, and a
  // bundled rank of a world of one then never compiles them (see scripts/bundle-rank.mjs).
  const { createProcessGroup } = await import("../collectives/index.js");
  return createProcessGroup({
    rank: env.rank,
    size: env.worldSize,
    masterAddr: rendezvous?.masterAddr ?? env.masterAddr,
    masterPort: rendezvous?.masterPort ?? env.masterPort,
    secret: rendezvous?.secret ?? env.groupSecret,
    // The runner's own ranks meet on its host; joined ranks where the runner's setup says.
    ...(rendezvous === undefined && env.rendezvousSocket !== undefined ? { rendezvousSocket: env.rendezvousSocket } : {}),
    logger: logger.child({ component: "group" }),
  });
}
