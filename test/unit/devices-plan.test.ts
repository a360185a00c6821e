import { describe, expect, expectTypeOf, it } from "vitest";
import {
  childEnvForPlan,
  planDevices,
  planFromEnv,
  type CudaDeviceInfo,
  type RankDevicePlan,
  type WorkerDevice,
} from "../../src/devices/index.js";

const device = (index: number, cpus: number[]): CudaDeviceInfo => ({
  index,
  name: `GPU ${index}`,
  uuid: `GPU-0000000${index}-aaaa-bbbb-cccc-dddddddddddd`,
  pciBusId: `0000:${(0x1a + index).toString(16)}:00.0`,
  totalMemory: 80 * 2 ** 30,
  computeCapability: [9, 0],
  cpus,
});

// Two sockets: GPUs 0,1 local to cores 0-3, GPUs 2,3 local to cores 4-7.
const fourGpus = [device(0, [0, 1, 2, 3]), device(1, [0, 1, 2, 3]), device(2, [4, 5, 6, 7]), device(3, [4, 5, 6, 7])];
const eightCores = [0, 1, 2, 3, 4, 5, 6, 7];

describe("planDevices", () => {
  it('"auto" with no CUDA devices puts every rank on CPU and splits the cores', () => {
    expect(planDevices("auto", 2, { devices: [], allowedCpus: [0, 1] })).toEqual([
      { rank: 0, device: { kind: "cpu" }, cpus: [0], isolate: false },
      { rank: 1, device: { kind: "cpu" }, cpus: [1], isolate: false },
    ]);
  });

  it('"cpu" splits evenly, with the remainder going to the first ranks', () => {
    const plans = planDevices("cpu", 2, { devices: fourGpus, allowedCpus: [0, 1, 2, 3, 4] });
    expect(plans.map((p) => p.cpus)).toEqual([[0, 1, 2], [3, 4]]);
    expect(plans.every((p) => p.device.kind === "cpu")).toBe(true);
  });

  it("hands out cores round robin when there are more ranks than cores", () => {
    const plans = planDevices("cpu", 5, { allowedCpus: [0, 1] });
    expect(plans.map((p) => p.cpus)).toEqual([[0], [1], [0], [1], [0]]);
  });

  it('"auto" maps rank r to device r and splits each device\'s local cores among the ranks sharing them', () => {
    const plans = planDevices("auto", 4, { devices: fourGpus, allowedCpus: eightCores });
    expect(plans.map((p) => p.device)).toEqual(fourGpus.map((d) => ({ kind: "cuda", index: d.index, uuid: d.uuid })));
    expect(plans.map((p) => p.cpus)).toEqual([[0, 1], [2, 3], [4, 5], [6, 7]]);
  });

  it("intersects device locality with the allowed cores, falling back to the allowed cores when nothing is left", () => {
    const plans = planDevices("auto", 4, { devices: fourGpus, allowedCpus: [4, 5] });
    // GPUs 0,1 have no allowed local core: they share the allowed pool; GPUs 2,3 split 4,5.
    expect(plans.map((p) => p.cpus)).toEqual([[4], [5], [4], [5]]);
  });

  it("uses the allowed cores for devices with unknown locality", () => {
    const plans = planDevices("auto", 2, { devices: [device(0, []), device(1, [])], allowedCpus: [0, 1, 2, 3] });
    expect(plans.map((p) => p.cpus)).toEqual([[0, 1], [2, 3]]);
  });

  it("accepts explicit indices, UUIDs, UUID prefixes and cpu entries", () => {
    const plans = planDevices([3, fourGpus[1]!.uuid, "GPU-00000002", "cpu"], 4, { devices: fourGpus, allowedCpus: eightCores });
    expect(plans.map((p) => (p.device.kind === "cuda" ? p.device.index : "cpu"))).toEqual([3, 1, 2, "cpu"]);
  });

  it("sets isolate on every plan when isolateDevices is true", () => {
    const plans = planDevices("auto", 2, { devices: fourGpus, allowedCpus: eightCores, isolateDevices: true });
    expect(plans.every((p) => p.isolate)).toBe(true);
  });

  it("does not discover devices when the selection is cpu", () => {
    // No devices option and no allowed CUDA: must not throw or touch the driver.
    expect(planDevices("cpu", 1, { allowedCpus: [0] })).toHaveLength(1);
  });

  describe("validation errors name the field", () => {
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["worldSize 0", () => planDevices("auto", 0, { devices: [], allowedCpus: [0] }), /^worldSize/],
      ["worldSize 1.5", () => planDevices("auto", 1.5, { devices: [], allowedCpus: [0] }), /^worldSize/],
      ["more ranks than GPUs", () => planDevices("auto", 5, { devices: fourGpus, allowedCpus: [0] }), /worldSize is 5 but only 4/],
      ["index out of range", () => planDevices([0, 1, 7], 3, { devices: fourGpus, allowedCpus: [0] }), /^options\.devices\[2\] asks for CUDA device 7 but only 4/],
      ["negative index", () => planDevices([-1], 1, { devices: fourGpus, allowedCpus: [0] }), /^options\.devices\[0\]/],
      ["unknown UUID", () => planDevices(["GPU-ffff"], 1, { devices: fourGpus, allowedCpus: [0] }), /^options\.devices\[0\] is "GPU-ffff", which names no CUDA device/],
      ["ambiguous UUID prefix", () => planDevices(["GPU-0000000"], 1, { devices: fourGpus, allowedCpus: [0] }), /matches 4 devices/],
      ["wrong length", () => planDevices([0, 1], 3, { devices: fourGpus, allowedCpus: [0] }), /^options\.devices has 2 entries but worldSize is 3/],
      ["GPU asked, none present", () => planDevices([0], 1, { devices: [], allowedCpus: [0] }), /^options\.devices\[0\] asks for CUDA device 0 but no CUDA device/],
      ["bad selection", () => planDevices("gpu" as never, 1, { devices: [], allowedCpus: [0] }), /^options\.devices must be/],
      ["empty allowedCpus", () => planDevices("cpu", 1, { allowedCpus: [] }), /^options\.allowedCpus/],
      ["bad allowedCpus entry", () => planDevices("cpu", 1, { allowedCpus: [0, -2] }), /^options\.allowedCpus\[1\]/],
    ];
    it.each(cases)("%s", (_name, call, message) => {
      let caught: unknown;
      try {
        call();
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", name: "ValidationError" });
      expect((caught as Error).message).toMatch(message);
    });
  });
});

