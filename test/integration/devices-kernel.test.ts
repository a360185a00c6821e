// The vector add on the current context (cudaVectorAddCheck) and the current
// context's device, against the fake driver, which computes on the host; and
// the embedded PTX against a real ptxas where one is installed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";
import { killAll, probeEnv, requireBuiltAddon, runProbe } from "../fixtures/devices/spawn-probe.js";
import type { CurrentCudaDevice, VectorAddCheck } from "../../src/devices/index.js";

let fake: FakeDriver;

beforeAll(() => {
  requireBuiltAddon();
  fake = buildFakeDriver();
});
afterEach(() => killAll());
afterAll(() => fake?.remove());

const uuid = (physical: number): string => `GPU-fa4e0000-0000-4000-8000-00000000000${physical}`;
const withFake = (extra: Record<string, string> = {}) => probeEnv({ MULTIRANK_FAKE_DRIVER: fake.path, ...extra });
type Ran = { check: VectorAddCheck; current: CurrentCudaDevice };

describe("cudaVectorAddCheck on the fake driver", () => {
  it("adds on the device made current, and reports that device", async () => {
    // CUDA_VISIBLE_DEVICES renumbers: ordinal 1 here is physical device 2.
    const result = await runProbe<Ran>("vectorAdd", withFake({ CUDA_VISIBLE_DEVICES: "3,2" }), "1,5000");
    if (!result.ok) throw new Error(result.error.message);
    expect(result.value.current).toEqual({ index: 1, uuid: uuid(2) });
    expect(result.value.check).toMatchObject({ ok: true, n: 5000, maxError: 0, index: 1, uuid: uuid(2) });
    expect(result.value.check.ms).toBeGreaterThanOrEqual(0);
  });

  it("reports a wrong result as ok: false with the error", async () => {
    const result = await runProbe<Ran>("vectorAdd", withFake({ FAKE_CUDA_KERNEL_WRONG: "1" }), "0,1000");
    expect(result).toMatchObject({ ok: true, value: { check: { ok: false, maxError: 1, uuid: uuid(0) } } });
  });

  it("throws a NativeError naming the call that failed, with the CUDA status", async () => {
    for (const call of ["cuModuleLoadData", "cuLaunchKernel", "cuMemcpyDtoH_v2"]) {
      const result = await runProbe("vectorAdd", withFake({ FAKE_CUDA_FAIL_CALL: call }), "3,1000");
      expect(result).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_LAUNCH_FAILED" } });
      expect(!result.ok && result.error.message).toBe(`${call} failed on device 3 (${uuid(3)}): CUDA_ERROR_LAUNCH_FAILED`);
    }
  });

  it("needs a current context", async () => {
    const result = await runProbe("currentDevice", withFake());
    expect(result).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_INVALID_CONTEXT" } });
    expect(await runProbe("vectorAdd", withFake(), "-,10")).toMatchObject({ ok: false, error: { status: "CUDA_ERROR_INVALID_CONTEXT" } });
  });

  it("rejects an n out of range before touching the driver", async () => {
    expect(await runProbe("vectorAdd", withFake(), "0,0")).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_INVALID_ARGUMENT" } });
  });

  it("says CUDA is unavailable without a driver", async () => {
    const noCuda = probeEnv({ MULTIRANK_CUDA_LIBRARY: join(tmpdir(), "multirank-no-such-libcuda.so.1") });
    expect(await runProbe("vectorAdd", noCuda, "-,10")).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "MULTIRANK_LIBRARY_NOT_FOUND" } });
  });
});

/** ptxas on PATH, if any: CUDA toolkits and CI images with one check the PTX for real. */
function hasPtxas(): boolean {
  try {
    execFileSync("ptxas", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("the embedded PTX", () => {
  it("declares vecAdd for an old target every driver JIT-compiles", async () => {
    const result = await runProbe<string>("vecAddPtx", probeEnv({}));
    if (!result.ok) throw new Error(result.error.message);
    expect(result.value).toMatch(/^\.version 6\.0\n\.target sm_52\n/);
    expect(result.value).toContain(".visible .entry vecAdd(");
  });

  it.skipIf(!hasPtxas())("assembles with ptxas for Turing and Hopper", async () => {
    const result = await runProbe<string>("vecAddPtx", probeEnv({}));
    if (!result.ok) throw new Error(result.error.message);
    const dir = mkdtempSync(join(tmpdir(), "multirank-ptx-"));
    try {
      writeFileSync(join(dir, "vecadd.ptx"), result.value);
      for (const arch of ["sm_75", "sm_90"]) {
        execFileSync("ptxas", [`-arch=${arch}`, "-o", join(dir, `${arch}.cubin`), join(dir, "vecadd.ptx")], { stdio: "pipe" });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
