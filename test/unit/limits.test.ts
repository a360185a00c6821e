/** The `memory` and `cpu` options: validation at every door, core planning, and per-rank cgroups on a fake cgroup tree. Spawns nothing. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { planDevices } from "../../src/devices/plan.js";
import { resolveRemoteOptions } from "../../src/functions/options.js";
import { defineApp, resolveApp, type PoolRunner } from "../../src/gateway/index.js";
import { GpuAllocator } from "../../src/gateway/gpu-allocator.js";
import { LocalRunnerPool } from "../../src/gateway/runner-pool.js";
import { resolveRunnerOptions } from "../../src/runner/options.js";
import { cgroupParent, RankCgroup } from "../../src/runner/rank-cgroup.js";
import type { DistributedRunnerOptions } from "../../src/index.js";

const logger = pino({ level: "silent" });

describe("memory and cpu options are validated once, naming the field", () => {
  it("remote(): memory is GiB of at least 1/16, cpu a whole number of cores", () => {
    expect(resolveRemoteOptions({ name: "f", memory: 0.5, cpu: 2 })).toMatchObject({ memory: 0.5, cpu: 2 });
    expect(resolveRemoteOptions({ name: "f" })).toMatchObject({ memory: undefined, cpu: undefined });
    for (const memory of [0, -1, 0.01, Number.NaN, Number.POSITIVE_INFINITY, "1" as unknown as number]) {
      expect(() => resolveRemoteOptions({ name: "f", memory })).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/remote function f: options\.memory must be a number of GiB/) }));
    }
    for (const cpu of [0, 1.5, -2, "2" as unknown as number]) {
      expect(() => resolveRemoteOptions({ name: "f", cpu })).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/remote function f: options\.cpu must be a whole number of cores/) }));
    }
  });

  it("defineApp(): memory becomes MiB per rank; cpu is checked against the host at resolveApp with a ConfigError naming both counts", () => {
    const app = defineApp({ name: "t/limits", worker: "/w.ts", memory: 0.25, cpu: 2 });
    expect(app).toMatchObject({ memoryMiB: 256, cpu: 2 });
    expect(resolveApp(app, { gpuCount: 0, baseDir: "/", cpuCount: 2 })).toMatchObject({ memoryMiB: 256, cpu: 2 });
    expect(() => resolveApp(app, { gpuCount: 0, baseDir: "/", cpuCount: 1 })).toThrow(
      expect.objectContaining({ code: "MULTIRANK_ERR_GATEWAY_CONFIG", message: "app t/limits: options.cpu asks for 2 cores per rank but this host has 1" }),
    );
    expect(() => defineApp({ name: "t/limits", worker: "/w.ts", memory: 0 })).toThrow(/app t\/limits: options\.memory must be a number of GiB per rank of at least 0\.0625/);
    expect(() => defineApp({ name: "t/limits", worker: "/w.ts", cpu: 0 })).toThrow(/app t\/limits: options\.cpu must be a whole number of cores per rank/);
  });

  it("runner: memoryLimitMiB and cpusPerRank", () => {
    expect(resolveRunnerOptions({ worker: "/w.ts", memoryLimitMiB: 512, cpusPerRank: 1 })).toMatchObject({ memoryLimitMiB: 512, cpusPerRank: 1 });
    expect(() => resolveRunnerOptions({ worker: "/w.ts", memoryLimitMiB: 10 })).toThrow(/options\.memoryLimitMiB must be an integer number of MiB of at least 64, got 10/);
    expect(() => resolveRunnerOptions({ worker: "/w.ts", memoryLimitMiB: 100.5 })).toThrow(/options\.memoryLimitMiB/);
    expect(() => resolveRunnerOptions({ worker: "/w.ts", memoryLimitMiB: 128, nodeArgs: ["--max-old-space-size=64"] })).toThrow(/options\.nodeArgs sets --max-old-space-size and options\.memoryLimitMiB/);
    expect(() => resolveRunnerOptions({ worker: "/w.ts", cpusPerRank: 0 })).toThrow(/options\.cpusPerRank must be a positive integer, got 0/);
  });

  it("the runner pool passes an app's limits to its runners", async () => {
    const app = resolveApp(defineApp({ name: "t/limits", worker: "/w.ts", memory: 1, cpu: 1 }), { gpuCount: 0, baseDir: "/", cpuCount: 1 });
    const seen: DistributedRunnerOptions[] = [];
    const pool = new LocalRunnerPool(app, {
      logger,
      gpus: new GpuAllocator(0),
      createRunner: (options) => {
        seen.push(options);
        return { start: async () => {}, stop: async () => {}, terminate: async () => {}, on() {}, off() {}, state: "ready" } as unknown as PoolRunner;
      },
    });
    const lease = await pool.acquire();
    lease.release();
    await pool.close();
    expect(seen[0]).toMatchObject({ memoryLimitMiB: 1024, cpusPerRank: 1 });
  });
});

describe("planDevices with cpusPerRank", () => {
  it("gives every rank exactly that many cores, consecutive, wrapping around when they run out", () => {
    expect(planDevices("cpu", 2, { allowedCpus: [0, 1, 2, 3], cpusPerRank: 1 }).map((p) => p.cpus)).toEqual([[0], [1]]);
    expect(planDevices("cpu", 2, { allowedCpus: [0, 1, 2, 3], cpusPerRank: 2 }).map((p) => p.cpus)).toEqual([[0, 1], [2, 3]]);
    expect(planDevices("cpu", 3, { allowedCpus: [0, 1, 2, 3], cpusPerRank: 2 }).map((p) => p.cpus)).toEqual([[0, 1], [2, 3], [0, 1]]);
    expect(planDevices("cpu", 1, { allowedCpus: [4, 5, 6], cpusPerRank: 3 }).map((p) => p.cpus)).toEqual([[4, 5, 6]]);
  });

  it("more cores per rank than allowed is a ValidationError naming the field and both counts", () => {
    expect(() => planDevices("cpu", 1, { allowedCpus: [0, 1], cpusPerRank: 3 })).toThrow(
      expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: "options.cpusPerRank is 3 but this process may use only 2 cores (0,1)" }),
    );
  });

  it("a CUDA rank takes its local cores when there are enough, else the allowed ones", () => {
    const gpu = { index: 0, name: "G", uuid: "GPU-a", pciBusId: "0000:01:00.0", totalMemory: 1, computeCapability: [9, 0] as [number, number], cpus: [2, 3] };
    expect(planDevices([0], 1, { devices: [gpu], allowedCpus: [0, 1, 2, 3], cpusPerRank: 2 })[0]!.cpus).toEqual([2, 3]);
    expect(planDevices([0], 1, { devices: [gpu], allowedCpus: [0, 1, 2, 3], cpusPerRank: 3 })[0]!.cpus).toEqual([0, 1, 2]);
  });
});

describe("per-rank memory cgroups (a fake cgroup v2 tree)", () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  function fakeTree(options: { v2?: boolean; controllers?: string; subtree?: string } = {}): string {
    const root = mkdtempSync(join(tmpdir(), "multirank-fake-cgroup-"));
    roots.push(root);
    if (options.v2 !== false) writeFileSync(join(root, "cgroup.controllers"), "cpu memory pids\n");
    mkdirSync(join(root, "job"));
    writeFileSync(join(root, "job", "cgroup.controllers"), options.controllers ?? "cpu memory pids\n");
    writeFileSync(join(root, "job", "cgroup.subtree_control"), options.subtree ?? "\n");
    return root;
  }
  const self = (): string => "1:name=systemd:/\n0::/job\n";

  it("makes a child of this process's own group with memory.max, after enabling the memory controller for children", () => {
    const root = fakeTree();
    const group = RankCgroup.create({ name: "multirank-1-ab-r0", limitBytes: 256 * 1024 * 1024, pid: 4242, logger, fs: { root, selfCgroup: self } });
    expect(group?.dir).toBe(join(root, "job", "multirank-1-ab-r0"));
    expect(readFileSync(join(root, "job", "cgroup.subtree_control"), "utf8")).toBe("+memory");
    expect(readFileSync(join(group!.dir, "memory.max"), "utf8")).toBe(String(256 * 1024 * 1024));
    expect(readFileSync(join(group!.dir, "cgroup.procs"), "utf8")).toBe("4242");
    writeFileSync(join(group!.dir, "memory.events"), "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n");
    expect(group!.events()).toMatchObject({ max: 7, oom: 1, oom_kill: 1 });
  });

  it("leaves cgroup.subtree_control alone when children already get the memory controller", () => {
    const root = fakeTree({ subtree: "cpu memory\n" });
    expect(RankCgroup.create({ name: "g", limitBytes: 1 << 26, pid: 1, logger, fs: { root, selfCgroup: self } })).toBeDefined();
    expect(readFileSync(join(root, "job", "cgroup.subtree_control"), "utf8")).toBe("cpu memory\n");
  });

  it("says why when there is no cgroup v2, no memory controller, or the group cannot be made", () => {
    expect(cgroupParent({ root: fakeTree({ v2: false }), selfCgroup: self })).toMatchObject({ ok: false, why: expect.stringMatching(/neither a cgroup v2 \(unified\) mount nor holds cgroup v1's memory controller/) });
    expect(cgroupParent({ root: fakeTree({ controllers: "cpu pids\n" }), selfCgroup: self })).toMatchObject({ ok: false, why: expect.stringMatching(/memory controller is not available/) });
    expect(cgroupParent({ root: fakeTree(), selfCgroup: () => "4:memory:/x\n" })).toMatchObject({ ok: false, why: expect.stringMatching(/no cgroup v2 group/) });
    const root = fakeTree();
    mkdirSync(join(root, "job", "taken"));
    expect(RankCgroup.create({ name: "taken", limitBytes: 1 << 26, pid: 1, logger, fs: { root, selfCgroup: self } })).toBeUndefined();
  });
});

describe("per-rank memory cgroups (a fake cgroup v1 tree)", () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  function fakeV1Tree(): string {
    const root = mkdtempSync(join(tmpdir(), "multirank-fake-cgroup1-"));
    roots.push(root);
    mkdirSync(join(root, "memory", "job"), { recursive: true });
    writeFileSync(join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n");
    return root;
  }
  const self = (): string => "6:memory:/job\n5:cpu,cpuacct:/job\n1:name=systemd:/\n";

  it("makes a child in the memory controller's hierarchy with memory.limit_in_bytes (and memsw where swap is accounted)", () => {
    const root = fakeV1Tree();
    // What the kernel would show in a new group: the files exist.
    const dir = join(root, "memory", "job", "multirank-1-ab-r0");
    const group = RankCgroup.create({ name: "multirank-1-ab-r0", limitBytes: 256 * 1024 * 1024, pid: 4242, logger, fs: { root, selfCgroup: self } });
    expect(group?.dir).toBe(dir);
    expect(readFileSync(join(dir, "memory.limit_in_bytes"), "utf8")).toBe(String(256 * 1024 * 1024));
    expect(readFileSync(join(dir, "cgroup.procs"), "utf8")).toBe("4242");
    writeFileSync(join(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    writeFileSync(join(dir, "memory.failcnt"), "12\n");
    expect(group!.events()).toEqual({ oom_kill: 1, max: 12, oom: 12 });
  });

  it("says why when this process has no memory group there", () => {
    const root = fakeV1Tree();
    expect(cgroupParent({ root, selfCgroup: () => "5:cpu,cpuacct:/job\n" })).toMatchObject({ ok: false, why: expect.stringMatching(/no cgroup v1 memory group/) });
  });
});
