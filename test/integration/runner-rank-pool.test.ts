import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { RankPool } from "../../src/index.js";
import { isRunning, waitFor } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner, testLogger } from "../helpers/runners.js";

cleanUpRunners();

// Registered after cleanUpRunners, so it runs first (hooks run in reverse): the pools' idle processes are gone before that hook counts children.
const pools = new Set<RankPool>();
afterEach(async () => {
  await Promise.all([...pools].map((pool) => pool.close()));
  pools.clear();
});

function makePool(size: number, nodeArgs: string[] = []): RankPool {
  const pool = new RankPool({ size, nodeArgs, logger: testLogger });
  pools.add(pool);
  return pool;
}

describe("a runner with a rank pool", () => {
  it("takes its ranks from the pool's pre-started processes, gives them the rank's environment, and the pool refills", async () => {
    const pool = makePool(2);
    await pool.full();
    const prestarted = pool.pids;
    expect(prestarted).toHaveLength(2);
    // Idle processes have loaded the runtime, not CUDA: a pooled process can still be given any device.
    for (const pid of prestarted) expect(readFileSync(`/proc/${pid}/maps`, "utf8")).not.toMatch(/libcuda/);
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, rankPool: pool, env: { PROBE_SECRET: "s3" }, devices: "cpu" });
    await runner.start();
    expect([...runner.pids].sort()).toEqual([...prestarted].sort());
    expect(await runner.invoke({ op: "echo", value: { n: 42 } })).toEqual({ n: 42 });
    const who = (await runner.invoke({ op: "whoami" })) as { rank: number; worldSize: number; env: Record<string, string>; pid: number };
    expect(who).toMatchObject({ rank: 0, worldSize: 2, env: { RANK: "0", WORLD_SIZE: "2", SECRET: "s3" } });
    expect(prestarted).toContain(who.pid);
    // Refilled once the start was over, with new processes.
    await pool.full();
    expect(pool.pids).toHaveLength(2);
    expect(pool.pids.some((pid) => prestarted.includes(pid))).toBe(false);
    await runner.stop();
    expect(prestarted.some(isRunning)).toBe(false);
  });

  it("a second start after a stop takes the refilled processes", async () => {
    const pool = makePool(1);
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, rankPool: pool });
    for (let i = 0; i < 2; i++) {
      await pool.full();
      const idle = pool.pids;
      await runner.start();
      expect(runner.pids).toEqual(idle);
      expect(await runner.invoke({ op: "echo", value: i })).toBe(i);
      await runner.stop();
    }
  });

  it("spawns its ranks as without a pool when the pool has size 0", async () => {
    const pool = makePool(0);
    await pool.full();
    expect(pool.pids).toEqual([]);
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, rankPool: pool });
    await runner.start();
    expect(await runner.invoke({ op: "echo", value: 7 })).toBe(7);
    expect(pool.idle).toBe(0);
  });

  it("spawns its ranks when their node flags differ from the pool's, and leaves the pool alone", async () => {
    const pool = makePool(1, ["--stack-size=2000"]);
    await pool.full();
    const idle = pool.pids;
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, rankPool: pool });
    await runner.start();
    expect(runner.pids).not.toEqual(idle);
    expect(pool.pids).toEqual(idle);
    expect(await runner.invoke({ op: "echo", value: 1 })).toBe(1);
  });

  it("close() ends the idle processes", async () => {
    const pool = makePool(2);
    await pool.full();
    const idle = pool.pids;
    await pool.close();
    expect(idle.some(isRunning)).toBe(false);
    expect(pool.idle).toBe(0);
    await pool.close(); // idempotent
  });
});

describe("when the process holding the pool dies", () => {
  it("its ranks and its idle pooled processes exit within a second of a SIGKILL", async () => {
    const host = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("../fixtures/runner-host.ts", import.meta.url)), "2", "--pool"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    let pids: number[] = [];
    try {
      const lines = createInterface({ input: host.stdout! });
      for await (const line of lines) {
        if (line.startsWith('{"pids":')) {
          const report = JSON.parse(line) as { pids: number[]; poolPids: number[] };
          expect(report.poolPids).toHaveLength(2);
          pids = [...report.pids, ...report.poolPids];
          break;
        }
      }
      expect(pids).toHaveLength(4);
      expect(pids.every(isRunning)).toBe(true);
      host.kill("SIGKILL");
      await once(host, "exit");
      expect(await waitFor(() => !pids.some(isRunning), 1000)).toBe(true);
    } finally {
      host.kill("SIGKILL");
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone, as it should be.
        }
      }
    }
  });
});
