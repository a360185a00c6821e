/**
 * The llama.cpp engine (node-llama-cpp), installed on first use into the
 * multirank cache rather than with multirank: as a dependency of any kind it
 * would pull its optional prebuilt binaries for every GPU flavour (about
 * 730 MB), while this installs only the one this host needs (about 83 MB on
 * CPU). It lives in functions/ because it builds on the environments' npm
 * runner and build lock (`npm-run.ts`, `env-lock.ts`); a worker reaches it
 * through the package's root entry.
 *
 * Layout under the cache directory:
 * - `engines/node-llama-cpp-<version>-<variant>/`: a complete install
 *   (node_modules and `.multirank-engine.json`, the marker that makes it
 *   complete); `<variant>` is `cpu` or `cuda`.
 * - `engines/<name>.lock`: held while one process installs it, so the ranks
 *   and runners that start together install once.
 * - `engines/.tmp-<name>-<pid>-<random>/`: an install in progress, renamed
 *   into place when it succeeds.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import { AbortError, DependencyInstallError, EngineMissingError, ValidationError } from "../errors.js";
import { processAlive } from "../shm/owner.js";
import { releaseLock, waitTurn } from "./env-lock.js";
import { multirankCacheDir } from "../util/cache-dir.js";
import { npmEnvironment, resolveNpmCommandOptions, runNpm, type NpmCommandOptions } from "./npm-run.js";

/** The node-llama-cpp version multirank installs and was tested with. */
export const LLAMA_ENGINE_VERSION = "3.21.1";
/** The file in an install that makes it complete. */
export const LLAMA_ENGINE_MARKER = ".multirank-engine.json";
/** Which prebuilt binaries an install holds: CPU only, or CUDA as well (CUDA 13 runtime). */
export type LlamaEngineVariant = "cpu" | "cuda";

/** Options of {@link ensureLlamaEngine}; all optional. */
export interface LlamaEngineOptions extends NpmCommandOptions {
  /** Install the CUDA binaries as well (linux-x64 and win-x64 only). @default false */
  gpu?: boolean;
  /** Where engines live (`engines/` below it). @default process.env.MULTIRANK_CACHE_DIR ?? ~/.cache/multirank */
  cacheDir?: string;
  /** Install when missing; false fails with {@link EngineMissingError} instead. @default true */
  install?: boolean;
  /** Where install progress is logged, one record per downloaded package. @default no logging */
  logger?: Logger;
  /** Aborts the wait or the install: npm is killed and its temporary directory removed. */
  signal?: AbortSignal;
}

/** Where an engine is. */
export interface LlamaEngine {
  /** The install directory (its `node_modules` holds node-llama-cpp). */
  dir: string;
  /** node-llama-cpp's ESM entry, a file path. */
  entry: string;
  variant: LlamaEngineVariant;
  /** True when this call ran npm. */
  installed: boolean;
  /** True when `MULTIRANK_LLAMA_ENGINE` named the install. */
  fromEnv: boolean;
}

// A CUDA build pulls ~180 MB more; past this a waiter gives up on a live installer.
const LOCK_WAIT_MS = 30 * 60 * 1000;
const CUDA_PLATFORMS = new Set(["linux-x64", "win-x64"]);
const CPU_PACKAGES: Readonly<Record<string, string>> = {
  "linux-x64": "linux-x64",
  "linux-arm64": "linux-arm64",
  "linux-arm": "linux-armv7l",
  "darwin-arm64": "mac-arm64-metal",
  "darwin-x64": "mac-x64",
  "win32-x64": "win-x64",
  "win32-arm64": "win-arm64",
};

/**
 * The npm specs an install of `variant` holds on this platform: node-llama-cpp
 * and its prebuilt binaries for the platform (and CUDA's for `"cuda"`).
 * @throws {EngineMissingError} when node-llama-cpp has no prebuilt binary for this platform (or no CUDA one).
 * @example llamaEnginePackages("cpu") // ["node-llama-cpp@3.21.1", "@node-llama-cpp/linux-x64@3.21.1"] on linux-x64
 */
