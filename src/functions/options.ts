import { ValidationError } from "../errors.js";
import { checkCpuCount, memoryToMiB } from "../gateway/limits.js";
import { isMachineType, type MachineType } from "../gateway/machine-types.js";
import { durationToMs } from "../util/timers.js";

/** How a remote function's arguments and results cross to its environment. */
export type Serializer = "msgpack" | "json";

/** What `remote()` takes besides the function. Times are in seconds. */
export interface RemoteOptions {
  /** Unique per host; names the function on a server (`/fal/queue/fn/<name>`). Lowercase letters, digits, `-`, `_`, `.`. */
  name: string;
  /** npm specs installed into the function's own environment (`"is-number@7.0.0"`, `"file:/abs/pkg.tgz"`). @default [] */
  dependencies?: readonly string[];
  /** `cpu`, `cpu-x<N>`, `gpu`, `gpu-x<N>`; or give `worldSize`. @default "cpu" */
  machineType?: MachineType;
  /** Ranks (a `DistributedWorker` class is sharded over them). @default 1 */
  worldSize?: number;
  /**
   * Memory per rank, GiB (`0.5` is 512 MiB; at least 1/16): V8's heap limit,
   * and a cgroup `memory.max` where cgroup v2 can be written (root). A call
   * whose rank goes over it fails with `MemoryLimitError`
   * (`MULTIRANK_ERR_MEMORY_LIMIT`), and the next call gets fresh ranks.
   * @default unset (no limit)
   */
  memory?: number;
  /**
   * Cores per rank, pinned (an integer of at least 1). More than the host has
   * fails the first call with a `ConfigError` naming both counts.
   * @default unset (the host's cores are split among the ranks)
   */
  cpu?: number;
  /** Seconds per call. @default 300 */
  timeout?: number;
  /** Extra attempts after a failed call (a crash or an error). @default 0 */
  retries?: number;
  /** Idle seconds the environment stays warm after a call; each call restarts it. @default 10 */
  keepAlive?: number;
  /** Runners kept warm / started at most. @default 0, 1 */
  minRunners?: number;
  maxRunners?: number;
  /** Calls one runner takes at once. @default 1 */
  concurrency?: number;
  /** Extra environment of the function's processes. Never logged. @default {} */
  env?: Record<string, string>;
  /** Names of variables copied from this process's environment. Never logged. @default [] */
  secrets?: readonly string[];
  /** How arguments and results cross: msgpack keeps Buffers and typed arrays as binary. @default "msgpack" */
  serializer?: Serializer;
  /** Seconds the environment may take to start (setup included). @default 1800 */
  startupTimeout?: number;
  /**
   * On a server, also serve the function directly at `method` + `path`
   * (Runpod Flash's load-balanced endpoints): no queue, the JSON body (the
   * query for GET and DELETE) is its one argument, its result the JSON answer.
   * @default "POST" when `path` is given
   */
  method?: HttpMethod;
  /** The path of that endpoint, e.g. `/api/process`; not under `/fal/`, `/v2/` or `/fn/`. */
  path?: string;
}

