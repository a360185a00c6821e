/**
 * Runner pools: the runners of one app. A runner starts on demand (cold
 * start) or at boot for `minRunners`, serves `concurrency` requests at once
 * while warm, stops after `keepAlive` idle seconds, is replaced when it
 * fails, and there are never more than `maxRunners`.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { StateError, type MultirankError } from "../errors.js";
import { DistributedRunner, type RunnerState } from "../runner/distributed-runner.js";
import type { DistributedRunnerOptions } from "../runner/options.js";
import type { ResolvedApp } from "./app.js";
import { LongTimer } from "../util/timers.js";
import type { GpuAllocator } from "./gpu-allocator.js";

/** The part of a runner a pool uses (so tests can pass fakes). */
export type PoolRunner = Pick<DistributedRunner, "start" | "stop" | "terminate" | "invoke" | "stream" | "on" | "off" | "state">;

/** Makes a runner for a pool. @default `new DistributedRunner(options)` */
export type RunnerFactory = (options: DistributedRunnerOptions) => PoolRunner;

/** A runner lent to one request; `release()` gives it back. */
export interface RunnerLease {
  readonly runner: PoolRunner;
  /** Names the runner in status responses (Runpod's `workerId`). */
  readonly workerId: string;
  release(): void;
}

/** Runner counts by pool state. */
export interface PoolCounts {
  starting: number;
  idle: number;
  busy: number;
  stopping: number;
}

/** Failures of a pool's runners, for health reports. */
export interface PoolFailures {
  replaced: number;
  last?: { at: string; code: string; message: string };
}

/** What a dispatcher needs from a pool. */
export interface RunnerPool {
  /** True when {@link acquire} can lend a runner without exceeding the limits. */
  hasCapacity(): boolean;
  /** Lends a runner, starting one if needed. The slot is reserved synchronously. */
  acquire(): Promise<RunnerLease>;
  /** Runner counts, for metrics and health. */
  counts(): PoolCounts;
  /** Runners replaced after a failure (a rank died or hung) since the pool started, and the last failure. */
  failures?(): PoolFailures;
  /** Emits "change" when capacity may have grown (a runner became ready, stopped, or was replaced). */
  on(event: "change", listener: () => void): this;
  /** Stops every runner; `terminate` kills instead of stopping gracefully. */
  close(options?: { timeout?: number; terminate?: boolean }): Promise<void>;
}

/** Options of {@link LocalRunnerPool}. */
export interface LocalRunnerPoolOptions {
  logger: Logger;
  gpus: GpuAllocator;
  /** @default `new DistributedRunner(options)` */
  createRunner?: RunnerFactory;
}

type SlotState = "starting" | "ready" | "stopping";

interface Slot {
  id: string;
  runner: PoolRunner;
  state: SlotState;
  active: number;
  ready: Promise<void>;
  idleTimer: LongTimer | undefined;
  gpus: number[];
}

/** A pool of runner processes on this host. */
export class LocalRunnerPool extends EventEmitter implements RunnerPool {
  readonly #app: ResolvedApp;
  readonly #log: Logger;
  readonly #gpus: GpuAllocator;
  readonly #createRunner: RunnerFactory;
  readonly #slots = new Set<Slot>();
  #nextId = 1;
  #closed = false;
  #replaced = 0;
  #lastFailure: PoolFailures["last"];

  constructor(app: ResolvedApp, options: LocalRunnerPoolOptions) {
    super();
    this.#app = app;
    this.#log = options.logger.child({ component: "pool", app: app.name });
    this.#gpus = options.gpus;
    this.#createRunner = options.createRunner ?? ((runnerOptions) => new DistributedRunner(runnerOptions));
  }

