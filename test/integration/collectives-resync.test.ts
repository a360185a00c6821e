import { describe, expect, it } from "vitest";
import type { DistributedRunner, RunnerState } from "../../src/index.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

/** Float32 elements above the direct path's 64 KiB: the shared-memory path on one host. */
const LARGE = 1 << 16;

function resyncRunner(): DistributedRunner {
  return makeRunner({ worker: fixture("collectives-resync"), worldSize: 2 });
}

/** The group is in step: three all-reduce requests in a row give the right sums, and the runner is ready. */
async function expectInStep(runner: DistributedRunner, length?: number): Promise<void> {
  for (let i = 0; i < 3; i++) {
    expect(await runner.invoke({ op: "sum", length }, { timeout: 30 })).toMatchObject({ ok: true, first: 3 });
  }
  expect(runner.state).toBe("ready");
  expect(runner.isAlive()).toBe(true);
}

function stateReached(runner: DistributedRunner, state: RunnerState): Promise<void> {
  return new Promise((resolve) => {
    if (runner.state === state) return resolve();
    const onState = (s: RunnerState): void => {
      if (s !== state) return;
      runner.off("state", onState);
      resolve();
    };
    runner.on("state", onState);
  });
}

describe("collectives after a request that ended half-way", () => {
  for (const [name, length] of [
    ["small", undefined],
    ["large (shared memory)", LARGE],
  ] as const) {
    it(`a request aborted while rank 0 is inside a ${name} allReduce that rank 1 never reached leaves the group in step`, async () => {
      const runner = resyncRunner();
      await runner.start();
      const controller = new AbortController();
      const pending = runner.invoke(
        { op: "abortInside", length },
        // Rank 0 reports once its allReduce has begun; rank 1 is still waiting on its signal.
        { signal: controller.signal, onProgress: () => controller.abort(new Error("user hit stop")) },
      );
      await expect(pending).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
      await expectInStep(runner, length);
    });
  }

  it("a collective timeout with a rank that never calls leaves the group in step", async () => {
    const runner = resyncRunner();
    await runner.start();
    const error = await runner.invoke({ op: "timeoutAlone" }, { timeout: 30 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 0, remoteCode: "MULTIRANK_ERR_TIMEOUT" });
    await expectInStep(runner);
    // Once more on the shared-memory path, whose buffers are reused across requests.
    await expect(runner.invoke({ op: "timeoutAlone", length: LARGE }, { timeout: 30 })).rejects.toMatchObject({ remoteCode: "MULTIRANK_ERR_TIMEOUT" });
    await expectInStep(runner, LARGE);
  });

  it("ranks that call different collectives fail the request and leave the group in step", async () => {
    const runner = resyncRunner();
    await runner.start();
    const error = await runner.invoke({ op: "mismatch" }, { timeout: 30 }).catch((e: unknown) => e);
    const errors = (error as { errors?: unknown[] }).errors ?? [error];
    for (const e of errors) expect(e).toMatchObject({ remoteCode: "MULTIRANK_ERR_COLLECTIVE_MISMATCH" });
    await expectInStep(runner);
  });

  it("a collective one rank starts after its request returned rejects instead of taking the next request's place", async () => {
    const runner = resyncRunner();
    await runner.start();
    expect(await runner.invoke({ op: "leftover" })).toBe("left a collective behind");
    await expectInStep(runner);
  });
});

describe("a process group broken for good", () => {
  it("fails the runner (never ready while broken), which restarts the ranks itself", async () => {
    const runner = resyncRunner();
    await runner.start();
    const firstPids = [...runner.pids];
    const states: RunnerState[] = [];
    runner.on("state", (s) => states.push(s));
    const error = await runner.invoke({ op: "breakGroup" }, { timeout: 30 }).catch((e: unknown) => e);
    // The request fails with the rank's exit, naming the broken group, and the runner is not ready meanwhile.
    expect(runner.state).not.toBe("ready");
    expect(runner.isAlive()).toBe(false);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT", rank: 1 });
    expect(String((error as Error).cause)).toMatch(/process group broken on rank 1: the link to rank 0 went down/);
    await stateReached(runner, "ready");
    expect(states).toEqual(["failed", "starting", "ready"]);
    expect(runner.pids).not.toEqual(firstPids);
    await expectInStep(runner);
  });
});
