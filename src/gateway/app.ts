/**
 * Apps: a worker plus how it is served. `defineApp` checks the shape once;
 * {@link resolveApp} fits it to this host (machine type, GPUs, secrets).
 */
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ValidationError } from "../errors.js";
import { unknownKey } from "../util/did-you-mean.js";
import { durationToMs } from "../util/timers.js";
import { nonNegativeInteger, positiveInteger } from "../util/validate.js";
import { defaultAllowedCpus } from "../devices/affinity.js";
import { ConfigError } from "./errors.js";
import { checkCpuCount, memoryToMiB } from "./limits.js";
import { parseMachineType, type MachineType } from "./machine-types.js";

/** Which failures a request is retried on. */
export type RetryReason = "error" | "crash" | "timeout";

/** How a failed request is retried. */
export interface RetryPolicy {
  /** Extra attempts after the first. @default 0 */
  max?: number;
  /** Failures that are retried: a worker error, a runner crash, an execution timeout. @default ["crash"] */
  on?: readonly RetryReason[];
}

/** What `defineApp` takes. Times are in seconds, as in fal, and at most 365 days (`MAX_DURATION_SECONDS`). */
export interface AppOptions {
  /** `owner/alias`, as fal app ids; also the Runpod endpoint id (with `/` as `--`). */
  name: string;
  /** Path or file URL of the worker module; a relative path resolves against the config file's folder. */
  worker: string | URL;
  /** Ranks per runner. Give this or `machineType`. @default 1 */
  worldSize?: number;
  /** A preset (`cpu`, `cpu-x2`, `gpu`, `gpu-x2`, `gpu-x4`...) that sets `worldSize` and devices. @default "cpu" when `worldSize` is unset */
  machineType?: MachineType;
  /** Idle seconds before a warm runner stops. @default 10 */
  keepAlive?: number;
  /** Runners started at boot and kept warm. @default 0 */
  minRunners?: number;
  /** Most runners at once. @default 1 */
  maxRunners?: number;
  /**
   * Requests the gateway sends one runner at once. Independent of the worker's
   * `static concurrency`, which caps what each rank runs at once; set both. @default 1
   */
  concurrency?: number;
  /**
   * Memory per rank, GiB (`0.5` is 512 MiB; at least 1/16). Each rank gets
   * V8's heap limit at that size and, where cgroup v2 can be written (root),
   * its own cgroup with `memory.max` at that size. A rank that goes over it
   * dies; its request fails with `MemoryLimitError` and the runner is
   * replaced, as after a crash. @default unset (no limit)
   */
  memory?: number;
  /**
   * Cores per rank, pinned: each rank runs on exactly that many of the host's
   * allowed cores. More than the host has fails at load with a `ConfigError`.
   * @default unset (the allowed cores are split evenly among a runner's ranks)
   */
  cpu?: number;
  /**
   * Give each rank a `CUDA_VISIBLE_DEVICES` naming only its own GPU, so a
   * library that uses every GPU it sees (llama.cpp) uses the runner's alone.
   * Breaks peer-to-peer between a runner's GPUs. @default false
   */
  isolateDevices?: boolean;
  /** Per-request execution timeout; each `ctx.progress()` restarts it. @default 300 */
  timeout?: number;
  /** Retry policy. @default { max: 0, on: ["crash"] } */
  retries?: RetryPolicy;
  /** Seconds a runner may take to start. @default 1800 */
  startupTimeout?: number;
  /**
   * Seconds a rank's event loop may go without answering a heartbeat before
   * its runner is declared hung (`MULTIRANK_ERR_RANK_HUNG`), stopped and
   * replaced, as after a crash; 0 turns heartbeats off. @default 60
   */
  heartbeatTimeout?: number;
  /** Requests waiting beyond this are refused with 429. @default 1000 */
  maxQueueLength?: number;
  /** Passed to every rank's `setup(args)`. @default {} */
  setupArgs?: Record<string, unknown>;
  /** Runner's keepalive payload. @default {} */
  keepalivePayload?: unknown;
  /** Runner's keepalive interval, seconds; unset is off. */
  keepaliveInterval?: number;
  /** Extra environment for the ranks. Never logged. @default {} */
  env?: Record<string, string>;
  /** Names of environment variables copied from the gateway's environment to the ranks; never logged. @default [] */
  secrets?: readonly string[];
  /** A title for the web page. @default name */
  title?: string;
  /** An example input for the web page and the printed curl. @default {} */
  exampleInput?: unknown;
  /**
   * Who starts the ranks. `"spawn"`: the gateway, on its own host. `"external"`
   * (attach mode): another launcher (mpirun, srun, a Kubernetes Indexed Job,
   * torchrun) starts `multirank rank` on its hosts and the ranks join the
   * app's one runner, which listens at `workerAddr:workerPort` and writes its
   * join string to `joinFile`. Such an app has exactly one runner, started at
   * boot and never stopped for idleness (the launcher owns the ranks): give
   * `worldSize`, and leave `machineType`, `minRunners`, `maxRunners`,
   * `keepAlive`, `memory`, `cpu`, `env` and `secrets` unset, since they
   * concern ranks the gateway spawns. When the ranks fail, the runner waits
   * for the launcher to start them again with the same join string.
   * @default "spawn"
   */
  launcher?: "spawn" | "external";
  /** With `launcher: "external"`: the address the runner listens on for ranks, one their hosts reach. @default "127.0.0.1" */
  workerAddr?: string;
  /** With `launcher: "external"`: the port the runner listens on for ranks; 0 picks one (then read it from `joinFile`). @default 0 */
  workerPort?: number;
  /**
   * With `launcher: "external"`: the file (mode 0600) the runner writes its
   * join string to, for `MULTIRANK_JOIN_FILE` on the ranks' hosts; a relative
   * path resolves against the config file's folder. @default unset
   */
  joinFile?: string;
}

