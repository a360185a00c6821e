import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RunnerWatchdog } from "../../src/worker/runner-watchdog.js";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("RunnerWatchdog", () => {
  it("fires once the runner has been silent for the whole bound, not while it keeps talking", () => {
    const silent: number[] = [];
    const watchdog = new RunnerWatchdog(1000, (ms) => silent.push(ms));
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(250);
      watchdog.heard();
    }
    expect(silent).toEqual([]);
    vi.advanceTimersByTime(1250);
    expect(silent).toHaveLength(1);
    expect(silent[0]).toBeGreaterThanOrEqual(1000);
    vi.advanceTimersByTime(5000);
    expect(silent).toHaveLength(1);
  });

  it("does not judge right after this rank's own event loop was blocked (the pings may be unread)", () => {
    const silent: number[] = [];
    let clock = 0;
    const watchdog = new RunnerWatchdog(1000, (ms) => silent.push(ms), () => clock);
    // A synchronous call() held the loop for 5 s: the tick due at 250 ms runs at 5 s.
    clock = 5000;
    vi.advanceTimersByTime(250);
    expect(silent).toEqual([]);
    // The loop turned, the runner's pings were read.
    watchdog.heard();
    clock += 250;
    vi.advanceTimersByTime(250);
    expect(silent).toEqual([]);
    // Then real silence still counts.
    for (let i = 0; i < 5; i++) {
      clock += 250;
      vi.advanceTimersByTime(250);
    }
    expect(silent).toHaveLength(1);
  });

  it("stops", () => {
    const silent: number[] = [];
    const watchdog = new RunnerWatchdog(100, (ms) => silent.push(ms));
    watchdog.stop();
    vi.advanceTimersByTime(1000);
    expect(silent).toEqual([]);
  });
});
