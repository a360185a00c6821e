// The addon's real dlopen, discovery and pinning path against the fake driver
// in test/fixtures/fake-driver. Each driver configuration runs in its own
// child process because the driver is opened once per process.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { childEnvForPlan, planDevices, type CudaDeviceInfo, type WorkerDevice } from "../../src/devices/index.js";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";
import { killAll, probeEnv, requireBuiltAddon, runProbe } from "../fixtures/devices/spawn-probe.js";

let fake: FakeDriver;
let scratch: string;
let allowed: number[];
let lowCpu: number;
let highCpu: number;

const uuid = (i: number) => `GPU-fa4e0000-0000-4000-8000-00000000000${i}`;

beforeAll(async () => {
  requireBuiltAddon();
  fake = buildFakeDriver();
  scratch = mkdtempSync(join(tmpdir(), "multirank-devices-test-"));
  const affinity = await runProbe<{ affinity: number[] }>("affinity", probeEnv({}));
  if (!affinity.ok) throw new Error(affinity.error.message);
  allowed = affinity.value.affinity;
  lowCpu = allowed[0]!;
  highCpu = allowed[allowed.length - 1]!;
});

afterEach(() => killAll());

afterAll(() => {
  killAll();
  fake?.remove();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Env for the full fake driver: devices 0,1 local to the lowest allowed core, 2,3 to the highest. */
const fakeEnv = (extra: Record<string, string | undefined> = {}) =>
  probeEnv({ MULTIRANK_FAKE_DRIVER: fake.path, FAKE_CUDA_DEVICE_CPUS: `${lowCpu};${lowCpu};${highCpu};${highCpu}`, ...extra });

describe("discovery", () => {
  it("lists the fake driver's four devices with names, UUIDs, PCI ids, memory, capability and NVML cpus", async () => {
    const availability = await runProbe("availability", fakeEnv());
    expect(availability).toEqual({ ok: true, value: { available: true, driverVersion: 12040, deviceCount: 4, library: fake.path } });

    const result = await runProbe<CudaDeviceInfo[]>("list", fakeEnv());
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value).toEqual(
      [0, 1, 2, 3].map((i) => ({
        index: i,
        name: `Fake Tesla F100 #${i}`,
        uuid: uuid(i),
        pciBusId: `0000:${(0x1a + 0x10 * i).toString(16)}:00.0`,
        totalMemory: (i === 3 ? 40 : 80) * 2 ** 30,
        computeCapability: [i === 3 ? 8 : 9, 0],
        cpus: [i < 2 ? lowCpu : highCpu],
        cpuSource: "nvml",
      })),
    );
  });

  it("gives the same list from the pool thread (listDevicesAsync)", async () => {
    const [sync, async] = await Promise.all([runProbe("list", fakeEnv()), runProbe("listAsync", fakeEnv())]);
    expect(async).toEqual(sync);
  });

  it("honours CUDA_VISIBLE_DEVICES like the driver (renumbered ordinals)", async () => {
    const result = await runProbe<CudaDeviceInfo[]>("list", fakeEnv({ CUDA_VISIBLE_DEVICES: "2,0" }));
    expect(result.ok && result.value.map((d) => [d.index, d.uuid])).toEqual([[0, uuid(2)], [1, uuid(0)]]);
  });

  it("falls back to sysfs local_cpulist when NVML is missing", async () => {
    const sysfs = join(scratch, "sysfs");
    mkdirSync(join(sysfs, "0000:1a:00.0"), { recursive: true });
    writeFileSync(join(sysfs, "0000:1a:00.0", "local_cpulist"), `${lowCpu}\n`);
    const result = await runProbe<CudaDeviceInfo[]>(
      "list",
      fakeEnv({ MULTIRANK_NVML_LIBRARY: join(scratch, "no-such-libnvidia-ml.so.1"), MULTIRANK_SYSFS_PCI_ROOT: sysfs }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.map((d) => [d.cpus, d.cpuSource])).toEqual([
      [[lowCpu], "sysfs"],
      [[], "none"],
      [[], "none"],
      [[], "none"],
    ]);
  });

  it("reports zero devices as available with an empty list", async () => {
    expect(await runProbe("availability", fakeEnv({ FAKE_CUDA_DEVICE_COUNT: "0" }))).toMatchObject({ ok: true, value: { available: true, deviceCount: 0 } });
    expect(await runProbe("list", fakeEnv({ FAKE_CUDA_DEVICE_COUNT: "0" }))).toEqual({ ok: true, value: [] });
  });
});

describe("error paths", () => {
  it("a failing cuInit: unavailable with the status, and listDevices throws NativeError", async () => {
    const env = fakeEnv({ FAKE_CUDA_FAIL_INIT: "1" });
    expect(await runProbe("availability", env)).toEqual({
      ok: true,
      value: { available: false, reason: "cuInit failed: CUDA_ERROR_NO_DEVICE", status: "CUDA_ERROR_NO_DEVICE" },
    });
    expect(await runProbe("list", env)).toMatchObject({
      ok: false,
      error: { name: "NativeError", code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_NO_DEVICE" },
    });
  });

  it("an unnamed cuInit status still gets a name", async () => {
    const result = await runProbe("list", fakeEnv({ FAKE_CUDA_FAIL_INIT: "999" }));
    expect(result).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_UNKNOWN" } });
  });

  it("a driver lacking a symbol: unavailable with the symbol named, never a crash", async () => {
    const env = fakeEnv({ MULTIRANK_FAKE_DRIVER: fake.noUuidPath });
    const availability = await runProbe<{ available: boolean; reason: string; status: string }>("availability", env);
    expect(availability).toMatchObject({ ok: true, value: { available: false, status: "MULTIRANK_SYMBOL_NOT_FOUND" } });
    expect(availability.ok && availability.value.reason).toContain("cuDeviceGetUuid");
    expect(await runProbe("list", env)).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "MULTIRANK_SYMBOL_NOT_FOUND" } });
  });

  it("a device index out of range is CUDA_ERROR_INVALID_DEVICE", async () => {
    for (const index of ["4", "-1", "1.5", "NaN"]) {
      expect(await runProbe("makeCurrent", fakeEnv(), index)).toMatchObject({
        ok: false,
        error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_INVALID_DEVICE" },
      });
    }
  });

  it("a failing context call during pinning is a NativeError with the driver status", async () => {
    const [plan] = planDevices([1], 1, { devices: [{ ...fakeDevice(1) }], allowedCpus: allowed });
    const result = await runProbe("pin", fakeEnv({ FAKE_CUDA_FAIL_CTX: "1", ...childEnvForPlan(plan!) }));
    expect(result).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_OUT_OF_MEMORY" } });
  });

  it("a missing addon binary is a NativeError naming the path; cudaAvailability degrades to unavailable", async () => {
    const missing = join(scratch, "nowhere", "multirank.node");
    const load = await runProbe("loadAddon", fakeEnv({ MULTIRANK_ADDON_PATH: missing }));
    expect(load).toMatchObject({ ok: false, error: { name: "NativeError", code: "MULTIRANK_ERR_NATIVE", status: "MULTIRANK_ADDON_NOT_LOADED" } });
    expect(!load.ok && load.error.message).toContain(missing);
    const broken = join(scratch, "broken.node");
    writeFileSync(broken, "not an ELF file");
    expect(await runProbe("loadAddon", fakeEnv({ MULTIRANK_ADDON_PATH: broken }))).toMatchObject({ ok: false, error: { status: "MULTIRANK_ADDON_NOT_LOADED" } });
    expect(await runProbe("availability", fakeEnv({ MULTIRANK_ADDON_PATH: missing }))).toMatchObject({
      ok: true,
      value: { available: false, status: "MULTIRANK_ADDON_NOT_LOADED" },
    });
  });
});