/** Where the ranks of an app in attach mode (`launcher: "external"`) join its runner. */
export interface AppAttachment {
  readonly workerAddr: string;
  readonly workerPort: number;
  /** As given; {@link resolveApp} makes it absolute. */
  readonly joinFile: string | undefined;
}

/** A validated app, as `defineApp` returns it (frozen). */
export interface AppDefinition {
  readonly name: string;
  readonly worker: string;
  readonly worldSize: number | undefined;
  readonly machineType: MachineType | undefined;
  readonly keepAlive: number;
  readonly minRunners: number;
  readonly maxRunners: number;
  readonly concurrency: number;
  /** Memory per rank, MiB (from `memory` in GiB); undefined when unlimited. */
  readonly memoryMiB: number | undefined;
  /** Cores per rank; undefined for an even split. */
  readonly cpu: number | undefined;
  readonly isolateDevices: boolean;
  readonly timeout: number;
  readonly retries: Readonly<{ max: number; on: readonly RetryReason[] }>;
  readonly startupTimeout: number;
  readonly heartbeatTimeout: number;
  readonly maxQueueLength: number;
  readonly setupArgs: Readonly<Record<string, unknown>>;
  readonly keepalivePayload: unknown;
  readonly keepaliveInterval: number | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly secrets: readonly string[];
  readonly title: string;
  readonly exampleInput: unknown;
  /** Set when another launcher starts the ranks (`launcher: "external"`); undefined when the gateway spawns them. */
  readonly attach: AppAttachment | undefined;
}

/** An app fitted to this host: world size, GPU needs and the ranks' full environment. */
export interface ResolvedApp extends AppDefinition {
  readonly worldSize: number;
  /** GPUs each runner needs (0 on CPU). */
  readonly gpusPerRunner: number;
  /** The worker path, absolute. */
  readonly workerPath: string;
  /** `env` plus the secrets' values. */
  readonly rankEnv: Readonly<Record<string, string>>;
}

const DEFAULTS = Object.freeze({
  keepAlive: 10,
  minRunners: 0,
  maxRunners: 1,
  concurrency: 1,
  timeout: 300,
  startupTimeout: 1800,
  heartbeatTimeout: 60,
  maxQueueLength: 1000,
  /** Seconds, with `launcher: "external"`: a rank on another host can vanish without an exit the gateway could see. */
  externalHeartbeatTimeout: 10,
  externalWorkerAddr: "127.0.0.1",
});

// A record, not a list, so the compiler says when a new option is missing here.
const APP_OPTION_KEYS = Object.keys({
  name: true,
  worker: true,
  worldSize: true,
  machineType: true,
  keepAlive: true,
  minRunners: true,
  maxRunners: true,
  concurrency: true,
  timeout: true,
  retries: true,
  startupTimeout: true,
  heartbeatTimeout: true,
  maxQueueLength: true,
  setupArgs: true,
  keepalivePayload: true,
  keepaliveInterval: true,
  env: true,
  secrets: true,
  title: true,
  exampleInput: true,
  memory: true,
  cpu: true,
  isolateDevices: true,
  launcher: true,
  workerAddr: true,
  workerPort: true,
  joinFile: true,
} satisfies Record<keyof AppOptions, true>);
const RETRY_KEYS: readonly string[] = ["max", "on"] satisfies ReadonlyArray<keyof RetryPolicy>;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const RETRY_REASONS: readonly RetryReason[] = ["error", "crash", "timeout"];

