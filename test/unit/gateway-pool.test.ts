/** Runner pool and dispatcher policy with fake runners: nothing is spawned. */
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { defineApp, resolveApp, MemoryJobQueue, type PoolRunner } from "../../src/gateway/index.js";
import { Dispatcher } from "../../src/gateway/dispatcher.js";
import { GpuAllocator } from "../../src/gateway/gpu-allocator.js";
import { Job } from "../../src/gateway/job.js";
import { LocalRunnerPool } from "../../src/gateway/runner-pool.js";
import { AbortError, RankExitError, type DistributedRunnerOptions } from "../../src/index.js";

const logger = pino({ level: "silent" });

class FakeRunner extends EventEmitter {
  state = "idle";
  started = 0;
  stopped = 0;
  calls: Array<{ payload: any; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
  constructor(readonly options: DistributedRunnerOptions) {
    super();
  }
  async start(): Promise<void> {
    this.started++;
    this.state = "ready";
  }
  async stop(): Promise<void> {
    this.stopped++;
    this.state = "stopped";
  }
  async terminate(): Promise<void> {
    this.state = "stopped";
  }
  invoke(payload: any, options: { signal?: AbortSignal }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.calls.push({ payload, resolve, reject });
      options.signal?.addEventListener("abort", () => reject(options.signal!.reason));
    });
  }
  crash(): void {
    for (const call of this.calls.splice(0)) call.reject(new RankExitError(1, 3, null, ""));
    this.state = "failed";
    this.emit("state", "failed");
  }
}

function setup(appOptions: Record<string, unknown> = {}, gpuCount = 0) {
  const app = resolveApp(defineApp({ name: "t/fake", worker: "/w.ts", keepAlive: 1, ...appOptions }), { gpuCount, baseDir: "/" });
  const made: FakeRunner[] = [];
  const pool = new LocalRunnerPool(app, {
    logger,
    gpus: new GpuAllocator(gpuCount),
    createRunner: (options) => {
      const runner = new FakeRunner(options);
      made.push(runner);
      return runner as unknown as PoolRunner;
    },
  });
  const dispatcher = new Dispatcher({ app, queue: new MemoryJobQueue(), pool, logger });
  let n = 0;
  const submit = (input: unknown = {}): Job => {
    const job = new Job({ id: String(++n), app: app.name, input, priority: "normal", streaming: false, timeoutMs: app.timeout * 1000 });
    dispatcher.submit(job);
    return job;
  };
  return { app, pool, dispatcher, made, submit };
}

const tick = () => new Promise((r) => setTimeout(r, 0));


describe("LocalRunnerPool + Dispatcher", () => {
  it("cold-starts on the first job, reuses the warm runner, stops it after keepAlive", async () => {
    const { made, submit, pool } = setup({ keepAlive: 0.1 });
    const a = submit({ n: 1 });
    await tick();
    expect(made).toHaveLength(1);
    made[0]!.calls[0]!.resolve({ ok: 1 });
    await a.done;
    const b = submit({ n: 2 });
    await tick();
    made[0]!.calls[1]!.resolve({ ok: 2 });
    await b.done;
    expect(JSON.parse(b.outputJson!)).toEqual({ ok: 2 });
    expect(made).toHaveLength(1);
    await vi.waitFor(() => expect(pool.counts()).toMatchObject({ idle: 1 }));
    await vi.waitFor(() => expect(made[0]!.stopped).toBe(1));
    expect(pool.counts()).toEqual({ starting: 0, idle: 0, busy: 0, stopping: 0 });
  });

  it("queues beyond maxRunners × concurrency and scales up to maxRunners", async () => {
    const { made, submit, dispatcher } = setup({ maxRunners: 2 });
    const jobs = [submit(), submit(), submit()];
    await tick();
    expect(made).toHaveLength(2);
    expect(dispatcher.queueLength).toBe(1);
    made[0]!.calls[0]!.resolve("x");
    await jobs[0]!.done;
    await tick();
    expect(made).toHaveLength(2);
    expect(made[0]!.calls).toHaveLength(2);
  });

  it("replaces a crashed runner up to minRunners and fails its job as runner_crash", async () => {
    const { made, submit, pool } = setup({ minRunners: 1, maxRunners: 1 });
    await pool.warm();
    expect(made).toHaveLength(1);
    const job = submit();
    await tick();
    made[0]!.crash();
    await job.done;
    expect(job.status).toBe("FAILED");
    expect(job.error?.type).toBe("runner_crash");
    await vi.waitFor(() => expect(made).toHaveLength(2));
    await vi.waitFor(() => expect(pool.counts()).toMatchObject({ idle: 1 }));
  });

  it("retries per policy: a crash is retried, a worker error is not", async () => {
    const { made, submit } = setup({ retries: { max: 2, on: ["crash"] }, maxRunners: 1 });
    const job = submit();
    await tick();
    made[0]!.crash();
    await vi.waitFor(() => expect(made).toHaveLength(2));
    await vi.waitFor(() => expect(made[1]!.calls).toHaveLength(1));
    expect(job.status).toBe("IN_PROGRESS");
    made[1]!.calls[0]!.resolve("second time lucky");
    await job.done;
    expect(job.status).toBe("COMPLETED");
    expect(job.attempts).toBe(2);
  });

  it("gpu apps get distinct GPUs per runner, and wait when none are free", async () => {
    const { made, submit, dispatcher } = setup({ machineType: "gpu-x2", maxRunners: 3 }, 4);
    submit();
    submit();
    submit();
    await tick();
    expect(made.map((r) => r.options.devices)).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(dispatcher.queueLength).toBe(1);
  });

  it("isolateDevices reaches each runner, one GPU apiece (the LLM app's one-runner-per-GPU layout)", async () => {
    const { made, submit } = setup({ machineType: "gpu", maxRunners: 2, isolateDevices: true }, 2);
    submit();
    submit();
    await tick();
    expect(made.map((r) => [r.options.devices, r.options.isolateDevices])).toEqual([
      [[0], true],
      [[1], true],
    ]);
    expect(() => defineApp({ name: "t/x", worker: "/w.ts", isolateDevices: "yes" as unknown as boolean })).toThrow(/options\.isolateDevices must be a boolean/);
  });
});

