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
import type { RankPool } from "../runner/rank-pool.js";
import type { ResolvedApp } from "./app.js";
import { LongTimer } from "../util/timers.js";
import type { GpuAllocator } from "./gpu-allocator.js";

/** The part of a runner a pool uses (so tests can pass fakes); `pids` tells an app in attach mode which ranks joined. */
export type PoolRunner = Pick<DistributedRunner, "start" | "stop" | "terminate" | "invoke" | "stream" | "on" | "off" | "state"> & Partial<Pick<DistributedRunner, "pids">>;

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

/** How far the ranks of an app in attach mode (`launcher: "external"`) have come. */
export interface AttachStatus {
  /**
   * `waiting`: the runner listens and not every rank has joined (or set up);
   * ranks may join now. `ready`: it serves. `recovering`: its ranks failed and
   * it is ending their session (ranks that join now are refused) before it
   * waits again. `stopped`: the gateway closed.
   */
  state: "waiting" | "ready" | "recovering" | "stopped";
  /** Ranks that joined the current runner. */
  joined: number;
  worldSize: number;
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
  /** For an app in attach mode: whether its runner waits for ranks; undefined when the gateway spawns them. */
  attachStatus?(): AttachStatus | undefined;
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
  /** Pre-started rank processes the runners take their ranks from (spawned runners only). @default none */
  rankPool?: RankPool;
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
  /** Removes the listeners this slot put on its runner (attach mode reuses the runner for the next slot). */
  unlisten: () => void;
}

/** Seconds between tries to start an attach-mode app's runner again after a start failed (a bind error, say). */
const ATTACH_RETRY_SECONDS = 5;

/** A pool of runner processes on this host. */
export class LocalRunnerPool extends EventEmitter implements RunnerPool {
  readonly #app: ResolvedApp;
  readonly #log: Logger;
  readonly #gpus: GpuAllocator;
  readonly #createRunner: RunnerFactory;
  readonly #rankPool: RankPool | undefined;
  readonly #slots = new Set<Slot>();
  #nextId = 1;
  #closed = false;
  #replaced = 0;
  #lastFailure: PoolFailures["last"];
  /**
   * Attach mode: the app's one runner, made once and started again after each
   * failure, so its join string (endpoint, key, secret) stays the one the
   * launcher's ranks hold.
   */
  #attachRunner: PoolRunner | undefined;
  #attachRetry: LongTimer | undefined;

  constructor(app: ResolvedApp, options: LocalRunnerPoolOptions) {
    super();
    this.#app = app;
    this.#log = options.logger.child({ component: "pool", app: app.name });
    this.#gpus = options.gpus;
    this.#rankPool = options.rankPool;
    const createRunner = options.createRunner ?? ((runnerOptions) => new DistributedRunner(runnerOptions));
    this.#createRunner = app.attach ? (runnerOptions) => (this.#attachRunner ??= createRunner(runnerOptions)) : createRunner;
  }