/**
 * Declares an app. Validates every field once; messages name the field.
 * @throws {ValidationError} for a wrong field; {@link ConfigError} for an unknown one (a misspelt `keepalive`), with the closest known name.
 * @example
 * export default [defineApp({ name: "acme/echo", worker: "./workers/echo.ts", machineType: "cpu-x2" })];
 */
export function defineApp(options: AppOptions): AppDefinition {
  if (typeof options !== "object" || options === null) throw new ValidationError("app options must be an object");
  const { name } = options;
  if (typeof name !== "string" || !NAME.test(name)) throw new ValidationError(`app options.name must look like "owner/alias"; got ${JSON.stringify(name)}`);
  const field = (key: string): string => `app ${name}: options.${key}`;
  // A misspelt option would otherwise fall back to its default without a word.
  const unknown = unknownKey(options, APP_OPTION_KEYS);
  if (unknown) throw new ConfigError(`app ${name}: options has no field ${unknown.described}`);
  const worker = options.worker instanceof URL ? options.worker.href : options.worker;
  if (typeof worker !== "string" || worker.length === 0) throw new ValidationError(`${field("worker")} must be a path or a file URL`);
  if (options.worldSize !== undefined && options.machineType !== undefined) throw new ValidationError(`${field("worldSize")} and options.machineType are exclusive; give one`);
  if (options.worldSize !== undefined) positiveInteger(options.worldSize, field("worldSize"));
  if (options.machineType !== undefined) {
    try {
      parseMachineType(options.machineType);
    } catch (error) {
      throw new ValidationError(`${field("machineType")}: ${(error as Error).message}`);
    }
  }
  const attach = attachment(options, field);
  // An app in attach mode has exactly one runner, kept from boot on: its ranks come and go with their launcher.
  const minRunners = attach ? 1 : nonNegativeInteger(options.minRunners ?? DEFAULTS.minRunners, field("minRunners"));
  const maxRunners = positiveInteger(options.maxRunners ?? Math.max(DEFAULTS.maxRunners, minRunners), field("maxRunners"));
  if (minRunners > maxRunners) throw new ValidationError(`${field("minRunners")} (${minRunners}) is above options.maxRunners (${maxRunners})`);
  const retries = options.retries ?? {};
  const unknownRetry = typeof retries === "object" && retries !== null ? unknownKey(retries, RETRY_KEYS) : undefined;
  if (unknownRetry) throw new ConfigError(`app ${name}: options.retries has no field ${unknownRetry.described}`);
  const on = retries.on ?? ["crash"];
  if (!Array.isArray(on) || on.some((reason) => !RETRY_REASONS.includes(reason))) {
    throw new ValidationError(`${field("retries.on")} must list some of ${RETRY_REASONS.join(", ")}`);
  }
  const env = options.env ?? {};
  if (typeof env !== "object" || Object.values(env).some((value) => typeof value !== "string")) throw new ValidationError(`${field("env")} must map names to strings`);
  const secrets = options.secrets ?? [];
  if (!Array.isArray(secrets) || secrets.some((s) => typeof s !== "string" || s === "")) throw new ValidationError(`${field("secrets")} must be a list of variable names`);
  const setupArgs = options.setupArgs ?? {};
  if (typeof setupArgs !== "object" || setupArgs === null) throw new ValidationError(`${field("setupArgs")} must be an object`);
  return Object.freeze({
    name,
    worker,
    worldSize: options.worldSize,
    machineType: options.machineType,
    keepAlive: seconds(options.keepAlive ?? DEFAULTS.keepAlive, field("keepAlive"), true),
    minRunners,
    maxRunners,
    concurrency: positiveInteger(options.concurrency ?? DEFAULTS.concurrency, field("concurrency")),
    memoryMiB: options.memory === undefined ? undefined : memoryToMiB(options.memory, field("memory")),
    cpu: options.cpu === undefined ? undefined : checkCpuCount(options.cpu, field("cpu")),
    isolateDevices: isolateDevices(options.isolateDevices, field("isolateDevices")),
    timeout: seconds(options.timeout ?? DEFAULTS.timeout, field("timeout")),
    retries: Object.freeze({ max: nonNegativeInteger(retries.max ?? 0, field("retries.max")), on: Object.freeze([...on]) }),
    startupTimeout: seconds(options.startupTimeout ?? DEFAULTS.startupTimeout, field("startupTimeout")),
    heartbeatTimeout: seconds(options.heartbeatTimeout ?? (attach ? DEFAULTS.externalHeartbeatTimeout : DEFAULTS.heartbeatTimeout), field("heartbeatTimeout"), true),
    maxQueueLength: positiveInteger(options.maxQueueLength ?? DEFAULTS.maxQueueLength, field("maxQueueLength")),
    setupArgs: Object.freeze({ ...setupArgs }),
    keepalivePayload: options.keepalivePayload ?? {},
    keepaliveInterval: options.keepaliveInterval === undefined ? undefined : seconds(options.keepaliveInterval, field("keepaliveInterval")),
    env: Object.freeze({ ...env }),
    secrets: Object.freeze([...secrets]),
    title: typeof options.title === "string" ? options.title : name,
    exampleInput: options.exampleInput ?? {},
    attach,
  });
}