describe("cancellations are AbortErrors", () => {
  it("a cancelled request and one cut short by shutdown see an AbortError (MULTIRANK_ERR_ABORTED) as the signal's reason", async () => {
    const { made, submit, dispatcher } = setup({ maxRunners: 2 });
    const cancelled = submit();
    const shutDown = submit();
    await vi.waitFor(() => expect(made.flatMap((runner) => runner.calls)).toHaveLength(2));
    // The signals the runners were handed: their reason is what a runner (and the ranks) see.
    const signals = [cancelled.signal!, shutDown.signal!];
    dispatcher.cancel(cancelled);
    await cancelled.done;
    expect(cancelled.status).toBe("CANCELLED");
    await dispatcher.drain(0);
    expect(shutDown.status).toBe("CANCELLED");
    expect(shutDown.error?.type).toBe("shutdown");
    const reasons = signals.map((signal) => signal.reason as unknown);
    for (const reason of reasons) {
      expect(reason).toBeInstanceOf(AbortError);
      expect(reason).toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    }
    expect((reasons[0] as Error).message).toMatch(/cancelled/);
    expect((reasons[1] as Error).message).toMatch(/shut down/);
  });

  it("runs jobs a shared queue hands over, and a hand-back drain returns them IN_QUEUE instead of cancelling them", async () => {
    const { made, dispatcher, app } = setup({ maxRunners: 1 });
    const taken = (id: string): Job => new Job({ id, app: app.name, input: { id }, priority: "normal", streaming: false, timeoutMs: 60_000 });
    const first = taken("a");
    const finished = dispatcher.runTaken(first);
    await vi.waitFor(() => expect(made.flatMap((runner) => runner.calls)).toHaveLength(1));
    expect(dispatcher.takenJob("a")).toBe(first);
    made[0]!.calls.shift()!.resolve({ ok: true });
    expect(await finished).toBe("settled");
    expect(first.status).toBe("COMPLETED");
    expect(dispatcher.takenJob("a")).toBeUndefined();

    // One running, one waiting for the only runner: a hand-back drain gives both back, neither is cancelled.
    const running = taken("b");
    const waiting = taken("c");
    const outcomes = [dispatcher.runTaken(running), dispatcher.runTaken(waiting)];
    await vi.waitFor(() => expect(made.flatMap((runner) => runner.calls)).toHaveLength(1));
    const runningSignal = running.signal!;
    await dispatcher.drain(0, { handBack: true });
    expect(await Promise.all(outcomes)).toEqual(["handed-back", "handed-back"]);
    expect([running.status, waiting.status]).toEqual(["IN_QUEUE", "IN_QUEUE"]);
    expect(runningSignal.aborted).toBe(true);
    expect(running.logs.at(-1)?.message).toMatch(/goes back to the queue/);
    // Once closing, a job handed over goes straight back.
    expect(await dispatcher.runTaken(taken("d"))).toBe("handed-back");
  });
});
