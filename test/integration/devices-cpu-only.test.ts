// The CPU-only path on the real machine: no CUDA driver, ranks pinned to an
// even split of the allowed cores.
import { join } from "node:path";
import { tmpdir } from "node:os";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { childEnvForPlan, getCpuAffinity, planDevices, setCpuAffinity, type WorkerDevice } from "../../src/devices/index.js";
import { killAll, probeEnv, requireBuiltAddon, runProbe } from "../fixtures/devices/spawn-probe.js";

// Point at a library that cannot exist, so the test means "no CUDA" even on a GPU CI box.
const noCuda = () => probeEnv({ MULTIRANK_CUDA_LIBRARY: join(tmpdir(), "multirank-no-such-libcuda.so.1") });

beforeAll(() => requireBuiltAddon());
afterEach(() => killAll());

describe("without CUDA", () => {
  it("reports why CUDA is unavailable and lists no devices", async () => {
    const availability = await runProbe<{ available: boolean; reason: string; status: string }>("availability", noCuda());
    expect(availability).toMatchObject({ ok: true, value: { available: false, status: "MULTIRANK_LIBRARY_NOT_FOUND" } });
    expect(availability.ok && availability.value.reason).toMatch(/multirank-no-such-libcuda\.so\.1 not found/);
    expect(await runProbe("list", noCuda())).toEqual({ ok: true, value: [] });
  });

  it("pins each rank of a CPU plan to its share of the allowed cores", async () => {
    const allowed = getCpuAffinity();
    const plans = planDevices("cpu", 2, { allowedCpus: allowed });
    const results = await Promise.all(
      plans.map((plan) =>
        runProbe<{ device: WorkerDevice; affinity: number[]; procStatus: string; omp: string }>("pin", { ...noCuda(), ...childEnvForPlan(plan) }),
      ),
    );
    results.forEach((result, r) => {
      if (!result.ok) throw new Error(result.error.message);
      expect(result.value.device).toEqual({ kind: "cpu", cpus: plans[r]!.cpus });
      expect(result.value.affinity).toEqual(plans[r]!.cpus);
      expect(result.value.omp).toBe(String(plans[r]!.cpus.length));
    });
    if (allowed.length >= 2) {
      // Two ranks on two or more cores never share one.
      expect(results.every((r) => r.ok)).toBe(true);
      const [a, b] = results.map((r) => (r.ok ? r.value.affinity : []));
      expect(a!.filter((cpu) => b!.includes(cpu))).toEqual([]);
    }
  });
});

describe("affinity in this process", () => {
  it("round-trips setCpuAffinity/getCpuAffinity and restores the original mask", () => {
    const original = getCpuAffinity();
    try {
      setCpuAffinity([original[0]!]);
      expect(getCpuAffinity()).toEqual([original[0]]);
    } finally {
      setCpuAffinity(original);
    }
    expect(getCpuAffinity()).toEqual(original);
  });

  it("rejects bad input with codes, not crashes", () => {
    expect(() => setCpuAffinity([])).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    expect(() => setCpuAffinity([1.5])).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    // A CPU that cannot be in the mask: the kernel says EINVAL.
    expect(() => setCpuAffinity([65535])).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_NATIVE", status: "EINVAL" }));
  });
});