  /** Starts `minRunners` runners; resolves when they are ready (or failed, which is logged). */
  async warm(): Promise<void> {
    await Promise.all(this.#fillToMinimum().map((slot) => slot.ready.catch(() => {})));
  }

  hasCapacity(): boolean {
    if (this.#closed) return false;
    for (const slot of this.#slots) if (slot.state !== "stopping" && slot.active < this.#app.concurrency) return true;
    return this.#occupied() < this.#app.maxRunners && this.#gpus.available >= this.#app.gpusPerRunner;
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

  attachStatus(): AttachStatus | undefined {
    if (!this.#app.attach) return undefined;
    const worldSize = this.#app.worldSize;
    const runner = this.#attachRunner;
    const joined = runner?.state === "starting" || runner?.state === "ready" ? (runner.pids ?? []).filter((pid) => pid > 0).length : 0;
    if (this.#closed) return { state: "stopped", joined, worldSize };
    const ready = runner?.state === "ready" && [...this.#slots].some((slot) => slot.state === "ready");
    // Before boot made the runner, ranks that connect are not refused: their ZeroMQ socket keeps trying until it listens.
    const waiting = runner === undefined || runner.state === "starting";
    return { state: ready ? "ready" : waiting ? "waiting" : "recovering", joined, worldSize };
  }

  async close(options: { timeout?: number; terminate?: boolean } = {}): Promise<void> {
    this.#closed = true;
    this.#attachRetry?.cancel();
    await Promise.all([...this.#slots].map((slot) => this.#stopSlot(slot, options)));
  }

  /**
   * Runners that count against `maxRunners`. In attach mode a stopping one
   * counts too: the next slot starts the same runner again, which must have
   * stopped first.
   */
  #occupied(): number {
    return this.#app.attach ? this.#slots.size : this.#live();
  }

  #live(): number {
    let live = 0;
    for (const slot of this.#slots) if (slot.state !== "stopping") live++;
    return live;
  }

  #startSlot(): Slot | undefined {
    if (this.#closed || this.#occupied() >= this.#app.maxRunners) return undefined;
    const gpus = this.#gpus.take(this.#app.gpusPerRunner);
    if (!gpus) return undefined;
    const app = this.#app;
    const id = `${app.name.replace("/", "--")}-${this.#nextId++}`;
    const common = {
      worker: app.workerPath,
      worldSize: app.worldSize,
      logger: this.#log.child({ runner: id }),
      keepalivePayload: app.keepalivePayload,
      heartbeatTimeout: app.heartbeatTimeout,
      ...(app.keepaliveInterval === undefined ? {} : { keepaliveInterval: app.keepaliveInterval }),
    };
    const runner = this.#createRunner(
      app.attach
        ? { ...common, launcher: "external", workerAddr: app.attach.workerAddr, workerPort: app.attach.workerPort, ...(app.attach.joinFile === undefined ? {} : { joinFile: app.attach.joinFile }) }
        : {
            ...common,
            devices: app.gpusPerRunner > 0 ? gpus : "cpu",
            ...(app.isolateDevices ? { isolateDevices: true } : {}),
            env: { ...app.rankEnv },
            ...(app.memoryMiB === undefined ? {} : { memoryLimitMiB: app.memoryMiB }),
            ...(app.cpu === undefined ? {} : { cpusPerRank: app.cpu }),
            ...(this.#rankPool ? { rankPool: this.#rankPool } : {}),
          },
    );
    const slot: Slot = { id, runner, state: "starting", active: 0, ready: Promise.resolve(), idleTimer: undefined, gpus, unlisten: () => {} };
    this.#slots.add(slot);
    const started = Date.now();
    if (app.attach) this.#log.info({ runner: id, worldSize: app.worldSize, workerAddr: app.attach.workerAddr, joinFile: app.attach.joinFile }, "waiting for the launcher's ranks to join");
    else this.#log.info({ runner: id, worldSize: app.worldSize, gpus }, "starting a runner (cold start)");
    slot.ready = runner.start({ ...app.setupArgs, timeout: app.startupTimeout }).then(
      () => {
        if (slot.state !== "starting") throw new StateError(`runner ${id} was stopped while it started`);
        slot.state = "ready";
        this.#log.info({ runner: id, ms: Date.now() - started }, "runner ready");
        const onState = (state: RunnerState): void => this.#onRunnerState(slot, state);
        const onFailure = (error: MultirankError): void => this.#onRunnerFailure(slot, error);
        runner.on("state", onState);
        runner.on("failure", onFailure);
        slot.unlisten = () => {
          runner.off("state", onState);
          runner.off("failure", onFailure);
        };
        if (slot.active === 0) this.#armIdle(slot);
        this.emit("change");
      },
      async (error: unknown) => {
        this.#log.error({ runner: id, err: error }, "runner failed to start");
        await this.#removeSlot(slot, true);
        // Attach mode: the launcher may start the ranks later (a job still queued, mpirun run again); keep waiting.
        if (app.attach) this.#retryAttachLater();
        throw error;
      },
    );
    slot.ready.catch(() => {});
    return slot;
  }

  #retryAttachLater(): void {
    if (this.#closed || this.#attachRetry) return;
    this.#attachRetry = new LongTimer(ATTACH_RETRY_SECONDS * 1000, () => {
      this.#attachRetry = undefined;
      this.#fillToMinimum();
      this.emit("change");
    }).unref();
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
    if (this.#app.attach) this.#log.error({ runner: slot.id, reason: this.#lastFailure?.code }, "runner failed (a rank died or hung); waiting for the launcher to start the ranks again");
    else this.#log.error({ runner: slot.id, reason: this.#lastFailure?.code }, "runner failed (a rank died or hung); replacing it");
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
    slot.unlisten();
    if (kill) await slot.runner.terminate().catch(() => {});
    if (!this.#slots.delete(slot)) return;
    this.#gpus.give(slot.gpus);
    this.emit("change");
  }

  #fillToMinimum(): Slot[] {
    const started: Slot[] = [];
    while (!this.#closed && this.#occupied() < this.#app.minRunners) {
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
