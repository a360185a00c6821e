import { createSocket } from "node:dgram";
import { createServer, isIP } from "node:net";
import { networkInterfaces } from "node:os";
import type { Logger } from "pino";
import { NativeError } from "../errors.js";
import { pinCurrentProcess, planDevices, setParentDeathSignal, type RankDevicePlan, type WorkerDevice } from "../devices/index.js";
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
 * Where rank 0 offers the process group's rendezvous: `MULTIRANK_HOST_ADDR`
 * when set, else the local address this host uses toward the runner's (the
 * interface the other hosts most likely reach too), else the first external
 * IPv4 address; and a port free on it now.
 */
export async function groupMeetingPoint(runnerEndpoint: string, env: NodeJS.ProcessEnv = process.env): Promise<{ masterAddr: string; masterPort: number }> {
  const masterAddr = env.MULTIRANK_HOST_ADDR || (await localAddressToward(runnerEndpoint)) || firstExternalIPv4() || "127.0.0.1";
  return { masterAddr, masterPort: await freePort(masterAddr) };
}

/** The local address the kernel routes `tcp://host:port` through: a connected UDP socket sends nothing. */
async function localAddressToward(endpoint: string): Promise<string | undefined> {
  const m = /^tcp:\/\/\[?([^\]]+?)\]?:(\d+)$/.exec(endpoint);
  if (!m) return undefined;
  const [, host, port] = m;
  const socket = createSocket(isIP(host!) === 6 ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(Number(port), host, () => resolve());
    });
    return socket.address().address;
  } catch {
    return undefined;
  } finally {
    socket.close();
  }
}

function firstExternalIPv4(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === "IPv4" && !address.internal) return address.address;
  }
  return undefined;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
