/**
 * Durations above a native timer's 2^31-1 ms (24.8 days) must wait their
 * full length, never fire at once, and durations above MAX_DURATION_SECONDS
 * are refused with a ValidationError naming the field. Fake timers (which,
 * like Node, turn an overflowing delay into 1 ms) stand in for the days.
 */
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { CollectiveBackend } from "../../src/collectives/backend.js";
import { checkCallOptions, resolveGroupOptions } from "../../src/collectives/options.js";
import { BackendProcessGroup } from "../../src/collectives/process-group.js";
import { Dispatcher } from "../../src/gateway/dispatcher.js";
import { GpuAllocator } from "../../src/gateway/gpu-allocator.js";
import { defineApp, MemoryJobQueue, resolveApp, type PoolRunner } from "../../src/gateway/index.js";
import { Job } from "../../src/gateway/job.js";
import { LocalRunnerPool } from "../../src/gateway/runner-pool.js";
import { ValidationError } from "../../src/index.js";
import { KeepaliveTimer } from "../../src/runner/keepalive-timer.js";
import { resolveRunnerOptions } from "../../src/runner/options.js";
import { durationToMs, LongTimer, MAX_DURATION_SECONDS, setLongTimeout } from "../../src/util/timers.js";

const DAY_MS = 86_400_000;
const TOO_LONG_S = MAX_DURATION_SECONDS + 1;
const logger = pino({ level: "silent" });

afterEach(() => {
  vi.useRealTimers();
});

function expectValidation(run: () => unknown, field: RegExp): void {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ValidationError);
  expect((thrown as ValidationError).code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
  expect((thrown as Error).message).toMatch(field);
}

