import type { Logger } from "pino";
import type { DeviceSelection } from "../devices/index.js";
import { durationToMs } from "../util/timers.js";
import { check, integerAtLeast, integerInRange, nonEmptyString, nonNegativeInteger, oneOf, positiveInteger } from "../util/validate.js";
import type { ControlTransport } from "./endpoints.js";
import { RankPool } from "./rank-pool.js";

/** Options of `new DistributedRunner(options)`. Times are in seconds, as in fal. */
export interface DistributedRunnerOptions {
  /** Path (or file URL) of the worker module; its default export extends `DistributedWorker`. `.ts` runs without a build. */
  worker: string | URL;
  /** Number of ranks. @default 1 */
  worldSize?: number;
  /** Address ranks use to reach each other (collectives). @default "127.0.0.1" */
  masterAddr?: string;
  /**
   * Port of the process-group rendezvous. 0: the runner's own ranks meet at a
   * unix socket in its private directory (no ZeroMQ, no port; they still get
   * a free port as `MASTER_PORT`). A port: they meet there over tcp. @default 0
   */
  masterPort?: number;
  /**
   * Who starts the ranks. `"spawn"`: the runner, as child processes on this
   * host. `"external"` (attach mode): another launcher (mpirun, srun, a
   * Kubernetes Indexed Job, torchrun) starts `multirank rank` on its hosts;
   * the runner spawns nothing, listens on ZeroMQ tcp with CURVE at
   * `workerAddr:workerPort`, and `start()` waits for `worldSize` ranks to join
   * with {@link DistributedRunner.joinInfo}. `transport`, `devices`,
   * `cpusPerRank`, `memoryLimitMiB`, `nodeArgs`, `env`, `rankPool`, `masterAddr` and
   * `masterPort` concern spawned ranks only. @default "spawn"
   */
  launcher?: RankLauncherKind;
  /**
   * With `launcher: "external"`: also write the join string to this path,
   * mode 0600, when the runner starts listening (the same string across
   * restarts). @default unset
   */
  joinFile?: string;
  /** Address the control socket binds (with `launcher: "external"`, one the ranks' hosts reach). @default "127.0.0.1" */
  workerAddr?: string;
  /** Port of the control socket; 0 picks one (a unix socket on loopback). @default 0 */
  workerPort?: number;
  /**
   * How the runner talks to its ranks. `"auto"`: a unix stream socket on
   * loopback with port 0 (the fastest on one host), ZeroMQ over tcp
   * otherwise. `"unix"` forces the unix socket, `"ipc"` ZeroMQ over `ipc://`,
   * `"tcp"` ZeroMQ over tcp (CURVE-secured, loopback included). `getZmqSocket()`
   * needs a ZeroMQ transport. @default "auto"
   */
  transport?: ControlTransport;
  /** Default per-request timeout, seconds, at most 365 days (`MAX_DURATION_SECONDS`). @default 86400 */
  timeout?: number;
  /** What `keepalive()` sends. @default {} */
  keepalivePayload?: unknown;
  /** Idle seconds before a keepalive request is sent (at most 365 days); unset turns keepalive off. @default undefined */
  keepaliveInterval?: number;
  /** Working directory of the ranks and base for a relative `worker`. @default process.cwd() */
  cwd?: string;
  /** Extra environment for the ranks (on top of this process's). Never logged. @default {} */
  env?: Record<string, string>;
  /** Where runner and rank logs go. @default pino to stderr at MULTIRANK_LOG_LEVEL (info) */
  logger?: Logger;
  /** Largest message, either way, in bytes. @default 536870912 (512 MiB) */
  maxMessageBytes?: number;
  /** Which device each rank gets: `"auto"` (GPUs if any, else CPU), `"cpu"`, or a list per rank. @default "auto" */
  devices?: DeviceSelection;
  /** Set `CUDA_VISIBLE_DEVICES` to each rank's device alone (breaks peer-to-peer). @default false */
  isolateDevices?: boolean;
  /** Extra `node` flags for rank processes. @default [] */
  nodeArgs?: readonly string[];
  /**
   * Memory per rank, MiB (an integer of at least 64). Each rank gets V8's
   * `--max-old-space-size` at this size and, where cgroup v2 can be written
   * (usually as root), its own cgroup with `memory.max` at this size and no
   * swap. A rank that goes over it dies, and its requests fail with
   * `MemoryLimitError` (`MULTIRANK_ERR_MEMORY_LIMIT`). @default unset (no limit)
   */
  memoryLimitMiB?: number;
  /**
   * Cores each rank is pinned to (an integer of at least 1), taken from this
   * process's allowed cores (a GPU rank's local cores when it has enough).
   * More than the allowed cores is a `ValidationError`. @default unset (the
   * allowed cores are split evenly among the ranks)
   */
  cpusPerRank?: number;
  /** Give ranks a pipe that closes when the runner dies, so they exit with it. @default true */
  deathPipe?: boolean;
  /** Lines of each rank's stderr kept for crash reports. @default 40 */
  stderrTailLines?: number;
  /**
   * Seconds a rank's event loop may go without answering the runner's
   * heartbeat once the group is ready. Past it the rank is declared hung: its
   * requests fail with `RankHungError` and the group is stopped, as after a
   * crash. Heartbeats are answered by the rank's main thread, so a worker that
   * blocks it (a synchronous loop) is caught; one that awaits long async work
   * is not. `setup()` is judged by the start timeout instead. 0 turns it off.
   * The default, a minute, is far above any pause a healthy event loop shows
   * (GC, a large JSON parse) and far below the day a hang cost before; NCCL's
   * watchdog makes the same trade at minutes.
   *
   * With `launcher: "external"` the default is 10 s, and heartbeats run from
   * the moment each rank joins (setup included): a rank on another host can
   * vanish without an exit the runner could see (killed, host unreachable),
   * and its requests then fail within `heartbeatTimeout` plus one ping
   * interval (a quarter of it, at most 5 s): 12.5 s by default. Until a
   * joined rank is set up it may be silent for 60 s (or this, if longer).
   * @default 60 (10 with `launcher: "external"`)
   */
  heartbeatTimeout?: number;
  /**
   * Bytes of streamed results a request may have on their way to a consumer
   * that has not taken them (the rank's stream window). Past it the rank's
   * `addStreamingResult` waits until the consumer of `stream()` catches up.
   * @default 4194304 (4 MiB)
   */
  streamHighWaterMark?: number;
  /**
   * Take ranks from this pool of pre-started processes instead of spawning
   * them (see {@link RankPool}): a start then pays only for loading the worker
   * and `setup()`. Ranks whose node flags or node start-up variables differ
   * from the pool's are spawned as usual, as are ranks when the pool is empty.
   * Several runners may share one pool. @default unset (every rank is spawned)
   */
  rankPool?: RankPool;
}