  /** Starts `minRunners` runners; resolves when they are ready (or failed, which is logged). */
  async warm(): Promise<void> {
    await Promise.all(this.#fillToMinimum().map((slot) => slot.ready.catch(() => {})));
  }

  hasCapacity(): boolean {
    if (this.#closed) return false;
    for (const slot of this.#slots) if (slot.state !== "stopping" && slot.active < this.#app.concurrency) return true;
    return this.#live() < this.#app.maxRunners && this.#gpus.available >= this.#app.gpusPerRunner;
  }

  acquire(): Promise<RunnerLease> {
    if (this.#closed) return Promise.reject(new StateError("the runner pool is closed"));
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (slot.state === "stopping" || slot.active >= this.#app.concurrency) continue;
      // Prefer a warm runner; among warm ones, the busiest, so idle ones can reach keepAlive and stop.
      if (!best || (slot.state === "ready" && best.state !== "ready") || (slot.state === best.state && slot.active > best.active)) best = slot;
    }
    const slot = best ?? this.#startSlot();
    if (!slot) return Promise.reject(new StateError(`app ${this.#app.name} has no runner capacity`));
    slot.active++;
    slot.idleTimer?.cancel();
    slot.idleTimer = undefined;
    const lease = (): RunnerLease => {
      let released = false;
      return {
        runner: slot.runner,
        workerId: slot.id,
        release: () => {
          if (released) return;
          released = true;
          this.#release(slot);
        },
      };
    };
    if (slot.state === "ready") return Promise.resolve(lease());
    return slot.ready.then(lease, (error: unknown) => {
      slot.active--;
      throw error;
    });
  }

  counts(): PoolCounts {
    const counts: PoolCounts = { starting: 0, idle: 0, busy: 0, stopping: 0 };
    for (const slot of this.#slots) {
      if (slot.state === "ready") counts[slot.active > 0 ? "busy" : "idle"]++;
      else counts[slot.state]++;
    }
    return counts;
  }

  async close(options: { timeout?: number; terminate?: boolean } = {}): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#slots].map((slot) => this.#stopSlot(slot, options)));
  }

  #live(): number {
    let live = 0;
    for (const slot of this.#slots) if (slot.state !== "stopping") live++;
    return live;
  }

  #startSlot(): Slot | undefined {
    if (this.#closed || this.#live() >= this.#app.maxRunners) return undefined;
    const gpus = this.#gpus.take(this.#app.gpusPerRunner);
    if (!gpus) return undefined;
    const app = this.#app;
    const id = `${app.name.replace("/", "--")}-${this.#nextId++}`;
    const runner = this.#createRunner({
      worker: app.workerPath,
      worldSize: app.worldSize,
      devices: app.gpusPerRunner > 0 ? gpus : "cpu",
      env: { ...app.rankEnv },
      logger: this.#log.child({ runner: id }),
      keepalivePayload: app.keepalivePayload,
      heartbeatTimeout: app.heartbeatTimeout,
      ...(app.memoryMiB === undefined ? {} : { memoryLimitMiB: app.memoryMiB }),
      ...(app.cpu === undefined ? {} : { cpusPerRank: app.cpu }),
      ...(app.keepaliveInterval === undefined ? {} : { keepaliveInterval: app.keepaliveInterval }),
    });
    const slot: Slot = { id, runner, state: "starting", active: 0, ready: Promise.resolve(), idleTimer: undefined, gpus };
    this.#slots.add(slot);
    const started = Date.now();
    this.#log.info({ runner: id, worldSize: app.worldSize, gpus }, "starting a runner (cold start)");
    slot.ready = runner.start({ ...app.setupArgs, timeout: app.startupTimeout }).then(
      () => {
        if (slot.state !== "starting") throw new StateError(`runner ${id} was stopped while it started`);
        slot.state = "ready";
        this.#log.info({ runner: id, ms: Date.now() - started }, "runner ready");
        runner.on("state", (state: RunnerState) => this.#onRunnerState(slot, state));
        runner.on("failure", (error: MultirankError) => this.#onRunnerFailure(slot, error));
        if (slot.active === 0) this.#armIdle(slot);
        this.emit("change");
      },
      async (error: unknown) => {
        this.#log.error({ runner: id, err: error }, "runner failed to start");
        await this.#removeSlot(slot, true);
        throw error;
      },
    );
    slot.ready.catch(() => {});
    return slot;
  }

  #release(slot: Slot): void {
    slot.active--;
    if (slot.active === 0 && slot.state === "ready") this.#armIdle(slot);
    this.emit("change");
  }

  #armIdle(slot: Slot): void {
    slot.idleTimer?.cancel();
    // A LongTimer: keepAlive may be longer than a native timer's 24.8 days.
    slot.idleTimer = new LongTimer(this.#app.keepAlive * 1000, () => {
      slot.idleTimer = undefined;
      if (slot.active > 0 || slot.state !== "ready") return;
      if (this.#live() <= this.#app.minRunners) return;
      this.#log.info({ runner: slot.id, keepAlive: this.#app.keepAlive }, "runner idle past keepAlive; stopping it");
      void this.#stopSlot(slot, {});
    }).unref();
  }

  failures(): PoolFailures {
    return { replaced: this.#replaced, ...(this.#lastFailure ? { last: this.#lastFailure } : {}) };
  }

  #onRunnerFailure(slot: Slot, error: MultirankError): void {
    this.#lastFailure = { at: new Date().toISOString(), code: error.code, message: error.message.split("\n")[0]! };
    this.#log.error({ runner: slot.id, code: error.code, err: error }, "runner failed");
  }

  #onRunnerState(slot: Slot, state: RunnerState): void {
    if (state !== "failed" || slot.state === "stopping") return;
    this.#replaced++;
    this.#log.error({ runner: slot.id, reason: this.#lastFailure?.code }, "runner failed (a rank died or hung); replacing it");
    void this.#removeSlot(slot, true).then(() => {
      this.#fillToMinimum();
      this.emit("change");
    });
  }

  async #stopSlot(slot: Slot, options: { timeout?: number; terminate?: boolean }): Promise<void> {
    if (slot.state === "stopping") return;
    const wasStarting = slot.state === "starting";
    slot.state = "stopping";
    slot.idleTimer?.cancel();
    this.emit("change");
    try {
      if (options.terminate || wasStarting) await slot.runner.terminate();
      else await slot.runner.stop(options.timeout === undefined ? {} : { timeout: options.timeout });
    } catch (error) {
      this.#log.warn({ runner: slot.id, err: error }, "runner did not stop cleanly; killing it");
      await slot.runner.terminate().catch(() => {});
    }
    await this.#removeSlot(slot, false);
  }

  async #removeSlot(slot: Slot, kill: boolean): Promise<void> {
    if (!this.#slots.has(slot)) return;
    slot.state = "stopping";
    slot.idleTimer?.cancel();
    if (kill) await slot.runner.terminate().catch(() => {});
    if (!this.#slots.delete(slot)) return;
    this.#gpus.give(slot.gpus);
    this.emit("change");
  }

  #fillToMinimum(): Slot[] {
    const started: Slot[] = [];
    while (!this.#closed && this.#live() < this.#app.minRunners) {
      const slot = this.#startSlot();
      if (!slot) break;
      started.push(slot);
    }
    return started;
  }
}

/**
 * Waits until `pool` can lend a runner, however busy it is now, and leases
 * one. Rejects with `signal`'s reason when it aborts first.
 */
export async function acquireWhenFree(pool: LocalRunnerPool, signal?: AbortSignal): Promise<RunnerLease> {
  for (;;) {
    signal?.throwIfAborted();
    if (pool.hasCapacity()) return pool.acquire();
    await new Promise<void>((resolve, reject) => {
      const onChange = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = (): void => {
        pool.off("change", onChange);
        reject(signal!.reason);
      };
      pool.once("change", onChange);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