describe("the timer helper", () => {
  it("a 30-day timer fires after 30 days, not at once and not a day early", () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    setLongTimeout(30 * DAY_MS, fired);
    vi.advanceTimersByTime(1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(29 * DAY_MS);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY_MS - 2);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(100 * DAY_MS);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it("refresh() restarts the full wait, long or short; cancel() stops it", () => {
    vi.useFakeTimers();
    for (const ms of [5000, 40 * DAY_MS]) {
      const fired = vi.fn();
      const timer = new LongTimer(ms, fired);
      vi.advanceTimersByTime(ms - 1);
      timer.refresh();
      vi.advanceTimersByTime(ms - 1);
      expect(fired, `${ms} ms`).not.toHaveBeenCalled();
      expect(timer.pending).toBe(true);
      vi.advanceTimersByTime(1);
      expect(fired, `${ms} ms`).toHaveBeenCalledTimes(1);
      expect(timer.pending).toBe(false);
      timer.refresh(); // after firing: armed again
      timer.cancel();
      vi.advanceTimersByTime(2 * ms);
      expect(fired, `${ms} ms`).toHaveBeenCalledTimes(1);
    }
  });

  it("refuses a delay that is not a finite non-negative number", () => {
    for (const bad of [Number.NaN, -1, Infinity]) expect(() => setLongTimeout(bad, () => {})).toThrow(RangeError);
  });

  it("durationToMs validates, names the field and stops at MAX_DURATION_SECONDS (365 days)", () => {
    expect(MAX_DURATION_SECONDS).toBe(365 * 86_400);
    expect(durationToMs(2.2e6, "options.timeout")).toBe(2.2e9);
    expect(durationToMs(MAX_DURATION_SECONDS, "options.timeout")).toBe(MAX_DURATION_SECONDS * 1000);
    expect(durationToMs(2.2e9, "policy.executionTimeout", { unit: "ms" })).toBe(2.2e9);
    expect(durationToMs(0, "options.keepAlive", { allowZero: true })).toBe(0);
    expectValidation(() => durationToMs(0, "options.timeout"), /^options\.timeout must be a positive number of seconds/);
    expectValidation(() => durationToMs(TOO_LONG_S, "options.timeout"), /^options\.timeout must be at most 31536000 seconds/);
    expectValidation(() => durationToMs(MAX_DURATION_SECONDS * 1000 + 1, "policy.executionTimeout", { unit: "ms" }), /^policy\.executionTimeout must be at most/);
    for (const bad of [Number.NaN, Infinity, -1, "5", null]) expectValidation(() => durationToMs(bad, "x.y"), /^x\.y must be/);
  });
});

describe("runner timeouts", () => {
  it("options.timeout and options.keepaliveInterval above 24.8 days are kept, not clamped; above 365 days refused", () => {
    const resolved = resolveRunnerOptions({ worker: "/w.ts", timeout: 2.2e6, keepaliveInterval: 3e6 });
    expect(resolved.timeoutMs).toBe(2.2e9);
    expect(resolved.keepaliveIntervalMs).toBe(3e9);
    expectValidation(() => resolveRunnerOptions({ worker: "/w.ts", timeout: TOO_LONG_S }), /options\.timeout/);
    expectValidation(() => resolveRunnerOptions({ worker: "/w.ts", keepaliveInterval: TOO_LONG_S }), /options\.keepaliveInterval/);
  });

  it("the keepalive timer waits a long interval out, and a reset restarts it", () => {
    vi.useFakeTimers();
    const idle = vi.fn();
    const timer = new KeepaliveTimer(3e9, idle);
    timer.start();
    vi.advanceTimersByTime(2.9e9);
    expect(idle).not.toHaveBeenCalled();
    timer.reset();
    vi.advanceTimersByTime(2.9e9);
    expect(idle).not.toHaveBeenCalled();
    vi.advanceTimersByTime(0.1e9);
    expect(idle).toHaveBeenCalledTimes(1);
    // Fired once and stopped: a reset does not arm it again, only start() does.
    timer.reset();
    vi.advanceTimersByTime(2 * 3e9);
    expect(idle).toHaveBeenCalledTimes(1);
    timer.start();
    vi.advanceTimersByTime(3e9);
    expect(idle).toHaveBeenCalledTimes(2);
    timer.cancel();
    vi.advanceTimersByTime(2 * 3e9);
    expect(idle).toHaveBeenCalledTimes(2);
  });
});

describe("collective timeouts", () => {
  function hangingGroup(defaultTimeoutMs: number): BackendProcessGroup {
    const backend = {
      name: "fake",
      rank: 0,
      size: 2,
      begin: () => {},
      barrier: () => new Promise<void>(() => {}),
      abandon: () => {},
      finish: () => {},
      onFailure: () => {},
      fail: () => {},
      close: async () => {},
    } as unknown as CollectiveBackend;
    return new BackendProcessGroup(backend, logger, defaultTimeoutMs);
  }

  it("barrier({ timeout: 3e6 }) and a 3e6 s default wait 3e6 s, then fail with TimeoutError", async () => {
    vi.useFakeTimers();
    for (const [group, options] of [
      [hangingGroup(60_000), { timeout: 3e6 }],
      [hangingGroup(3e9), {}],
    ] as const) {
      let outcome: unknown = "pending";
      group.barrier(options).then(
        () => (outcome = "resolved"),
        (error: unknown) => (outcome = error),
      );
      await vi.advanceTimersByTimeAsync(2.9e9);
      expect(outcome).toBe("pending");
      await vi.advanceTimersByTimeAsync(0.1e9);
      expect(outcome).toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT", timeoutMs: 3e9 });
    }
  });

  it("group and call timeouts above 365 days are refused, naming the field", () => {
    const base = { rank: 0, size: 1, masterAddr: "127.0.0.1", masterPort: 0 };
    expect(resolveGroupOptions({ ...base, timeout: 2.2e6, operationTimeout: 3e6 })).toMatchObject({ timeout: 2.2e9, operationTimeout: 3e9 });
    expectValidation(() => resolveGroupOptions({ ...base, timeout: TOO_LONG_S }), /^options\.timeout/);
    expectValidation(() => resolveGroupOptions({ ...base, operationTimeout: TOO_LONG_S }), /^options\.operationTimeout/);
    expectValidation(() => checkCallOptions({ timeout: TOO_LONG_S }, "barrier"), /^barrier: options\.timeout/);
  });

  it("group.barrier refuses a timeout above 365 days", async () => {
    await expect(hangingGroup(60_000).barrier({ timeout: TOO_LONG_S })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/barrier: options\.timeout/) });
  });
});

