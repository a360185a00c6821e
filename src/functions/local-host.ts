import { existsSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { cudaAvailability, listDevices } from "../devices/index.js";
import { StateError, ValidationError } from "../errors.js";
import { defineApp, resolveApp, type ResolvedApp } from "../gateway/app.js";
import { GpuAllocator } from "../gateway/gpu-allocator.js";
import { LocalRunnerPool, type RunnerLease } from "../gateway/runner-pool.js";
import { defaultLogger } from "../util/logger.js";
import { bundleModule } from "./bundle.js";
import { dataRoot } from "./data-root.js";
import { ensureEnvironment } from "./environment.js";
import { FUNCTION_ENV } from "./function-env.js";
import { definedBy, registered } from "./registry.js";
import type { CallOptions, FunctionDefinition, Host } from "./host.js";

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
    const owner = this.#modules.get(definition.options.name);
    if (owner !== undefined && owner !== definition.module) {
      throw new ValidationError(`remote function name "${definition.options.name}" is already defined by ${owner}; names are unique per host`);
    }
    this.#modules.set(definition.options.name, definition.module);
  }

  async invoke(definition: FunctionDefinition, payload: unknown, options: CallOptions): Promise<unknown> {
    const { pool } = await this.#prepare(definition, options.signal);
    const lease = await acquire(pool, options.signal);
    options.onStart?.();
    try {
      return await lease.runner.invoke(payload, { timeout: options.timeout, ...(options.signal ? { signal: options.signal } : {}) });
    } finally {
      lease.release();
    }
  }

  async *stream(definition: FunctionDefinition, payload: unknown, options: CallOptions): AsyncGenerator<unknown, void, undefined> {
    const { pool } = await this.#prepare(definition, options.signal);
    const lease = await acquire(pool, options.signal);
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
    // One module, one bundle, for all the functions it defines: its imports are
    // checked against what any of them declares. The function's environment
    // holds its own dependencies only, so a package imported at the module's
    // top level must be declared by each function; one imported inside a
    // function's body, by that function.
    const declared = new Set([...options.dependencies, ...definedBy(definition.module).flatMap((entry) => entry.dependencies)]);
    // Another module of the graph that defines remote functions (a function
    // this one calls) may import what its own functions declare: their bodies
    // run in their environments, not in this one.
    const moduleDependencies: Record<string, string[]> = {};
    for (const entry of registered()) {
      if (entry.module !== definition.module) (moduleDependencies[entry.module] ??= []).push(...entry.dependencies);
    }
    const bundle = await bundleModule({ entry: definition.module, dependencies: [...declared], moduleDependencies, ...(signal ? { signal } : {}) });
    const bundlePath = join(environment.dir, "functions", `${bundle.hash}.mjs`);
    if (!existsSync(bundlePath)) {
      mkdirSync(dirname(bundlePath), { recursive: true });
      const temporary = `${bundlePath}.${process.pid}.tmp`;
      writeFileSync(temporary, bundle.code);
      renameSync(temporary, bundlePath);
    }
    linkMultirank(environment.nodeModules);
    this.#gpus ??= new GpuAllocator(gpuCount());
    const app: ResolvedApp = resolveApp(
      defineApp({
        name: `fn/${options.name}`,
        worker: functionWorkerPath(),
        ...(options.machineType ? { machineType: options.machineType } : { worldSize: options.worldSize ?? 1 }),
        keepAlive: options.keepAlive,
        minRunners: options.minRunners,
        maxRunners: options.maxRunners,
        concurrency: options.concurrency,
        timeout: options.timeout,
        startupTimeout: options.startupTimeout,
        secrets: options.secrets,
        env: {
          ...options.env,
          [FUNCTION_ENV.module]: bundlePath,
          [FUNCTION_ENV.name]: options.name,
          MULTIRANK_DATA_DIR: this.#options.dataDir ?? dataRoot(),
        },
      }),
      { gpuCount: this.#gpus.available, baseDir: process.cwd() },
    );
    log.info({ function: options.name, environment: environment.key.slice(0, 12), bundle: bundle.hash.slice(0, 12), built: environment.built }, "function ready on the local host");
    return { module: definition.module, pool: new LocalRunnerPool(app, { logger: log, gpus: this.#gpus }) };
  }
}

/** Waits for a runner of `pool`, however busy it is now. */
async function acquire(pool: LocalRunnerPool, signal: AbortSignal | undefined): Promise<RunnerLease> {
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

function gpuCount(): number {
  try {
    return cudaAvailability().available ? listDevices().length : 0;
  } catch {
    return 0;
  }
}

/** This package's root (where its package.json is). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "multirank") return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new StateError("cannot find the multirank package root");
    dir = parent;
  }
}

/** Makes `import "multirank"` in a bundle resolve to this very package (one copy, one registry). */
function linkMultirank(nodeModules: string): void {
  const link = join(nodeModules, "multirank");
  if (existsSync(link)) return;
  mkdirSync(nodeModules, { recursive: true });
  try {
    symlinkSync(packageRoot(), link, "dir");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/** The compiled function worker beside this module, or in `dist/` when running from sources. */
export function functionWorkerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, "function-worker.js"), resolve(here, "../../dist/functions/function-worker.js")];
  return candidates.find((path) => existsSync(path)) ?? resolve(here, "function-worker.ts");
}
