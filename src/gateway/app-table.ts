/**
 * The gateway's apps while it runs: each app's runner pool and dispatcher,
 * by name. Apps from the config are added at boot; functions registered on a
 * `multirank serve` are added, replaced and removed while it serves.
 */
import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import type { ResolvedApp } from "./app.js";
import { Dispatcher, type DrainOptions, type JobFinishedListener } from "./dispatcher.js";
import type { GpuAllocator } from "./gpu-allocator.js";
import { MemoryJobQueue, type JobQueue } from "./job-queue.js";
import type { RankPool } from "../runner/rank-pool.js";
import { LocalRunnerPool, type RunnerFactory, type RunnerPool } from "./runner-pool.js";

/** What {@link AppTable} needs to make pools and dispatchers. */
export interface AppTableOptions {
  logger: Logger;
  gpus: GpuAllocator;
  onFinished: JobFinishedListener;
  createRunner?: RunnerFactory | undefined;
  /** Pre-started rank processes the apps' runners take their ranks from. */
  rankPool?: RankPool | undefined;
  createQueue?: ((app: ResolvedApp) => JobQueue) | undefined;
  /** Called after an app is added, replaced or removed (a shared queue starts or stops taking its jobs). */
  onChange?: (() => void) | undefined;
  /**
   * A replaced or removed app hands its unfinished jobs back instead of
   * cancelling them after the grace (a shared queue runs them again). @default false
   */
  handBackOnRetire?: boolean | undefined;
}

/** One app being served. */
export interface ServedApp {
  readonly app: ResolvedApp;
  readonly pool: LocalRunnerPool;
  readonly dispatcher: Dispatcher;
}

/** The apps a gateway serves. */
export class AppTable {
  /** Dispatchers by app name; the protocols look apps up here. */
  readonly dispatchers = new Map<string, Dispatcher>();
  readonly #served = new Map<string, ServedApp>();
  readonly #options: AppTableOptions;
  /** Pools of replaced or removed apps, still finishing their requests. */
  readonly #retiring = new Set<Promise<void>>();

  constructor(options: AppTableOptions) {
    this.#options = options;
  }

  /** The apps, in the order they were added. */
  get apps(): ResolvedApp[] {
    return [...this.#served.values()].map((served) => served.app);
  }

  get(name: string): ServedApp | undefined {
    return this.#served.get(name);
  }

  /** Serves `app`. @throws {ValidationError} when an app of that name is already served. */
  add(app: ResolvedApp): ServedApp {
    if (this.#served.has(app.name)) throw new ValidationError(`two apps are named ${app.name}`);
    const served = this.#serve(app);
    this.#options.onChange?.();
    return served;
  }

  /**
   * Serves `app` in place of the app of the same name, if any: new requests go
   * to the new one at once; the old one finishes what it has (up to
   * `graceMs`) and stops its runners in the background.
   */
  replace(app: ResolvedApp, graceMs: number): ServedApp {
    const old = this.#served.get(app.name);
    this.#served.delete(app.name);
    const served = this.#serve(app);
    if (old) this.#retire(old, graceMs);
    this.#options.onChange?.();
    return served;
  }

  /** Stops serving `name` (its requests finish first, up to `graceMs`). */
  remove(name: string, graceMs: number): void {
    const old = this.#served.get(name);
    if (!old) return;
    this.#served.delete(name);
    this.dispatchers.delete(name);
    this.#retire(old, graceMs);
    this.#options.onChange?.();
  }

  /** Starts every app's `minRunners`. */
  async warm(): Promise<void> {
    await Promise.all([...this.#served.values()].map((served) => served.pool.warm()));
  }

  /** Drains every dispatcher (up to `graceMs`; see {@link DrainOptions}), then stops every pool. */
  async close(graceMs: number, options: DrainOptions = {}): Promise<void> {
    const served = [...this.#served.values()];
    await Promise.all(served.map((s) => s.dispatcher.drain(graceMs, options)));
    await Promise.all(served.map((s) => s.pool.close({ timeout: 10 })));
    await Promise.all(this.#retiring);
  }

  #serve(app: ResolvedApp): ServedApp {
    const { logger, gpus, createRunner, createQueue, onFinished, rankPool } = this.#options;
    const pool = new LocalRunnerPool(app, { logger, gpus, ...(createRunner ? { createRunner } : {}), ...(rankPool ? { rankPool } : {}) });
    const queue = createQueue?.(app) ?? new MemoryJobQueue();
    const dispatcher = new Dispatcher({ app, queue, pool: pool as RunnerPool, logger, onFinished });
    const served = { app, pool, dispatcher };
    this.#served.set(app.name, served);
    this.dispatchers.set(app.name, dispatcher);
    return served;
  }

  #retire(old: ServedApp, graceMs: number): void {
    const done = (async () => {
      await old.dispatcher.drain(graceMs, { handBack: this.#options.handBackOnRetire === true });
      await old.pool.close({ timeout: 10 });
    })().catch((error: unknown) => this.#options.logger.warn({ err: error, app: old.app.name }, "a replaced app did not stop cleanly"));
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
  }
}
