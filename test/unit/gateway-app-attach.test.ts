/** Apps in attach mode (`launcher: "external"`): what defineApp accepts and refuses, and what the pool asks of its one runner. Nothing is spawned. */
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { defineApp, resolveApp, type AppOptions } from "../../src/gateway/index.js";
import { GpuAllocator } from "../../src/gateway/gpu-allocator.js";
import { LocalRunnerPool } from "../../src/gateway/runner-pool.js";
import { ValidationError, type DistributedRunnerOptions } from "../../src/index.js";

const BASE: AppOptions = { name: "acme/wide", worker: "./workers/echo.ts", worldSize: 16, launcher: "external", workerAddr: "10.0.0.1", workerPort: 29400, joinFile: "run/join" };

function refusal(options: AppOptions): ValidationError {
  try {
    defineApp(options);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error("defineApp accepted it");
}

describe("defineApp with launcher: \"external\"", () => {
  it("keeps one runner from boot on and where ranks join; a relative joinFile resolves against the config's folder", () => {
    const app = defineApp(BASE);
    expect(app).toMatchObject({ minRunners: 1, maxRunners: 1, worldSize: 16, heartbeatTimeout: 10 });
    expect(app.attach).toEqual({ workerAddr: "10.0.0.1", workerPort: 29400, joinFile: "run/join" });
    const resolved = resolveApp(app, { gpuCount: 0, baseDir: "/srv/project" });
    expect(resolved.attach?.joinFile).toBe("/srv/project/run/join");
    expect(resolved.gpusPerRunner).toBe(0);
    // Saying one runner is what it has anyway.
    expect(defineApp({ ...BASE, minRunners: 1, maxRunners: 1 }).maxRunners).toBe(1);
    expect(defineApp({ name: "acme/spawned", worker: "./w.ts" }).attach).toBeUndefined();
  });

  it.each([
    ["maxRunners", { maxRunners: 2 }],
    ["minRunners", { minRunners: 0 }],
    ["keepAlive", { keepAlive: 60 }],
    ["machineType", { worldSize: undefined, machineType: "gpu-x8" as const }],
    ["memory", { memory: 4 }],
    ["cpu", { cpu: 2 }],
    ["env", { env: { A: "1" } }],
    ["secrets", { secrets: ["HF_TOKEN"] }],
  ])("refuses %s with a coded error naming the field", (key, extra) => {
    const error = refusal({ ...BASE, ...extra });
    expect(error.code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
    expect(error.message).toContain(`options.${key} cannot be set with launcher "external"`);
  });

  it("needs worldSize, a valid port and launcher, and refuses attach fields on a spawned app", () => {
    expect(refusal({ ...BASE, worldSize: undefined }).message).toContain("options.worldSize is required");
    expect(refusal({ ...BASE, workerPort: 70000 }).message).toContain("options.workerPort must be a port number");
    expect(refusal({ ...BASE, launcher: "mpirun" as never }).message).toContain("options.launcher must be");
    expect(refusal({ name: "acme/x", worker: "./w.ts", joinFile: "/j" }).message).toContain('options.joinFile needs options.launcher "external"');
  });
});

class FakeRunner extends EventEmitter {
  state = "idle";
  starts = 0;
  constructor(readonly options: DistributedRunnerOptions) {
    super();
  }
  get pids(): number[] {
    return this.state === "ready" ? [11, 12] : [-1, -1];
  }
  async start(): Promise<void> {
    this.starts++;
    this.state = "starting";
    await new Promise((resolve) => setImmediate(resolve));
    this.state = "ready";
  }
  async stop(): Promise<void> {
    this.state = "stopped";
  }
  async terminate(): Promise<void> {
    this.state = "stopped";
  }
  invoke = async (): Promise<unknown> => ({});
  async *stream(): AsyncGenerator<unknown> {}
  fail(): void {
    this.state = "failed";
    this.emit("state", "failed");
  }
}

describe("the runner pool of an app in attach mode", () => {
  it("passes the attach options, reports ranks, and after a failure starts the same runner again (one join string)", async () => {
    const made: FakeRunner[] = [];
    const app = resolveApp(defineApp({ ...BASE, worldSize: 2, joinFile: "/run/join" }), { gpuCount: 0, baseDir: "/" });
    const pool = new LocalRunnerPool(app, { logger: pino({ level: "silent" }), gpus: new GpuAllocator(0), createRunner: (options) => (made.push(new FakeRunner(options)), made.at(-1)! as never) });
    expect(pool.attachStatus()).toEqual({ state: "waiting", joined: 0, worldSize: 2 });
    await pool.warm();
    expect(made).toHaveLength(1);
    expect(made[0]!.options).toMatchObject({ launcher: "external", workerAddr: "10.0.0.1", workerPort: 29400, joinFile: "/run/join", worldSize: 2, heartbeatTimeout: 10 });
    expect(made[0]!.options).not.toHaveProperty("devices");
    expect(pool.attachStatus()).toEqual({ state: "ready", joined: 2, worldSize: 2 });
    made[0]!.fail();
    await vi.waitFor(() => expect(made[0]!.starts).toBe(2));
    expect(made).toHaveLength(1);
    await pool.close();
    expect(pool.attachStatus()?.state).toBe("stopped");
  });
});
