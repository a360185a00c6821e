/**
 * Isolated dependency environments for remote functions: a directory per
 * set of npm specs, installed with npm, shared by every function and process
 * that asks for the same set, and never visible from the caller's own
 * `node_modules`.
 *
 * Layout under the cache directory:
 * - `envs/<key>/`: a complete environment (package.json, package-lock.json,
 *   node_modules, and `.multirank-env.json`, the marker that makes it complete).
 * - `envs/<key>.lock`: held while one process builds `<key>`.
 * - `envs/.tmp-<key>-<pid>-<random>/`: a build in progress, renamed to
 *   `envs/<key>` when it succeeds; the rename is the commit point.
 * - `locks/<key>.json`: the lockfile of the first build, so a rebuild of the
 *   same key (after the environment was deleted) is `npm ci` from it.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { AbortError, DependencyInstallError, ValidationError } from "../errors.js";
import { processAlive } from "../shm/owner.js";
import { releaseLock, waitTurn } from "./env-lock.js";
import { multirankCacheDir } from "../util/cache-dir.js";
import { defaultNpmCommand, failedPackages, npmConfigRegistry, npmEnvironment, resolveNpmCommandOptions, runNpm, type NpmCommandOptions } from "./npm-run.js";
import { parseSpecs, type ParsedSpec } from "./npm-specs.js";

/** Options of {@link ensureEnvironment}. */
export interface EnvironmentOptions extends NpmCommandOptions {
  /** npm specs: `"name@range"`, `"name"` (the latest tag), `"@scope/name@1"`, `"file:/abs/path/pkg-1.0.0.tgz"` (a relative path is resolved against the working directory). */
  dependencies: readonly string[];
  /** Where environments live. @default process.env.MULTIRANK_CACHE_DIR ?? ~/.cache/multirank */
  cacheDir?: string;
  /**
   * The registry npm installs from; part of the environment's key (without any credentials in it).
   * @default `npm_config_registry` from the environment, else `npm config get registry` (read once per process, no network), else "https://registry.npmjs.org/"
   */
  registry?: string;
  /** Aborts the wait or the build: npm is killed and its temporary directory removed. */
  signal?: AbortSignal;
  /** Where progress is logged. @default no logging */
  logger?: Logger;
  /**
   * A `package-lock.json` made for exactly these specs (a deployment
   * carries one): when this host has kept no lockfile for the key yet, it is
   * kept, and the build is `npm ci` from it. @default none
   */
  lockfile?: string;
}

/** A complete environment. */
export interface Environment {
  /** The environment's key: sha256, hex, of node major, platform, arch, libc, the sorted specs and the registry. */
  key: string;
  /** The environment directory (package.json, package-lock.json, node_modules). */
  dir: string;
  /** `dir/node_modules`: where its packages resolve from. */
  nodeModules: string;
  /** True when this call ran npm (install or ci); false when the environment already existed or another call built it. */
  built: boolean;
}

/** The default npm registry. */
export const DEFAULT_REGISTRY = "https://registry.npmjs.org/";
/** The marker file whose presence makes an environment complete. */
export const ENV_MARKER = ".multirank-env.json";
// A build of a large tree over a slow network can take many minutes; past
// this a waiter gives up on a live owner rather than wait forever.
const LOCK_WAIT_MS = 30 * 60 * 1000;

/**
 * The key of the environment for `dependencies` from `registry` on this
 * machine: sha256 (hex) over node's major version, platform, arch, libc, the
 * sorted specs (a `file:` spec with its tarball's sha256) and the registry
 * (credentials removed, trailing slash added).
 * @throws {ValidationError} for a bad spec or registry.
 * @throws {DependencyInstallError} when a `file:` tarball cannot be read.
 * @example environmentKey(["is-number@7.0.0"], "https://registry.npmjs.org/") // "3f9c…"
 */
export function environmentKey(dependencies: readonly string[], registry: string): string {
  if (!Array.isArray(dependencies)) throw new ValidationError(`dependencies must be an array of npm spec strings, got ${typeof dependencies}`);
  return keyOf(parseSpecs(dependencies), normalizeRegistry(registry, "registry"));
}

/**
 * Returns the environment for `options.dependencies`, building it if it does
 * not exist yet: `npm install` in a temporary directory under a lock (or
 * `npm ci` from the lockfile kept by an earlier build of the same key), then
 * renamed into place. Concurrent calls for one key, in this process or
 * others, run npm once. An empty list makes an environment with no packages
 * and runs no npm.
 * @throws {ValidationError} naming the field for a bad option or spec.
 * @throws {DependencyInstallError} when npm fails; it names the failing spec and carries npm's last lines.
 * @throws {AbortError} when `signal` aborts; a build of this call's leaves nothing behind.
 * @throws {TimeoutError} when another live process holds the build lock for over 30 minutes.
 * @example
 * const env = await ensureEnvironment({ dependencies: ["is-number@7.0.0"] });
 * createRequire(path.join(env.dir, "noop.js"))("is-number");
 */