class FakeRunner extends EventEmitter {
  state = "idle";
  stopped = 0;
  calls: Array<{ resolve: (v: unknown) => void; signal?: AbortSignal }> = [];
  async start(): Promise<void> {
    this.state = "ready";
  }
  async stop(): Promise<void> {
    this.stopped++;
    this.state = "stopped";
  }
  async terminate(): Promise<void> {
    this.state = "stopped";
  }
  invoke(_payload: unknown, options: { signal?: AbortSignal }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.calls.push({ resolve, ...(options.signal ? { signal: options.signal } : {}) });
      options.signal?.addEventListener("abort", () => reject(options.signal!.reason));
    });
  }
}

function gatewaySetup(appOptions: Record<string, unknown>) {
  const app = resolveApp(defineApp({ name: "t/long", worker: "/w.ts", ...appOptions }), { gpuCount: 0, baseDir: "/" });
  const made: FakeRunner[] = [];
  const pool = new LocalRunnerPool(app, {
    logger,
    gpus: new GpuAllocator(0),
    createRunner: () => {
      const runner = new FakeRunner();
      made.push(runner);
      return runner as unknown as PoolRunner;
    },
  });
  const dispatcher = new Dispatcher({ app, queue: new MemoryJobQueue(), pool, logger });
  let n = 0;
  const submit = (extra: { startTimeoutMs?: number } = {}): Job => {
    const job = new Job({ id: String(++n), app: app.name, input: {}, priority: "normal", streaming: false, timeoutMs: app.timeout * 1000, ...extra });
    dispatcher.submit(job);
    return job;
  };
  return { pool, made, submit };
}

describe("gateway timeouts", () => {
  it("app timeout: 3e6 runs a request for 3e6 s of silence before it times out", async () => {
    vi.useFakeTimers();
    const { submit } = gatewaySetup({ timeout: 3e6, keepAlive: 60 });
    const job = submit();
    await vi.advanceTimersByTimeAsync(2.9e9);
    expect(job.status).toBe("IN_PROGRESS");
    await vi.advanceTimersByTimeAsync(0.1e9);
    expect(job.status).toBe("TIMED_OUT");
    expect(job.error?.type).toBe("request_timeout");
  });

  it("app keepAlive: 3e6 keeps an idle runner for 3e6 s", async () => {
    vi.useFakeTimers();
    const { submit, made, pool } = gatewaySetup({ keepAlive: 3e6 });
    const job = submit();
    await vi.advanceTimersByTimeAsync(0);
    made[0]!.calls[0]!.resolve({ ok: true });
    await job.done;
    await vi.advanceTimersByTimeAsync(2.9e9);
    expect(made[0]!.stopped).toBe(0);
    expect(pool.counts()).toMatchObject({ idle: 1 });
    await vi.advanceTimersByTimeAsync(0.1e9);
    expect(made[0]!.stopped).toBe(1);
  });

  it("x-fal-request-timeout of 2.2e6 s keeps a queued request waiting that long", async () => {
    vi.useFakeTimers();
    const { submit, made } = gatewaySetup({ keepAlive: 60, timeout: 1e7 });
    const busy = submit();
    const waiting = submit({ startTimeoutMs: 2.2e9 });
    await vi.advanceTimersByTimeAsync(2.1e9);
    expect(busy.status).toBe("IN_PROGRESS");
    expect(waiting.status).toBe("IN_QUEUE");
    await vi.advanceTimersByTimeAsync(0.1e9);
    expect(waiting.status).toBe("TIMED_OUT");
    expect(waiting.error?.type).toBe("start_timeout");
    made[0]!.calls[0]!.resolve({});
    await busy.done;
  });

  it("defineApp refuses timeout, keepAlive, startupTimeout and keepaliveInterval above 365 days, naming each", () => {
    for (const field of ["timeout", "keepAlive", "startupTimeout", "keepaliveInterval"]) {
      expectValidation(() => defineApp({ name: "t/long", worker: "/w.ts", [field]: TOO_LONG_S }), new RegExp(`options\\.${field} must be at most`));
      expect(defineApp({ name: "t/long", worker: "/w.ts", [field]: 2.2e6 })).toMatchObject({ [field]: 2.2e6 });
    }
  });
});
