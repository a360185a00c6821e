import { describe, expect, it } from "vitest";
import { exitCodeFor, formatTable, measure, rankRows, type RankReport, type SmokeRow } from "../../scripts/smoke-gpu/report.js";

const uuid = (i: number): string => `GPU-${i}`;

function report(rank: number, over: Partial<RankReport> = {}): RankReport {
  return {
    rank,
    pid: 100 + rank,
    context: { index: rank, uuid: uuid(rank) },
    affinity: [rank],
    localCpus: { source: "nvml", cpus: [rank, rank + 10] },
    vectorAdd: { ok: true, n: 16, maxError: 0, index: rank, uuid: uuid(rank), ms: 1.5 },
    ...over,
  };
}

const statuses = (rows: SmokeRow[], check: string): string[] => rows.filter((r) => r.check === check).map((r) => r.status);
const allowed = [0, 1, 10, 11];

describe("smoke:gpu rank rows", () => {
  it("passes ranks on their planned, distinct devices, pinned near them, adding exactly", () => {
    const rows = rankRows([report(0), report(1)], [uuid(0), uuid(1)], allowed);
    expect(rows.map((r) => `${r.check}/${r.target}/${r.status}`)).toEqual([
      "device context/rank 0/ok",
      "cpu affinity/rank 0/ok",
      "vector add/rank 0/ok",
      "device context/rank 1/ok",
      "cpu affinity/rank 1/ok",
      "vector add/rank 1/ok",
    ]);
    expect(exitCodeFor(rows)).toBe(0);
  });

  it("fails a rank whose context is not on its planned device, and ranks sharing one", () => {
    const swapped = rankRows([report(0), report(1)], [uuid(1), uuid(0)], allowed);
    expect(statuses(swapped, "device context")).toEqual(["FAILED", "FAILED"]);
    expect(swapped[0]!.detail).toBe("context on GPU-0 (ordinal 0), planned GPU-1");
    const shared = rankRows([report(0), report(1, { context: { index: 0, uuid: uuid(0) } })], [uuid(0), uuid(0)], allowed);
    expect(statuses(shared, "device context")).toEqual(["FAILED", "FAILED"]);
    expect(shared[0]!.detail).toBe("GPU-0 is also the context of rank 1");
  });

  it("fails affinity outside the local CPUs; skips it when they are unknown or not allowed here", () => {
    const outside = rankRows([report(0, { affinity: [0, 5] })], [uuid(0)], allowed);
    expect(statuses(outside, "cpu affinity")).toEqual(["FAILED"]);
    const unknown = rankRows([report(0, { localCpus: { source: "none", cpus: [] } })], [uuid(0)], allowed);
    expect(statuses(unknown, "cpu affinity")).toEqual(["skipped"]);
    const elsewhere = rankRows([report(0, { localCpus: { source: "nvml", cpus: [40, 41] } })], [uuid(0)], allowed);
    expect(statuses(elsewhere, "cpu affinity")).toEqual(["skipped"]);
    expect(exitCodeFor(elsewhere)).toBe(0);
  });

  it("fails a wrong sum, a thrown call and a kernel run on another device than the context's", () => {
    const wrong = rankRows([report(0, { vectorAdd: { ok: false, n: 16, maxError: Infinity, index: 0, uuid: uuid(0), ms: 1 } })], [uuid(0)], allowed);
    expect(wrong.find((r) => r.check === "vector add")).toMatchObject({ status: "FAILED", detail: expect.stringMatching(/^wrong result: max error Infinity/) });
    const thrown = rankRows([report(0, { vectorAdd: { error: "cuLaunchKernel failed on device 0 (GPU-0): CUDA_ERROR_LAUNCH_FAILED" } })], [uuid(0)], allowed);
    expect(thrown.find((r) => r.check === "vector add")).toMatchObject({ status: "FAILED", detail: expect.stringContaining("cuLaunchKernel") });
    const elsewhere = rankRows([report(0, { vectorAdd: { ok: true, n: 16, maxError: 0, index: 1, uuid: uuid(1), ms: 1 } })], [uuid(0)], allowed);
    expect(statuses(elsewhere, "vector add")).toEqual(["FAILED"]);
    expect(exitCodeFor(wrong)).toBe(1);
  });

  it("fails a rank that sent no report", () => {
    const rows = rankRows([report(0)], [uuid(0), uuid(1)], allowed);
    expect(rows.at(-1)).toEqual({ check: "device context", target: "rank 1", status: "FAILED", detail: "the rank sent no report" });
  });
});

describe("measure", () => {
  it("returns the value, or the error's message tagged with its status", () => {
    expect(measure(() => 3)).toBe(3);
    const native = Object.assign(new Error("no context"), { status: "CUDA_ERROR_INVALID_CONTEXT" });
    expect(measure(() => { throw native; })).toEqual({ error: "CUDA_ERROR_INVALID_CONTEXT: no context" });
    const named = Object.assign(new Error("cuLaunchKernel failed: CUDA_ERROR_LAUNCH_FAILED"), { status: "CUDA_ERROR_LAUNCH_FAILED" });
    expect(measure(() => { throw named; })).toEqual({ error: "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_FAILED" });
  });
});

describe("formatTable", () => {
  it("aligns the columns and ends with the counts", () => {
    const text = formatTable([
      { check: "driver", target: "-", status: "ok", detail: "CUDA 12.4" },
      { check: "vector add", target: "rank 0", status: "FAILED", detail: "wrong" },
      { check: "LLM app", target: "-", status: "skipped", detail: "later" },
    ]);
    expect(text).toBe(
      [
        "CHECK       TARGET  STATUS   DETAIL",
        "driver      -       ok       CUDA 12.4",
        "vector add  rank 0  FAILED   wrong",
        "LLM app     -       skipped  later",
        "1 ok, 1 failed, 1 skipped",
        "",
      ].join("\n"),
    );
  });
});