export function llamaEnginePackages(variant: LlamaEngineVariant, platform: string = process.platform, arch: string = process.arch): string[] {
  const cpu = CPU_PACKAGES[`${platform}-${arch}`];
  if (cpu === undefined) throw new EngineMissingError(`node-llama-cpp ${LLAMA_ENGINE_VERSION} has no prebuilt binary for ${platform}-${arch}`, installCommand(variant));
  const specs = [`node-llama-cpp@${LLAMA_ENGINE_VERSION}`, `@node-llama-cpp/${cpu}@${LLAMA_ENGINE_VERSION}`];
  if (variant === "cuda") {
    if (!CUDA_PLATFORMS.has(cpu)) throw new EngineMissingError(`node-llama-cpp ${LLAMA_ENGINE_VERSION} has no CUDA binary for ${platform}-${arch}; use the CPU engine`, installCommand("cpu"));
    specs.push(`@node-llama-cpp/${cpu}-cuda@${LLAMA_ENGINE_VERSION}`);
  }
  return specs;
}

/** The command that installs `variant` ahead of time. */
export function installCommand(variant: LlamaEngineVariant): string {
  return `npx multirank engine install llama${variant === "cuda" ? " --gpu" : ""}`;
}

/** The install directory of `variant` in `cacheDir`. */
export function llamaEngineDir(variant: LlamaEngineVariant, cacheDir: string = multirankCacheDir()): string {
  return path.join(path.resolve(cacheDir), "engines", `node-llama-cpp-${LLAMA_ENGINE_VERSION}-${variant}`);
}

/**
 * Finds the engine, installing it when it is missing: `MULTIRANK_LLAMA_ENGINE`
 * (a directory whose `node_modules` holds node-llama-cpp) when set, else the
 * cache's install of the variant. An install runs `npm install --omit=optional
 * --ignore-scripts` of exactly {@link llamaEnginePackages} in a temporary
 * directory under a lock, then renames it into place; concurrent calls, in
 * this process or others, run npm once, and the others wait.
 * @throws {EngineMissingError} when it is missing and `install` is false, npm fails (`cause` says why), or `MULTIRANK_LLAMA_ENGINE` names a folder without it.
 * @throws {AbortError} when `signal` aborts.
 * @throws {ValidationError} for a bad option.
 * @example
 * const engine = await ensureLlamaEngine({ logger });
 * const { getLlama } = await import(pathToFileURL(engine.entry).href);
 */
export async function ensureLlamaEngine(options: LlamaEngineOptions = {}): Promise<LlamaEngine> {
  const o = validate(options);
  const variant: LlamaEngineVariant = o.gpu ? "cuda" : "cpu";
  const named = process.env.MULTIRANK_LLAMA_ENGINE;
  if (named) {
    const dir = path.resolve(named);
    const entry = entryOf(dir);
    if (!existsSync(entry)) throw new EngineMissingError(`MULTIRANK_LLAMA_ENGINE is ${dir}, which holds no node-llama-cpp (${entry} is missing); unset it or run ${installCommand(variant)}`, installCommand(variant));
    return { dir, entry, variant, installed: false, fromEnv: true };
  }
  const dir = llamaEngineDir(variant, o.cacheDir);
  const found: LlamaEngine = { dir, entry: entryOf(dir), variant, installed: false, fromEnv: false };
  if (await isComplete(dir, variant)) return found;
  if (!o.install) throw new EngineMissingError(`the llama.cpp engine (node-llama-cpp ${LLAMA_ENGINE_VERSION}, ${variant}) is not installed in ${dir}; run ${installCommand(variant)}`, installCommand(variant));
  const specs = llamaEnginePackages(variant);
  try {
    const installed = await install(o, variant, dir, specs);
    return { ...found, installed };
  } catch (error) {
    if (error instanceof AbortError) throw error;
    throw new EngineMissingError(
      `the llama.cpp engine (node-llama-cpp ${LLAMA_ENGINE_VERSION}, ${variant}) is not installed and installing it failed: ${(error as Error).message.split("\n")[0]}; run ${installCommand(variant)} where the npm registry can be reached, or set MULTIRANK_LLAMA_ENGINE to an install`,
      installCommand(variant),
      { cause: error },
    );
  }
}

