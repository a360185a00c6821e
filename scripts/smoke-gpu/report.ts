/**
 * The GPU smoke test's checks and its table, as pure functions of what the
 * ranks reported (scripts/smoke-gpu/worker.ts) and what discovery planned, so
 * they are unit-tested without a GPU (test/unit/smoke-gpu-report.test.ts).
 */
import type { CudaDeviceInfo, VectorAddCheck } from "multirank";

/** A row's outcome. Only `FAILED` makes the smoke test exit non-zero. */
export type SmokeStatus = "ok" | "FAILED" | "skipped";

/** One line of the table: a check, what it ran on (`rank 2`, `gpu 0`, `-`), its outcome and why. */
export interface SmokeRow {
  check: string;
  target: string;
  status: SmokeStatus;
  detail: string;
}

/** What the smoke worker is invoked with. */
export interface SmokeInput {
  /** Elements of the vector add. */
  n: number;
}

/** A value a rank measured, or the message of the error measuring it threw. */
export type Measured<T> = T | { error: string };

/** What each rank measures in itself and sends to rank 0. */
export interface RankReport {
  rank: number;
  pid: number;
  /** The device of the rank's current CUDA context. */
  context: Measured<{ index: number; uuid: string }>;
  /** The rank's CPU affinity (sched_getaffinity). */
  affinity: Measured<number[]>;
  /** The CPUs local to the rank's device, as discovery (NVML, else sysfs) reports them in the rank. */
  localCpus: Measured<{ source: NonNullable<CudaDeviceInfo["cpuSource"]>; cpus: number[] }>;
  /** The vector add on the rank's current context. */
  vectorAdd: Measured<VectorAddCheck>;
}

/** Turns a thrown value into a {@link Measured} error, keeping a native error's status in view. */
export function measure<T>(fn: () => T): Measured<T> {
  try {
    return fn();
  } catch (error) {
    if (!(error instanceof Error)) return { error: String(error) };
    const status = (error as Error & { status?: unknown }).status;
    const code = (error as Error & { code?: unknown }).code;
    const tag = typeof status === "string" ? status : typeof code === "string" ? code : error.name;
    return { error: error.message.includes(tag) ? error.message : `${tag}: ${error.message}` };
  }
}

function failed<T extends object>(value: Measured<T>): value is { error: string } {
  return "error" in value;
}

const cpuText = (cpus: readonly number[]): string => (cpus.length === 0 ? "none" : cpus.join(","));

/**
 * Three rows per rank: `device context` (the UUID of the device the rank holds
 * its context on equals the one planned for it, `plannedUuids[rank]`, and no
 * two ranks share one), `cpu affinity` (within the device's local CPUs, when
 * discovery knew them and any of them is in `allowedCpus`) and `vector add`
 * (the kernel ran on that same device and added correctly). A rank missing
 * from `reports` gets a FAILED row.
 */
export function rankRows(reports: readonly RankReport[], plannedUuids: readonly string[], allowedCpus: readonly number[]): SmokeRow[] {
  const rows: SmokeRow[] = [];
  const owners = new Map<string, number[]>();
  for (const report of reports) {
    if (!failed(report.context)) owners.set(report.context.uuid, [...(owners.get(report.context.uuid) ?? []), report.rank]);
  }
  plannedUuids.forEach((planned, rank) => {
    const target = `rank ${rank}`;
    const report = reports.find((r) => r.rank === rank);
    if (!report) {
      rows.push({ check: "device context", target, status: "FAILED", detail: "the rank sent no report" });
      return;
    }
    rows.push(contextRow(report, planned, owners, target));
    rows.push(affinityRow(report, allowedCpus, target));
    rows.push(vectorAddRow(report, target));
  });
  return rows;
}

