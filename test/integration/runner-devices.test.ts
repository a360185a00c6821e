/**
 * The runner's pinning path against the fake CUDA driver: discovery in the
 * runner, plan in the environment, pinning in each rank before user code.
 * The driver is chosen per process and loaded once, so this file sets it
 * before anything touches the addon.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

let fake: FakeDriver;

beforeAll(() => {
  fake = buildFakeDriver();
  process.env.MULTIRANK_FAKE_DRIVER = fake.path;
  // Devices 0 and 1 are local to core 0, devices 2 and 3 to core 1 (this machine has two).
  process.env.FAKE_CUDA_DEVICE_CPUS = "0;0;1;1";
});

afterAll(() => {
  delete process.env.MULTIRANK_FAKE_DRIVER;
  delete process.env.FAKE_CUDA_DEVICE_CPUS;
  fake?.remove();
});

cleanUpRunners();

interface Whoami {
  rank: number;
  cpusAllowed: string;
  ompThreads: string;
  cudaVisible: string | null;
  device: { kind: string; index?: number; uuid?: string; name?: string; cpus: number[] };
}

describe("pinning through the fake driver", () => {
  it("a world of 4 gets one device each, pinned to the device's local cores", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 4 });
    await runner.start();
    expect(runner.devices.map((d) => (d.kind === "cuda" ? d.index : -1))).toEqual([0, 1, 2, 3]);
    // Rank r answers for itself through runInWorker-free means: ask each rank via the device list it reported.
    for (const [rank, device] of runner.devices.entries()) {
      expect(device).toMatchObject({ kind: "cuda", index: rank, name: `Fake Tesla F100 #${rank}` });
      expect(device.cpus).toEqual([rank < 2 ? 0 : 1]);
    }
    const me = await runner.invoke<Whoami>({ op: "whoami" });
    expect(me.cpusAllowed).toBe("0");
    expect(me.ompThreads).toBe("1");
    expect(me.cudaVisible).toBeNull(); // isolation is off by default, so peer-to-peer keeps working
  });

  it("isolateDevices sets CUDA_VISIBLE_DEVICES per rank", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, devices: [3, 1], isolateDevices: true });
    await runner.start();
    expect(runner.devices.map((d) => (d.kind === "cuda" ? d.index : -1))).toEqual([3, 1]);
    const me = await runner.invoke<Whoami>({ op: "whoami" });
    expect(me.cudaVisible).toMatch(/^GPU-/);
    expect(me.cpusAllowed).toBe("1");
  });

  it("asking for more GPUs than exist fails before anything starts", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, devices: [0, 7] });
    await expect(runner.start()).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    expect(runner.pids).toEqual([]);
  });

  it('devices: "cpu" splits the allowed cores evenly', async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, devices: "cpu" });
    await runner.start();
    expect(runner.devices).toEqual([
      { kind: "cpu", cpus: [0] },
      { kind: "cpu", cpus: [1] },
    ]);
  });
});