/** The parts of node-llama-cpp's module multirank uses, typed here since it is not a dependency. */
export interface LlamaEngineModule {
  getLlama(options: { gpu: false | "cuda" | "metal" | "vulkan" | "auto"; build: "never"; skipDownload?: boolean; maxThreads?: number; logLevel?: string; progressLogs?: boolean }): Promise<LlamaInstance>;
  LlamaCompletion: new (options: { contextSequence: unknown }) => LlamaCompletionInstance;
}

/** node-llama-cpp's `Llama`, the parts used. */
export interface LlamaInstance {
  readonly gpu: string | false;
  loadModel(options: { modelPath: string; gpuLayers?: number | "max" | "auto" }): Promise<LlamaModelInstance>;
  dispose(): Promise<void>;
}

/** node-llama-cpp's `LlamaModel`, the parts used. */
export interface LlamaModelInstance {
  readonly gpuLayers: number;
  createContext(options: { contextSize?: number; threads?: number; seed?: number }): Promise<LlamaContextInstance>;
  dispose(): Promise<void>;
}

/** node-llama-cpp's `LlamaContext`, the parts used. */
export interface LlamaContextInstance {
  getSequence(): unknown;
  dispose(): Promise<void>;
}

/** node-llama-cpp's `LlamaCompletion`, the parts used. */
export interface LlamaCompletionInstance {
  generateCompletion(prompt: string, options: { maxTokens?: number; temperature?: number; seed?: number; signal?: AbortSignal; stopOnAbortSignal?: boolean; onTextChunk?: (text: string) => void; onToken?: (tokens: number[]) => void }): Promise<string>;
  dispose(): void;
}

/**
 * {@link ensureLlamaEngine}, then imports node-llama-cpp from the install.
 * @throws what {@link ensureLlamaEngine} throws.
 */
export async function loadLlamaEngine(options: LlamaEngineOptions = {}): Promise<{ engine: LlamaEngine; module: LlamaEngineModule }> {
  const engine = await ensureLlamaEngine(options);
  const module = (await import(pathToFileURL(engine.entry).href)) as LlamaEngineModule;
  return { engine, module };
}

function entryOf(dir: string): string {
  return path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
}


async function isComplete(dir: string, variant: LlamaEngineVariant): Promise<boolean> {
  try {
    const marker = JSON.parse(await fs.readFile(path.join(dir, LLAMA_ENGINE_MARKER), "utf8")) as { version?: unknown; variant?: unknown };
    return marker.version === LLAMA_ENGINE_VERSION && marker.variant === variant && existsSync(entryOf(dir));
  } catch {
    return false;
  }
}

/** Installs under the lock unless another process finishes first; resolves whether npm ran here. */
async function install(o: Resolved, variant: LlamaEngineVariant, dir: string, specs: string[]): Promise<boolean> {
  const engines = path.dirname(dir);
  const name = path.basename(dir);
  await fs.mkdir(engines, { recursive: true });
  const lockPath = path.join(engines, `${name}.lock`);
  const token = await waitTurn({
    lockPath,
    complete: () => isComplete(dir, variant),
    timeoutMs: LOCK_WAIT_MS,
    ...(o.signal ? { signal: o.signal } : {}),
    onWait: (owner) => o.logger?.info({ engine: name, pid: owner?.pid }, "waiting for another process installing the llama.cpp engine"),
  });
  if (token === undefined) return false;
  try {
    if (await isComplete(dir, variant)) return false;
    await removeAbandoned(engines, name);
    await installLocked(o, variant, dir, specs);
    return true;
  } finally {
    await releaseLock(lockPath, token);
  }
}