/** Who starts the ranks: the runner (`"spawn"`) or another launcher (`"external"`, attach mode). */
export type RankLauncherKind = "spawn" | "external";

/** The options after defaults, as the runner uses them. */
export interface ResolvedRunnerOptions {
  worker: string;
  launcher: RankLauncherKind;
  joinFile: string | undefined;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  workerAddr: string;
  workerPort: number;
  transport: ControlTransport;
  timeoutMs: number;
  keepalivePayload: unknown;
  keepaliveIntervalMs: number | undefined;
  cwd: string;
  env: Readonly<Record<string, string>>;
  logger: Logger | undefined;
  maxMessageBytes: number;
  devices: DeviceSelection;
  isolateDevices: boolean;
  nodeArgs: readonly string[];
  memoryLimitMiB: number | undefined;
  cpusPerRank: number | undefined;
  deathPipe: boolean;
  stderrTailLines: number;
  /** 0 when heartbeats are off. */
  heartbeatTimeoutMs: number;
  streamHighWaterMark: number;
  rankPool: RankPool | undefined;
}

/** The smallest per-rank memory limit, MiB: Node itself needs about 40 MiB before any user code runs. */
export const MIN_MEMORY_LIMIT_MIB = 64;

const RANK_LAUNCHERS: readonly RankLauncherKind[] = ["spawn", "external"];
const CONTROL_TRANSPORTS: readonly ControlTransport[] = ["auto", "unix", "ipc", "tcp"];

export const RUNNER_DEFAULTS = Object.freeze({
  worldSize: 1,
  masterAddr: "127.0.0.1",
  masterPort: 0,
  workerAddr: "127.0.0.1",
  workerPort: 0,
  transport: "auto" as const,
  timeout: 86_400,
  keepalivePayload: Object.freeze({}),
  maxMessageBytes: 512 * 1024 * 1024,
  devices: "auto" as const,
  isolateDevices: false,
  deathPipe: true,
  stderrTailLines: 40,
  heartbeatTimeout: 60,
  /** Seconds, with `launcher: "external"`. */
  externalHeartbeatTimeout: 10,
  launcher: "spawn" as const,
  streamHighWaterMark: 4 * 1024 * 1024,
});

/**
 * Seconds to milliseconds for a timeout the caller gave; validates it.
 * @throws {ValidationError} naming `field` unless it is a positive number of seconds up to `MAX_DURATION_SECONDS` (365 days).
 */
export function timeoutToMs(value: unknown, field: string): number {
  return durationToMs(value, field);
}