describe("childEnvForPlan / planFromEnv", () => {
  const cudaPlan: RankDevicePlan = { rank: 2, device: { kind: "cuda", index: 2, uuid: fourGpus[2]!.uuid }, cpus: [4, 5], isolate: false };

  it("carries the plan, the parent pid and OMP_NUM_THREADS; no CUDA_VISIBLE_DEVICES without isolation", () => {
    const env = childEnvForPlan(cudaPlan);
    expect(env).toEqual({ MULTIRANK_DEVICE_PLAN: JSON.stringify(cudaPlan), MULTIRANK_PARENT_PID: String(process.pid), OMP_NUM_THREADS: "2" });
    expect(planFromEnv(env)).toEqual(cudaPlan);
  });

  it("isolates a CUDA rank to its UUID and hides every GPU from an isolated CPU rank", () => {
    expect(childEnvForPlan({ ...cudaPlan, isolate: true }).CUDA_VISIBLE_DEVICES).toBe(fourGpus[2]!.uuid);
    expect(childEnvForPlan({ rank: 0, device: { kind: "cpu" }, cpus: [0], isolate: true }).CUDA_VISIBLE_DEVICES).toBe("");
  });

  it("returns undefined without a plan and rejects a malformed one", () => {
    expect(planFromEnv({})).toBeUndefined();
    expect(() => planFromEnv({ MULTIRANK_DEVICE_PLAN: "{" })).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    const bad = JSON.stringify({ ...cudaPlan, device: { kind: "cuda", index: 1 } });
    expect(() => planFromEnv({ MULTIRANK_DEVICE_PLAN: bad })).toThrow(/device\.uuid/);
  });
});

describe("types", () => {
  it("WorkerDevice is a union discriminated by kind", () => {
    expectTypeOf<Extract<WorkerDevice, { kind: "cpu" }>>().toEqualTypeOf<{ kind: "cpu"; cpus: number[] }>();
    expectTypeOf(planDevices).returns.toEqualTypeOf<RankDevicePlan[]>();
  });
});
