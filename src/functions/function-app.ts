/**
 * A remote function as an app: its bundle written into its environment, and
 * the app (worker, machine, limits, environment variables) that serves it.
 * The local host and `multirank serve` both make functions runnable this way.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { StateError } from "../errors.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import { defineApp, resolveApp, type ResolvedApp } from "../gateway/app.js";
import { FUNCTION_ENV } from "./function-env.js";
import type { ResolvedRemoteOptions } from "./options.js";
import { functionAppName } from "./wire.js";

/** What {@link functionApp} needs. */
export interface FunctionAppInit {
  options: ResolvedRemoteOptions;
  /** Where the bundle is, inside the function's environment. */
  bundlePath: string;
  /** The data root the function sees through `dataPath()`. */
  dataDir: string;
  /** CUDA devices on this host. */
  gpuCount: number;
  /** Where `options.secrets` are read from. @default process.env */
  secretsFrom?: NodeJS.ProcessEnv;
  /** More environment for the function's processes (a server's address for nested calls). Never logged. */
  env?: Record<string, string>;
}

/** The app that serves a function, fitted to this host. @throws {ConfigError} when the host cannot run it. */
export function functionApp(init: FunctionAppInit): ResolvedApp {
  const { options } = init;
  return resolveApp(
    defineApp({
      name: functionAppName(options.name),
      worker: functionWorkerPath(),
      ...(options.machineType ? { machineType: options.machineType } : { worldSize: options.worldSize ?? 1 }),
      ...(options.memory === undefined ? {} : { memory: options.memory }),
      ...(options.cpu === undefined ? {} : { cpu: options.cpu }),
      keepAlive: options.keepAlive,
      minRunners: options.minRunners,
      maxRunners: options.maxRunners,
      concurrency: options.concurrency,
      timeout: options.timeout,
      startupTimeout: options.startupTimeout,
      secrets: options.secrets,
      env: {
        ...options.env,
        ...init.env,
        [FUNCTION_ENV.module]: init.bundlePath,
        [FUNCTION_ENV.name]: options.name,
        MULTIRANK_DATA_DIR: init.dataDir,
      },
    }),
    { gpuCount: init.gpuCount, baseDir: process.cwd(), ...(init.secretsFrom ? { environment: init.secretsFrom } : {}) },
  );
}

/** Writes a bundle into an environment as `functions/<hash>.mjs` (atomically, once); returns its path. */
export function writeBundle(environmentDir: string, hash: string, code: string): string {
  const bundlePath = join(environmentDir, "functions", `${hash}.mjs`);
  if (!existsSync(bundlePath)) writeFileAtomicSync(bundlePath, code);
  return bundlePath;
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
export function linkMultirank(nodeModules: string): void {
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