/** Merges defaults and validates once; every message names the field. */
export function resolveRunnerOptions(options: DistributedRunnerOptions): ResolvedRunnerOptions {
  check(typeof options === "object" && options !== null, "options must be an object");
  const worker = options.worker instanceof URL ? options.worker.href : options.worker;
  nonEmptyString(worker, "options.worker", "the path of a worker module");
  const merged = { ...RUNNER_DEFAULTS, ...stripUndefined(options) };
  const worldSize = positiveInteger(merged.worldSize, "options.worldSize");
  const launcher = oneOf(merged.launcher, "options.launcher", RANK_LAUNCHERS);
  const joinFile = options.joinFile === undefined ? undefined : nonEmptyString(options.joinFile, "options.joinFile", "a file path");
  check(joinFile === undefined || launcher === "external", 'options.joinFile needs options.launcher "external" (spawned ranks need no join string)');
  const masterAddr = nonEmptyString(merged.masterAddr, "options.masterAddr", "a host address");
  const masterPort = integerInRange(merged.masterPort, "options.masterPort", 0, 65535);
  const workerAddr = nonEmptyString(merged.workerAddr, "options.workerAddr", "a host address");
  const workerPort = integerInRange(merged.workerPort, "options.workerPort", 0, 65535);
  const transport = oneOf(merged.transport, "options.transport", CONTROL_TRANSPORTS);
  const timeoutMs = timeoutToMs(merged.timeout, "options.timeout");
  let keepaliveIntervalMs: number | undefined;
  if (options.keepaliveInterval !== undefined && options.keepaliveInterval !== null) {
    keepaliveIntervalMs = timeoutToMs(options.keepaliveInterval, "options.keepaliveInterval");
  }
  const maxMessageBytes = integerAtLeast(merged.maxMessageBytes, "options.maxMessageBytes", 1024, "an integer number of bytes");
  check(
    merged.devices === "auto" || merged.devices === "cpu" || Array.isArray(merged.devices),
    `options.devices must be "auto", "cpu" or a list of device indices/UUIDs, got ${String(merged.devices)}`,
  );
  if (Array.isArray(merged.devices)) {
    check(merged.devices.length >= worldSize, `options.devices lists ${merged.devices.length} devices for ${worldSize} ranks`);
  }
  check(typeof merged.env === "object" || merged.env === undefined, "options.env must be an object of strings");
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.env ?? {})) {
    check(typeof value === "string", `options.env.${key} must be a string, got ${typeof value}`);
    env[key] = value;
  }
  const nodeArgs = options.nodeArgs ?? [];
  check(Array.isArray(nodeArgs) && nodeArgs.every((a) => typeof a === "string"), "options.nodeArgs must be a list of strings");
  check(!nodeArgs.some((a) => a.startsWith("--max-old-space-size")) || options.memoryLimitMiB === undefined, "options.nodeArgs sets --max-old-space-size and options.memoryLimitMiB sets it too; give one");
  const memoryLimitMiB =
    options.memoryLimitMiB === undefined ? undefined : integerAtLeast(options.memoryLimitMiB, "options.memoryLimitMiB", MIN_MEMORY_LIMIT_MIB, "an integer number of MiB");
  const cpusPerRank = options.cpusPerRank === undefined ? undefined : positiveInteger(options.cpusPerRank, "options.cpusPerRank");
  const stderrTailLines = nonNegativeInteger(merged.stderrTailLines, "options.stderrTailLines");
  // 0 turns heartbeats off.
  const heartbeatTimeout = options.heartbeatTimeout ?? (launcher === "external" ? RUNNER_DEFAULTS.externalHeartbeatTimeout : RUNNER_DEFAULTS.heartbeatTimeout);
  const heartbeatTimeoutMs = durationToMs(heartbeatTimeout, "options.heartbeatTimeout", { allowZero: true });
  const streamHighWaterMark = integerAtLeast(merged.streamHighWaterMark, "options.streamHighWaterMark", 1024, "an integer number of bytes");
  check(options.rankPool === undefined || options.rankPool instanceof RankPool, "options.rankPool must be a RankPool");
  return Object.freeze({
    worker,
    launcher,
    joinFile,
    worldSize,
    masterAddr,
    masterPort,
    workerAddr,
    workerPort,
    transport,
    timeoutMs,
    keepalivePayload: merged.keepalivePayload,
    keepaliveIntervalMs,
    cwd: options.cwd ?? process.cwd(),
    env: Object.freeze(env),
    logger: options.logger,
    maxMessageBytes,
    devices: merged.devices,
    isolateDevices: Boolean(merged.isolateDevices),
    nodeArgs: Object.freeze([...nodeArgs]),
    memoryLimitMiB,
    cpusPerRank,
    deathPipe: Boolean(merged.deathPipe),
    stderrTailLines,
    heartbeatTimeoutMs,
    streamHighWaterMark,
    rankPool: options.rankPool,
  });
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