async function installLocked(o: Resolved, variant: LlamaEngineVariant, dir: string, specs: string[]): Promise<void> {
  const name = path.basename(dir);
  const tmp = path.join(path.dirname(dir), `.tmp-${name}-${process.pid}-${randomBytes(4).toString("hex")}`);
  const started = Date.now();
  await fs.mkdir(tmp);
  try {
    const dependencies = Object.fromEntries(specs.map((spec) => [spec.slice(0, spec.lastIndexOf("@")), spec.slice(spec.lastIndexOf("@") + 1)]));
    await fs.writeFile(path.join(tmp, "package.json"), `${JSON.stringify({ name: "multirank-llama-engine", private: true, dependencies }, null, 2)}\n`);
    o.logger?.info({ engine: name, specs, dir }, `installing the llama.cpp engine (${variant === "cuda" ? "about 265 MB" : "about 83 MB"}, once per cache)`);
    // Optional dependencies are node-llama-cpp's binaries for every platform and GPU flavour: the specs name the ones this host needs.
    // No scripts: node-llama-cpp's postinstall would download or build llama.cpp; the prebuilt binaries are enough.
    const args = ["install", "--no-audit", "--no-fund", "--omit=optional", "--omit=dev", "--ignore-scripts", "--loglevel=http", "--global=false", "--package-lock=true", "--dry-run=false"];
    let fetched = 0;
    const onLine = (line: string): void => {
      // `npm http fetch GET 200 <registry>/<name>/-/<file>.tgz 812ms (cache miss)` or `npm http cache <name>@<url>.tgz 0ms (cache hit)`: one line per package.
      const tarball = /(https?:\/\/\S+)\/-\/\S+\.tgz\s/.exec(line);
      if (tarball === null || !/\bhttp (?:fetch|cache)\b/.test(line)) return;
      fetched += 1;
      const url = tarball[1]!.split("/");
      const pkg = decodeURIComponent(url.at(-2)?.startsWith("@") ? `${url.at(-2)}/${url.at(-1)}` : (url.at(-1) ?? ""));
      o.logger?.info({ engine: name, package: pkg, fetched }, "engine package fetched");
    };
    const env = npmEnvironment({ NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true", ...o.npmEnv });
    const result = await runNpm(o.npmCommand, args, tmp, env, o.signal, onLine);
    if (result.code !== 0) {
      const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
      throw new DependencyInstallError(`npm install of ${specs.join(", ")} failed: npm ${how}`, specs, result.tail);
    }
    const marker = { version: LLAMA_ENGINE_VERSION, variant, specs, node: process.versions.node, platform: process.platform, arch: process.arch, created: new Date().toISOString() };
    await fs.writeFile(path.join(tmp, LLAMA_ENGINE_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    await fs.rm(dir, { recursive: true, force: true });
    try {
      await fs.rename(tmp, dir);
    } catch (error) {
      // Two takers of one stale lock: the other one's complete install stands.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !(await isComplete(dir, variant))) throw error;
    }
    o.logger?.info({ engine: name, dir, packages: fetched, ms: Date.now() - started }, "llama.cpp engine installed");
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Removes `.tmp-<name>-<pid>-*` directories of installs whose process died mid-install. */
async function removeAbandoned(engines: string, name: string): Promise<void> {
  const prefix = `.tmp-${name}-`;
  for (const entry of await fs.readdir(engines)) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number(entry.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) await fs.rm(path.join(engines, entry), { recursive: true, force: true });
  }
}

interface Resolved {
  gpu: boolean;
  cacheDir: string;
  install: boolean;
  logger: Logger | undefined;
  signal: AbortSignal | undefined;
  npmCommand: readonly string[];
  npmEnv: Readonly<Record<string, string>>;
}

function validate(options: LlamaEngineOptions): Resolved {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  if (options.gpu !== undefined && typeof options.gpu !== "boolean") throw new ValidationError("options.gpu must be a boolean");
  if (options.install !== undefined && typeof options.install !== "boolean") throw new ValidationError("options.install must be a boolean");
  if (options.cacheDir !== undefined && (typeof options.cacheDir !== "string" || options.cacheDir.length === 0)) throw new ValidationError("options.cacheDir must be a non-empty path string");
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new ValidationError("options.signal must be an AbortSignal");
  const { npmCommand, npmEnv } = resolveNpmCommandOptions(options);
  return {
    gpu: options.gpu ?? false,
    cacheDir: path.resolve(options.cacheDir ?? multirankCacheDir()),
    install: options.install ?? true,
    logger: options.logger?.child({ component: "llama-engine" }),
    signal: options.signal,
    npmCommand,
    npmEnv,
  };
}