/** Methods a function's direct endpoint may use. */
export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/** The options after defaults. */
export interface ResolvedRemoteOptions {
  readonly name: string;
  readonly dependencies: readonly string[];
  readonly machineType: MachineType | undefined;
  readonly worldSize: number | undefined;
  /** GiB per rank, as given. */
  readonly memory: number | undefined;
  readonly cpu: number | undefined;
  readonly timeout: number;
  readonly retries: number;
  readonly keepAlive: number;
  readonly minRunners: number;
  readonly maxRunners: number;
  readonly concurrency: number;
  readonly env: Readonly<Record<string, string>>;
  readonly secrets: readonly string[];
  readonly serializer: Serializer;
  readonly startupTimeout: number;
  readonly method: HttpMethod | undefined;
  readonly path: string | undefined;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const DEFAULTS = Object.freeze({ timeout: 300, retries: 0, keepAlive: 10, minRunners: 0, maxRunners: 1, concurrency: 1, serializer: "msgpack" as Serializer, startupTimeout: 1800 });

function count(value: unknown, field: string, min: number): number {
  if (!Number.isInteger(value) || (value as number) < min) throw new ValidationError(`${field} must be an integer of at least ${min}, got ${String(value)}`);
  return value as number;
}

/**
 * Merges defaults and validates once; every message names the field.
 * @throws {ValidationError}
 */
export function resolveRemoteOptions(options: RemoteOptions, overrides: Partial<RemoteOptions> = {}): ResolvedRemoteOptions {
  if (typeof options !== "object" || options === null) throw new ValidationError("remote(options, fn): options must be an object");
  const merged = { ...options, ...overrides };
  const { name } = merged;
  if (typeof name !== "string" || !NAME.test(name)) throw new ValidationError(`remote options.name must be 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit; got ${JSON.stringify(name)}`);
  const field = (key: string): string => `remote function ${name}: options.${key}`;
  const dependencies = merged.dependencies ?? [];
  if (!Array.isArray(dependencies) || dependencies.some((d) => typeof d !== "string" || d.trim() === "")) throw new ValidationError(`${field("dependencies")} must be a list of npm specs`);
  if (merged.worldSize !== undefined && merged.machineType !== undefined) throw new ValidationError(`${field("worldSize")} and options.machineType are exclusive; give one`);
  if (merged.machineType !== undefined && !isMachineType(merged.machineType)) throw new ValidationError(`${field("machineType")} must be cpu, cpu-x<N>, gpu or gpu-x<N>; got ${JSON.stringify(merged.machineType)}`);
  if (merged.worldSize !== undefined) count(merged.worldSize, field("worldSize"), 1);
  if (merged.memory !== undefined) memoryToMiB(merged.memory, field("memory"));
  if (merged.cpu !== undefined) checkCpuCount(merged.cpu, field("cpu"));
  const seconds = (key: "timeout" | "keepAlive" | "startupTimeout", allowZero = false): number => {
    const value = merged[key] ?? DEFAULTS[key];
    durationToMs(value, field(key), { allowZero });
    return value;
  };
  const env = merged.env ?? {};
  if (typeof env !== "object" || env === null || Object.values(env).some((v) => typeof v !== "string")) throw new ValidationError(`${field("env")} must map names to strings`);
  const secrets = merged.secrets ?? [];
  if (!Array.isArray(secrets) || secrets.some((s) => typeof s !== "string" || s === "")) throw new ValidationError(`${field("secrets")} must be a list of variable names`);
  const serializer = merged.serializer ?? DEFAULTS.serializer;
  if (serializer !== "msgpack" && serializer !== "json") throw new ValidationError(`${field("serializer")} must be "msgpack" or "json"; got ${JSON.stringify(serializer)}`);
  const minRunners = count(merged.minRunners ?? DEFAULTS.minRunners, field("minRunners"), 0);
  const maxRunners = count(merged.maxRunners ?? DEFAULTS.maxRunners, field("maxRunners"), 1);
  if (minRunners > maxRunners) throw new ValidationError(`${field("minRunners")} (${minRunners}) must not exceed options.maxRunners (${maxRunners})`);
  const { method, path } = merged;
  if (method !== undefined && !["GET", "POST", "PUT", "PATCH", "DELETE"].includes(method)) throw new ValidationError(`${field("method")} must be GET, POST, PUT, PATCH or DELETE; got ${JSON.stringify(method)}`);
  if (method !== undefined && path === undefined) throw new ValidationError(`${field("method")} needs options.path`);
  if (path !== undefined && (typeof path !== "string" || !/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(path) || path.includes("//") || /\/\.\.?(\/|$)/.test(path))) {
    throw new ValidationError(`${field("path")} must be an absolute URL path such as "/api/process"; got ${JSON.stringify(path)}`);
  }
  return Object.freeze({
    name,
    dependencies: Object.freeze([...dependencies]),
    machineType: merged.machineType,
    worldSize: merged.worldSize,
    memory: merged.memory,
    cpu: merged.cpu,
    timeout: seconds("timeout"),
    retries: count(merged.retries ?? DEFAULTS.retries, field("retries"), 0),
    keepAlive: seconds("keepAlive", true),
    minRunners,
    maxRunners,
    concurrency: count(merged.concurrency ?? DEFAULTS.concurrency, field("concurrency"), 1),
    env: Object.freeze({ ...env }),
    secrets: Object.freeze([...secrets]),
    serializer,
    startupTimeout: seconds("startupTimeout"),
    method: path === undefined ? undefined : (method ?? "POST"),
    path,
  });
}