const LAUNCHERS = ["spawn", "external"] as const;
/** Options that shape runners the gateway spawns or scales: an app in attach mode has one runner and no ranks of its own. */
const SPAWN_ONLY: ReadonlyArray<[keyof AppOptions, string]> = [
  ["machineType", "give worldSize, the ranks the launcher starts; their devices are the launcher's hosts'"],
  ["minRunners", "the app has one runner, started at boot and never scaled to zero: the launcher owns the ranks"],
  ["maxRunners", "the app has one runner: the launcher owns the ranks, and a second runner would have none"],
  ["keepAlive", "the runner is never stopped for idleness: the launcher owns the ranks, and they exit with it"],
  ["memory", "the ranks run on the launcher's hosts; limit them there"],
  ["cpu", "the ranks run on the launcher's hosts; pin them there"],
  ["isolateDevices", "the ranks get their devices from the launcher"],
  ["env", "the ranks get their environment from the launcher"],
  ["secrets", "the ranks get their environment from the launcher"],
];

/**
 * Checks the attach-mode fields: `launcher: "external"` with where ranks join,
 * and none of the fields that concern spawned or scaled runners.
 * @returns undefined for an app whose ranks the gateway spawns.
 */
function attachment(options: AppOptions, field: (key: string) => string): AppAttachment | undefined {
  const launcher = options.launcher ?? "spawn";
  if (!LAUNCHERS.includes(launcher)) throw new ValidationError(`${field("launcher")} must be "spawn" or "external"; got ${JSON.stringify(launcher)}`);
  if (launcher === "spawn") {
    for (const key of ["workerAddr", "workerPort", "joinFile"] as const) {
      if (options[key] !== undefined) throw new ValidationError(`${field(key)} needs options.launcher "external" (the gateway spawns this app's ranks on its own host)`);
    }
    return undefined;
  }
  for (const [key, why] of SPAWN_ONLY) {
    const value = options[key];
    // One runner is what an external app has anyway; saying so is not an error.
    const harmless = (key === "minRunners" || key === "maxRunners") && value === 1;
    if (value !== undefined && !harmless) throw new ValidationError(`${field(key)} cannot be set with launcher "external": ${why}`);
  }
  if (options.worldSize === undefined) throw new ValidationError(`${field("worldSize")} is required with launcher "external": the number of ranks the launcher starts`);
  const workerAddr = options.workerAddr ?? DEFAULTS.externalWorkerAddr;
  if (typeof workerAddr !== "string" || workerAddr.length === 0) throw new ValidationError(`${field("workerAddr")} must be a host address`);
  const workerPort = options.workerPort ?? 0;
  if (!Number.isInteger(workerPort) || workerPort < 0 || workerPort > 65535) throw new ValidationError(`${field("workerPort")} must be a port number (0 to 65535); got ${JSON.stringify(workerPort)}`);
  const joinFile = options.joinFile;
  if (joinFile !== undefined && (typeof joinFile !== "string" || joinFile.length === 0)) throw new ValidationError(`${field("joinFile")} must be a file path`);
  return Object.freeze({ workerAddr, workerPort, joinFile });
}

/** What {@link resolveApp} needs to know about the host. */
export interface HostInfo {
  /** CUDA devices on this host. */
  gpuCount: number;
  /** Why there are none, when there are none. */
  noGpuReason?: string;
  /** Folder a relative `worker` path resolves against. */
  baseDir: string;
  /** Where secrets are read from. @default process.env */
  environment?: NodeJS.ProcessEnv;
  /** Cores ranks may be pinned to. @default this process's CPU affinity */
  cpuCount?: number;
}

