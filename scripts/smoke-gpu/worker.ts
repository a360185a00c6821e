/**
 * The GPU smoke test's worker (scripts/smoke-gpu/main.ts): each rank measures
 * itself (the device its CUDA context is on, its CPU affinity, the CPUs local
 * to its device, a vector add on its context) and rank 0 returns everyone's
 * report. Measurements that throw are reported, not thrown, so one broken
 * rank shows as its own FAILED rows instead of hiding the others.
 */
import { DistributedWorker, cudaVectorAddCheck, currentCudaDevice, getCpuAffinity, listDevices } from "multirank";
import { measure, type RankReport, type SmokeInput } from "./report.js";

/** Invoked once by the smoke test; rank 0 resolves with every rank's {@link RankReport}, the others with `undefined`. */
export default class SmokeGpuWorker extends DistributedWorker<SmokeInput, RankReport[] | undefined> {
  override async call(input: SmokeInput): Promise<RankReport[] | undefined> {
    const context = measure(() => currentCudaDevice());
    const report: RankReport = {
      rank: this.rank,
      pid: process.pid,
      context,
      affinity: measure(() => getCpuAffinity()),
      localCpus: measure(() => {
        // Looked up by the context's UUID, not the plan's: the question is where this rank really is.
        if ("error" in context) throw new Error("no device: the rank has no current CUDA context");
        const device = listDevices().find((d) => d.uuid === context.uuid);
        if (!device) throw new Error(`discovery in the rank does not list ${context.uuid}`);
        return { source: device.cpuSource ?? "none", cpus: device.cpus };
      }),
      vectorAdd: measure(() => cudaVectorAddCheck(input.n)),
    };
    return this.group.gather(report, 0);
  }
}
