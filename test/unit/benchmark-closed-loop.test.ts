import { describe, expect, it } from "vitest";
import { runClosedLoop } from "../../src/benchmark/closed-loop.js";

const tick = (ms = 1) => new Promise((resolve) => setTimeout(resolve, ms));

describe("runClosedLoop", () => {
  it("runs every sequence number once, never more than `concurrency` at a time", async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    const finished: number[] = [];
    const result = await runClosedLoop(
      10,
      3,
      async (seq) => {
        seen.push(seq);
        peak = Math.max(peak, ++inFlight);
        await tick();
        inFlight--;
      },
      { firstSeq: 5, onFinished: (n) => finished.push(n) },
    );
    expect(seen.sort((a, b) => a - b)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(peak).toBe(3);
    expect(finished).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(result.latenciesMs).toHaveLength(10);
    expect(result.durationMs).toBeGreaterThan(0);
  });

  it("starts no more slots than operations", async () => {
    let calls = 0;
    await runClosedLoop(2, 8, async () => {
      calls++;
    });
    expect(calls).toBe(2);
  });

  it("on the first failure starts nothing new, aborts the in-flight ones' signal and rejects with that error", async () => {
    const boom = new Error("boom");
    const started: number[] = [];
    let sawAbort = false;
    const promise = runClosedLoop(100, 2, async (seq, signal) => {
      started.push(seq);
      if (seq === 3) throw boom;
      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
        setTimeout(resolve, 5);
      });
      if (signal.aborted) {
        sawAbort = true;
        throw new Error("cancelled");
      }
    });
    await expect(promise).rejects.toBe(boom);
    expect(sawAbort).toBe(true);
    expect(Math.max(...started)).toBeLessThanOrEqual(4);
  });

  it("stops starting operations once the caller's signal aborts", async () => {
    const controller = new AbortController();
    let calls = 0;
    const result = await runClosedLoop(
      50,
      1,
      async () => {
        if (++calls === 3) controller.abort();
      },
      { signal: controller.signal },
    );
    expect(calls).toBe(3);
    expect(result.latenciesMs).toHaveLength(3);
  });
});