function contextRow(report: RankReport, planned: string, owners: ReadonlyMap<string, number[]>, target: string): SmokeRow {
  const check = "device context";
  if (failed(report.context)) return { check, target, status: "FAILED", detail: report.context.error };
  const { uuid, index } = report.context;
  if (uuid !== planned) return { check, target, status: "FAILED", detail: `context on ${uuid} (ordinal ${index}), planned ${planned}` };
  const sharing = (owners.get(uuid) ?? []).filter((rank) => rank !== report.rank);
  if (sharing.length > 0) return { check, target, status: "FAILED", detail: `${uuid} is also the context of rank ${sharing.join(", ")}` };
  return { check, target, status: "ok", detail: `${uuid} (ordinal ${index}), as planned, pid ${report.pid}` };
}

function affinityRow(report: RankReport, allowedCpus: readonly number[], target: string): SmokeRow {
  const check = "cpu affinity";
  if (failed(report.affinity)) return { check, target, status: "FAILED", detail: report.affinity.error };
  const affinity = report.affinity;
  if (failed(report.localCpus)) return { check, target, status: "FAILED", detail: `cpus ${cpuText(affinity)}; local CPUs: ${report.localCpus.error}` };
  const { source, cpus: local } = report.localCpus;
  if (source === "none" || local.length === 0) {
    return { check, target, status: "skipped", detail: `cpus ${cpuText(affinity)}; neither NVML nor sysfs reported the device's local CPUs` };
  }
  const allowed = new Set(allowedCpus);
  if (!local.some((cpu) => allowed.has(cpu))) {
    return {
      check,
      target,
      status: "skipped",
      detail: `cpus ${cpuText(affinity)}; the device's local CPUs (${source}: ${cpuText(local)}) are all outside the CPUs this process may use (${cpuText(allowedCpus)})`,
    };
  }
  const localSet = new Set(local);
  const outside = affinity.filter((cpu) => !localSet.has(cpu));
  if (affinity.length === 0 || outside.length > 0) {
    return { check, target, status: "FAILED", detail: `cpus ${cpuText(affinity)} are not within the device's local CPUs (${source}: ${cpuText(local)})` };
  }
  return { check, target, status: "ok", detail: `cpus ${cpuText(affinity)} within local CPUs (${source}: ${cpuText(local)})` };
}

function vectorAddRow(report: RankReport, target: string): SmokeRow {
  const check = "vector add";
  if (failed(report.vectorAdd)) return { check, target, status: "FAILED", detail: report.vectorAdd.error };
  const { ok, n, maxError, uuid, ms } = report.vectorAdd;
  const summary = `n=${n} on ${uuid} in ${ms.toFixed(2)} ms`;
  if (!ok) return { check, target, status: "FAILED", detail: `wrong result: max error ${maxError}, ${summary}` };
  if (!failed(report.context) && uuid !== report.context.uuid) {
    return { check, target, status: "FAILED", detail: `ran on ${uuid} but the rank's context is on ${report.context.uuid}` };
  }
  return { check, target, status: "ok", detail: `exact (max error 0), ${summary}` };
}

/** The exit code for a finished run: 1 when any row FAILED, else 0 (skipped rows do not fail). */
export function exitCodeFor(rows: readonly SmokeRow[]): number {
  return rows.some((row) => row.status === "FAILED") ? 1 : 0;
}

/**
 * The one table the smoke test prints: aligned columns CHECK, TARGET, STATUS,
 * DETAIL (the last unpadded), then a line counting each status.
 */
export function formatTable(rows: readonly SmokeRow[]): string {
  const header: SmokeRow = { check: "CHECK", target: "TARGET", status: "STATUS" as SmokeStatus, detail: "DETAIL" };
  const all = [header, ...rows];
  const width = (pick: (row: SmokeRow) => string): number => Math.max(...all.map((row) => pick(row).length));
  const [c, t, s] = [width((r) => r.check), width((r) => r.target), width((r) => r.status)];
  const lines = all.map((row) => `${row.check.padEnd(c)}  ${row.target.padEnd(t)}  ${row.status.padEnd(s)}  ${row.detail}`.trimEnd());
  const count = (status: SmokeStatus): number => rows.filter((row) => row.status === status).length;
  lines.push(`${count("ok")} ok, ${count("FAILED")} failed, ${count("skipped")} skipped`);
  return lines.join("\n") + "\n";
}