export async function ensureEnvironment(options: EnvironmentOptions): Promise<Environment> {
  const o = validate(options);
  if (o.signal?.aborted) throw new AbortError("ensureEnvironment was aborted", { cause: o.signal.reason });
  const specs = parseSpecs(o.dependencies);
  const registry = o.registry ?? (await defaultRegistry(o.npmCommand));
  const key = keyOf(specs, registry);
  const paths = pathsOf(o.cacheDir, key);
  const env: Environment = { key, dir: paths.dir, nodeModules: path.join(paths.dir, "node_modules"), built: false };
  if (await isComplete(paths.dir, key)) return env;

  const flightKey = `${o.cacheDir}\0${key}`;
  let flight = flights.get(flightKey);
  // A build every caller abandoned is only tearing down: start afresh (it waits on that one's lock) rather than share its AbortError.
  if (flight?.controller.signal.aborted) flight = undefined;
  const joined = flight !== undefined;
  if (flight === undefined) {
    const controller = new AbortController();
    const created: Flight = { controller, waiters: 0, promise: build(buildContext(o, specs, registry, key, paths), controller.signal) };
    flight = created;
    flights.set(flightKey, created);
    const forget = (): void => {
      if (flights.get(flightKey) === created) flights.delete(flightKey);
    };
    void created.promise.then(forget, forget);
  }
  const built = await follow(flight, o.signal);
  // Only the call that started the build ran npm; a call that joined it did not.
  return { ...env, built: built && !joined };
}

/** A build in progress in this process, shared by every call for its key. */
interface Flight {
  promise: Promise<boolean>;
  controller: AbortController;
  /** Calls still waiting with a signal of their own; when all of them abort, so does the build. */
  waiters: number;
}

const flights = new Map<string, Flight>();