function fakeDevice(i: number): CudaDeviceInfo {
  return { index: i, name: `Fake Tesla F100 #${i}`, uuid: uuid(i), pciBusId: "", totalMemory: 0, computeCapability: [9, 0], cpus: [] };
}

describe("pinning a world of four ranks", () => {
  interface Pinned {
    device: WorkerDevice;
    affinity: number[];
    procStatus: string;
    omp: string;
  }

  it("each rank makes its own device current and runs on that device's local cores", async () => {
    const listed = await runProbe<CudaDeviceInfo[]>("list", fakeEnv());
    if (!listed.ok) throw new Error(listed.error.message);
    const plans = planDevices("auto", 4, { devices: listed.value, allowedCpus: allowed });
    const traces = plans.map((p) => join(scratch, `trace-${p.rank}.txt`));
    const results = await Promise.all(
      plans.map((plan, r) => runProbe<Pinned>("pin", fakeEnv({ ...childEnvForPlan(plan), FAKE_CUDA_TRACE: traces[r] }))),
    );
    results.forEach((result, r) => {
      if (!result.ok) throw new Error(`rank ${r}: ${result.error.message}`);
      const { device, affinity, procStatus, omp } = result.value;
      const expectedCpus = r < 2 ? [lowCpu] : [highCpu];
      expect(device).toMatchObject({ kind: "cuda", index: r, localIndex: r, uuid: uuid(r), name: `Fake Tesla F100 #${r}`, cpus: expectedCpus });
      expect(affinity).toEqual(expectedCpus);
      expect(procStatus).toBe(String(expectedCpus[0]));
      expect(omp).toBe("1");
      expect(readFileSync(traces[r]!, "utf8")).toBe(`retain ${r}\ncurrent ${r}\n`);
    });
  });

  it("with isolateDevices the rank sees only its device, as ordinal 0", async () => {
    const listed = await runProbe<CudaDeviceInfo[]>("list", fakeEnv());
    if (!listed.ok) throw new Error(listed.error.message);
    const plan = planDevices("auto", 4, { devices: listed.value, allowedCpus: allowed, isolateDevices: true })[2]!;
    const trace = join(scratch, "trace-isolated.txt");
    const env = fakeEnv({ ...childEnvForPlan(plan), FAKE_CUDA_TRACE: trace });
    expect(env.CUDA_VISIBLE_DEVICES).toBe(uuid(2));
    const result = await runProbe<Pinned>("pin", env);
    expect(result).toMatchObject({ ok: true, value: { device: { kind: "cuda", index: 2, localIndex: 0, uuid: uuid(2) } } });
    expect(readFileSync(trace, "utf8")).toBe("retain 2\ncurrent 2\n");
  });

  it("a rank whose device is hidden from it fails with CUDA_ERROR_INVALID_DEVICE", async () => {
    const [plan] = planDevices([3], 1, { devices: [fakeDevice(3)], allowedCpus: allowed });
    const result = await runProbe("pin", fakeEnv({ ...childEnvForPlan(plan!), CUDA_VISIBLE_DEVICES: "0,1" }));
    expect(result).toMatchObject({ ok: false, error: { code: "MULTIRANK_ERR_NATIVE", status: "CUDA_ERROR_INVALID_DEVICE" } });
  });
});