/**
 * Fits an app to this host.
 * @throws {ConfigError} when the machine type asks for more GPUs than the host has, `cpu` more cores than it has, or a secret is unset.
 */
export function resolveApp(app: AppDefinition, host: HostInfo): ResolvedApp {
  const spec = app.machineType ? parseMachineType(app.machineType) : { worldSize: app.worldSize ?? 1, gpu: false };
  const gpusPerRunner = spec.gpu ? spec.worldSize : 0;
  if (gpusPerRunner > host.gpuCount) {
    const why = host.gpuCount === 0 && host.noGpuReason ? ` (${host.noGpuReason})` : "";
    throw new ConfigError(
      `app ${app.name}: machine type ${app.machineType} needs ${gpusPerRunner} GPU${gpusPerRunner === 1 ? "" : "s"} per runner but this host has ${host.gpuCount}${why}; use a cpu machine type or a smaller gpu-x<N>`,
    );
  }
  if (app.cpu !== undefined) {
    const cores = host.cpuCount ?? defaultAllowedCpus().length;
    if (app.cpu > cores) throw new ConfigError(`app ${app.name}: options.cpu asks for ${app.cpu} cores per rank but this host has ${cores}`);
  }
  const environment = host.environment ?? process.env;
  const secretValues: Record<string, string> = {};
  for (const secret of app.secrets) {
    const value = environment[secret];
    if (value === undefined) throw new ConfigError(`app ${app.name}: secret ${secret} is not set in the gateway's environment`);
    secretValues[secret] = value;
  }
  const workerPath = app.worker.startsWith("file:") ? fileURLToPath(app.worker) : isAbsolute(app.worker) ? app.worker : resolve(host.baseDir, app.worker);
  const joinFile = app.attach?.joinFile;
  const attach = app.attach && joinFile !== undefined && !isAbsolute(joinFile) ? Object.freeze({ ...app.attach, joinFile: resolve(host.baseDir, joinFile) }) : app.attach;
  return Object.freeze({ ...app, worldSize: spec.worldSize, gpusPerRunner, workerPath, rankEnv: Object.freeze({ ...app.env, ...secretValues }), attach });
}

const SCRIPT = /\.(c|m)?(j|t)sx?$/;

/**
 * Checks, without running it, that an app's worker module exists and (when it
 * is written as an ES module) has a default export; otherwise the mistake
 * would surface only at the first request, as a runner that failed to start.
 * Importing the module to look would run its top-level code (loading
 * weights, say) in the gateway, so esbuild reads its exports instead.
 * @throws {ConfigError} naming the app and the file.
 */
export async function checkWorkerModule(app: ResolvedApp): Promise<void> {
  // In attach mode the ranks load the worker on their own hosts (`multirank rank --worker`), not here.
  if (app.attach) return;
  const path = app.workerPath;
  if (!existsSync(path)) throw new ConfigError(`app ${app.name}: options.worker: no such file ${path}`);
  if (!SCRIPT.test(path)) return;
  const { build } = await import("esbuild");
  let result;
  try {
    result = await build({ entryPoints: [path], bundle: false, metafile: true, write: false, logLevel: "silent" });
  } catch (error) {
    const first = (error as { errors?: Array<{ text: string; location?: { line: number; column: number } | null }> }).errors?.[0];
    const where = first?.location ? `:${first.location.line}:${first.location.column + 1}` : "";
    throw new ConfigError(`app ${app.name}: worker module ${path}${where} does not parse: ${first?.text ?? (error as Error).message}`, { cause: error });
  }
  const input = Object.values(result.metafile.inputs)[0];
  const output = Object.values(result.metafile.outputs)[0];
  // A CommonJS module (`module.exports = ...`) lists no exports; only an ES module can be told to lack a default.
  if (input?.format === "esm" && output && !output.exports.includes("default")) {
    const has = output.exports.length > 0 ? `it exports only ${output.exports.join(", ")}` : "it exports nothing";
    throw new ConfigError(`app ${app.name}: worker module ${path} has no default export (${has}); export default a class that extends DistributedWorker`);
  }
}

/** A duration in seconds, checked against MAX_DURATION_SECONDS (timers of any length work; longer ones are refused). */
function seconds(value: unknown, name: string, allowZero = false): number {
  durationToMs(value, name, { allowZero });
  return value as number;
}

function isolateDevices(value: unknown, field: string): boolean {
  if (value !== undefined && typeof value !== "boolean") throw new ValidationError(`${field} must be a boolean`);
  return value ?? false;
}
