import type { Logger } from "pino";
import { cudaAvailability, listDevices } from "../devices/index.js";
import { StateError, type ValidationError } from "../errors.js";
import { GpuAllocator } from "../gateway/gpu-allocator.js";
import { acquireWhenFree, LocalRunnerPool } from "../gateway/runner-pool.js";
import { defaultLogger } from "../util/logger.js";
import { dataRoot } from "./data-root.js";
import { ensureEnvironment } from "./environment.js";
import { functionApp, linkMultirank, writeBundle } from "./function-app.js";
import { bundleFunctionModule } from "./function-package.js";
import { claimName, type CallOptions, type FunctionDefinition, type Host } from "./host.js";

/** Options of {@link LocalHost}. */
export interface LocalHostOptions {
  /** Environments and bundles. @default process.env.MULTIRANK_CACHE_DIR ?? ~/.cache/multirank */
  cacheDir?: string;
  /** The data root functions see through `dataPath()`. @default process.env.MULTIRANK_DATA_DIR ?? ~/.local/share/multirank */
  dataDir?: string;
  logger?: Logger;
}

/** A function made ready on this host: its pool of runners over its environment. */
interface Prepared {
  readonly module: string;
  readonly pool: LocalRunnerPool;
}

/**
 * Runs remote functions on this machine, each in its own environment: a
 * directory whose `node_modules` holds exactly its dependencies, with the
 * function's module bundled into it, served by a pool of runners that stays
 * warm for `keepAlive` seconds after each call.
 */
export class LocalHost implements Host {
  readonly kind = "local" as const;
  readonly description = "local";
  readonly #options: LocalHostOptions;
  readonly #prepared = new Map<string, Promise<Prepared>>();
  readonly #modules = new Map<string, string>();
  #log: Logger | undefined;
  #gpus: GpuAllocator | undefined;
  #closed = false;

  constructor(options: LocalHostOptions = {}) {
    this.#options = options;
  }

  #logger(): Logger {
    return (this.#log ??= (this.#options.logger ?? defaultLogger()).child({ component: "functions", host: "local" }));
  }

  /** @throws {ValidationError} when another module already defined a function of that name on this host. */
  claim(definition: FunctionDefinition): void {
    claimName(this.#modules, definition);
  }

  async invoke(definition: FunctionDefinition, payload: unknown, options: CallOptions): Promise<unknown> {
    const { pool } = await this.#prepare(definition, options.signal);
    const lease = await acquireWhenFree(pool, options.signal);
    options.onStart?.();
    try {
      return await lease.runner.invoke(payload, { timeout: options.timeout, ...(options.signal ? { signal: options.signal } : {}) });
    } finally {
      lease.release();
    }
  }

  async *stream(definition: FunctionDefinition, payload: unknown, options: CallOptions): AsyncGenerator<unknown, void, undefined> {
    const { pool } = await this.#prepare(definition, options.signal);
    const lease = await acquireWhenFree(pool, options.signal);
    options.onStart?.();
    try {
      yield* lease.runner.stream(payload, { timeout: options.timeout, ...(options.signal ? { signal: options.signal } : {}) });
    } finally {
      lease.release();
    }
  }

  /** Stops every function's runners. */
  async close(): Promise<void> {
    this.#closed = true;
    const prepared = await Promise.allSettled(this.#prepared.values());
    this.#prepared.clear();
    await Promise.all(prepared.map((p) => (p.status === "fulfilled" ? p.value.pool.close({ timeout: 5 }) : undefined)));
  }

  #prepare(definition: FunctionDefinition, signal: AbortSignal | undefined): Promise<Prepared> {
    if (this.#closed) return Promise.reject(new StateError("the local host is closed"));
    this.claim(definition);
    const key = definition.options.name;
    let prepared = this.#prepared.get(key);
    if (!prepared) {
      prepared = this.#build(definition, signal);
      this.#prepared.set(key, prepared);
      // A failed build (an install error) is not cached: the next call tries again.
      prepared.catch(() => this.#prepared.delete(key));
    }
    return prepared;
  }

  async #build(definition: FunctionDefinition, signal: AbortSignal | undefined): Promise<Prepared> {
    const { options } = definition;
    const log = this.#logger();
    const environment = await ensureEnvironment({
      dependencies: options.dependencies,
      ...(this.#options.cacheDir ? { cacheDir: this.#options.cacheDir } : {}),
      ...(signal ? { signal } : {}),
      logger: log,
    });
    const bundle = await bundleFunctionModule(options, definition.module, signal);
    const bundlePath = writeBundle(environment.dir, bundle.hash, bundle.code);
    linkMultirank(environment.nodeModules);
    this.#gpus ??= new GpuAllocator(gpuCount());
    const app = functionApp({ options, bundlePath, dataDir: this.#options.dataDir ?? dataRoot(), gpuCount: this.#gpus.available });
    log.info({ function: options.name, environment: environment.key.slice(0, 12), bundle: bundle.hash.slice(0, 12), built: environment.built }, "function ready on the local host");
    return { module: definition.module, pool: new LocalRunnerPool(app, { logger: log, gpus: this.#gpus }) };
  }
}

function gpuCount(): number {
  try {
    return cudaAvailability().available ? listDevices().length : 0;
  } catch {
    return 0;
  }
}