/** Waits for `flight` on behalf of one call; the build is aborted only when every call with a signal has aborted and none without one waits. */
function follow(flight: Flight, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal === undefined) {
    flight.waiters = Number.POSITIVE_INFINITY; // someone waits for good: never abort the build
    return flight.promise;
  }
  // It may have aborted during the awaits before this call reached the flight; a listener added now would never fire.
  if (signal.aborted) {
    if (flight.waiters === 0) flight.controller.abort(signal.reason);
    const error = new AbortError("ensureEnvironment was aborted", { cause: signal.reason });
    return flight.waiters === 0 ? flight.promise.then(() => Promise.reject(error), () => Promise.reject(error)) : Promise.reject(error);
  }
  flight.waiters += 1;
  return new Promise<boolean>((resolve, reject) => {
    const onAbort = (): void => {
      flight.waiters -= 1;
      const error = new AbortError("ensureEnvironment was aborted", { cause: signal.reason });
      if (flight.waiters > 0) {
        reject(error); // others still wait: the build goes on for them
        return;
      }
      // The last caller left: stop the build, and answer once npm is dead and its directory gone, so nothing outlives the rejection.
      flight.controller.abort(signal.reason);
      const settled = (): void => reject(error);
      flight.promise.then(settled, settled);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    flight.promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

interface Paths {
  envs: string;
  dir: string;
  lock: string;
  lockfileCopy: string;
}

function pathsOf(cacheDir: string, key: string): Paths {
  const envs = path.join(cacheDir, "envs");
  return { envs, dir: path.join(envs, key), lock: path.join(envs, `${key}.lock`), lockfileCopy: path.join(cacheDir, "locks", `${key}.json`) };
}

interface BuildContext {
  lockfile?: string;
  specs: ParsedSpec[];
  registry: string;
  key: string;
  paths: Paths;
  npmCommand: readonly string[];
  npmEnv: Readonly<Record<string, string>>;
  logger?: Logger;
}

function buildContext(o: Resolved, specs: ParsedSpec[], registry: string, key: string, paths: Paths): BuildContext {
  const ctx: BuildContext = { specs, registry, key, paths, npmCommand: o.npmCommand, npmEnv: o.npmEnv };
  if (o.logger !== undefined) ctx.logger = o.logger;
  if (o.lockfile !== undefined) ctx.lockfile = o.lockfile;
  return ctx;
}

/** Builds the environment unless another process finishes it first. Resolves whether npm ran here. */
async function build(ctx: BuildContext, signal: AbortSignal): Promise<boolean> {
  const { paths, key, logger } = ctx;
  await fs.mkdir(paths.envs, { recursive: true });
  const complete = (): Promise<boolean> => isComplete(paths.dir, key);
  const token = await waitTurn({
    lockPath: paths.lock,
    complete,
    timeoutMs: LOCK_WAIT_MS,
    signal,
    onWait: (owner) => logger?.info({ key, pid: owner?.pid }, "waiting for another process building this environment"),
  });
  if (token === undefined) return false;
  try {
    if (await complete()) return false;
    await removeAbandonedBuilds(paths.envs, key);
    await buildLocked(ctx, signal);
    return true;
  } finally {
    await releaseLock(paths.lock, token);
  }
}

async function buildLocked(ctx: BuildContext, signal: AbortSignal): Promise<void> {
  const { paths, key, specs, logger } = ctx;
  const tmp = path.join(paths.envs, `.tmp-${key}-${process.pid}-${randomBytes(4).toString("hex")}`);
  await fs.mkdir(tmp);
  try {
    const dependencies = Object.fromEntries(specs.map((s) => [s.name, s.target]));
    await fs.writeFile(path.join(tmp, "package.json"), `${JSON.stringify({ name: "multirank-env", private: true, dependencies }, null, 2)}\n`);
    let mode: "none" | "install" | "ci" = "none";
    if (specs.length === 0) await fs.mkdir(path.join(tmp, "node_modules"));
    else {
      if (ctx.lockfile !== undefined && !(await exists(paths.lockfileCopy))) await keepLockfileText(ctx.lockfile, paths.lockfileCopy);
      mode = (await exists(paths.lockfileCopy)) ? "ci" : "install";
      // The temporary directory is a sibling of the final one, as it was at the first build, so a lockfile's relative `file:` paths still resolve.
      if (mode === "ci") await fs.copyFile(paths.lockfileCopy, path.join(tmp, "package-lock.json"));
      await npm(ctx, mode, tmp, signal);
      if (mode === "install") await keepLockfile(tmp, paths.lockfileCopy);
    }
    const marker = { key, specs: specs.map((s) => s.spec), registry: redactRegistry(ctx.registry), node: process.versions.node, platform: process.platform, arch: process.arch, libc: libc(), npm: mode, created: new Date().toISOString() };
    await fs.writeFile(path.join(tmp, ENV_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    // A directory without its marker is a build that did not finish (or a damaged one): replace it.
    await fs.rm(paths.dir, { recursive: true, force: true });
    try {
      await fs.rename(tmp, paths.dir);
    } catch (error) {
      // Two takers of one stale lock: the other one's complete environment stands.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !(await isComplete(paths.dir, key))) throw error;
    }
    logger?.info({ key, dir: paths.dir, npm: mode }, "environment ready");
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function npm(ctx: BuildContext, mode: "install" | "ci", cwd: string, signal: AbortSignal): Promise<void> {
  const started = Date.now();
  ctx.logger?.info({ key: ctx.key, specs: ctx.specs.map((s) => s.spec), npm: mode }, mode === "ci" ? "installing dependencies from the kept lockfile" : "installing dependencies");
  // Install scripts follow npm's own default and the user's npm config; the environment itself has none.
  const args = [mode, "--no-audit", "--no-fund", "--omit=dev", "--global=false", "--package-lock=true", "--dry-run=false"];
  const env = npmEnvironment({ npm_config_registry: ctx.registry, ...ctx.npmEnv });
  const result = await runNpm(ctx.npmCommand, args, cwd, env, signal);
  if (result.code === 0) {
    ctx.logger?.debug({ key: ctx.key, ms: Date.now() - started }, "npm finished");
    return;
  }
  const byName = new Map(ctx.specs.map((s) => [s.name, s.spec]));
  const byPath = new Map(ctx.specs.filter((s) => s.target.startsWith("file:")).map((s) => [s.target.slice(5), s.spec]));
  const named = failedPackages(result.text, byName, byPath);
  const specs = named.length > 0 ? named : ctx.specs.map((s) => s.spec);
  const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
  const hint = mode === "ci" ? ` (npm ci from the kept lockfile ${ctx.paths.lockfileCopy}; delete it to resolve the specs afresh)` : "";
  throw new DependencyInstallError(`npm ${mode} of ${specs.join(", ")} failed: npm ${how}${hint}`, specs, result.tail);
}

/** Copies the build's lockfile to `locks/<key>.json`, atomically, so a later rebuild can be `npm ci`. */
async function keepLockfile(dir: string, target: string): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const draft = `${target}.${process.pid}-${randomBytes(4).toString("hex")}`;
  await fs.copyFile(path.join(dir, "package-lock.json"), draft);
  await fs.rename(draft, target);
}

/** Keeps a lockfile given as text (a deployment's) as `locks/<key>.json`, atomically. */
async function keepLockfileText(text: string, target: string): Promise<void> {
  try {
    JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`the lockfile given for ${path.basename(target, ".json")} is not JSON: ${(error as Error).message}`);
  }
  await fs.mkdir(path.dirname(target), { recursive: true });
  const draft = `${target}.${process.pid}-${randomBytes(4).toString("hex")}`;
  await fs.writeFile(draft, text);
  await fs.rename(draft, target);
}

/** Removes `.tmp-<key>-<pid>-*` directories of builds whose process is dead (it was killed mid-build). */
async function removeAbandonedBuilds(envs: string, key: string): Promise<void> {
  const prefix = `.tmp-${key}-`;
  for (const name of await fs.readdir(envs)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) await fs.rm(path.join(envs, name), { recursive: true, force: true });
  }
}

async function isComplete(dir: string, key: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await fs.readFile(path.join(dir, ENV_MARKER), "utf8")) as { key?: unknown };
    return marker.key === key;
  } catch {
    return false;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

function keyOf(specs: readonly ParsedSpec[], registry: string): string {
  const identity = {
    v: 1,
    node: process.versions.node.split(".")[0],
    platform: process.platform,
    arch: process.arch,
    libc: libc(),
    specs: specs.map((s) => s.keyPart).sort(),
    registry: redactRegistry(registry),
  };
  return createHash("sha256").update(JSON.stringify(identity)).digest("hex");
}

let libcName: string | undefined;

/** "glibc" or "musl" on Linux (prebuilt native packages differ between them), "" elsewhere. */
function libc(): string {
  if (libcName === undefined) {
    if (process.platform !== "linux") libcName = "";
    else {
      const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
      libcName = header?.glibcVersionRuntime ? "glibc" : "musl";
    }
  }
  return libcName;
}

let registryOnce: Promise<string> | undefined;

/** The registry npm would use here, read once per process. */
export function defaultRegistry(npmCommand: readonly string[] = defaultNpmCommand()): Promise<string> {
  registryOnce ??= (async () => {
    const fromEnv = process.env.npm_config_registry ?? process.env.NPM_CONFIG_REGISTRY;
    const found = fromEnv || (await npmConfigRegistry(npmCommand)) || DEFAULT_REGISTRY;
    try {
      return normalizeRegistry(found, "the npm registry");
    } catch {
      return DEFAULT_REGISTRY;
    }
  })();
  return registryOnce;
}

/** Checks a registry URL and gives it a trailing slash (npm treats both forms alike). */
function normalizeRegistry(registry: unknown, field: string): string {
  if (typeof registry !== "string" || !/^https?:\/\/[^\s]+$/i.test(registry)) throw new ValidationError(`${field} must be an http(s) URL, got ${typeof registry === "string" ? JSON.stringify(redactRegistry(registry)) : typeof registry}`);
  return registry.endsWith("/") ? registry : `${registry}/`;
}

/** The registry without `user:password@`: credentials change neither the packages nor the key, and must not be written down. */
function redactRegistry(registry: string): string {
  return registry.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1");
}

/** The options, checked, with defaults filled in. */
interface Resolved {
  dependencies: readonly string[];
  cacheDir: string;
  npmCommand: readonly string[];
  npmEnv: Readonly<Record<string, string>>;
  registry?: string;
  signal?: AbortSignal;
  logger?: Logger;
  lockfile?: string;
}

function validate(options: EnvironmentOptions): Resolved {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  if (!Array.isArray(options.dependencies)) throw new ValidationError(`options.dependencies must be an array of npm spec strings, got ${typeof options.dependencies}`);
  if (options.cacheDir !== undefined && (typeof options.cacheDir !== "string" || options.cacheDir.length === 0)) throw new ValidationError("options.cacheDir must be a non-empty path string");
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new ValidationError("options.signal must be an AbortSignal");
  const { npmCommand, npmEnv } = resolveNpmCommandOptions(options);
  const cacheDir = path.resolve(options.cacheDir ?? multirankCacheDir());
  const out: Resolved = { dependencies: options.dependencies, cacheDir, npmCommand, npmEnv };
  if (options.registry !== undefined) out.registry = normalizeRegistry(options.registry, "options.registry");
  if (options.signal !== undefined) out.signal = options.signal;
  if (options.logger !== undefined) out.logger = options.logger.child({ component: "functions-environment" });
  if (options.lockfile !== undefined) {
    if (typeof options.lockfile !== "string") throw new ValidationError("options.lockfile must be the text of a package-lock.json");
    out.lockfile = options.lockfile;
  }
  return out;
}
