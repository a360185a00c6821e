import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import { durationToMs } from "../util/timers.js";
import { RANK_ENV } from "../transport/messages.js";
import type { CollectiveOptions, ProcessGroupOptions } from "./types.js";

/** The environment variable the runner hands its ranks the group's secret in. */
export const GROUP_SECRET_ENV = RANK_ENV.groupSecret;
/** Shortest secret taken: anything shorter is guessable. */
const MIN_SECRET_LENGTH = 16;

/** {@link ProcessGroupOptions} after defaults and validation. */
export interface ResolvedGroupOptions {
  readonly rank: number;
  readonly size: number;
  readonly masterAddr: string;
  readonly masterPort: number;
  /** Milliseconds. */
  readonly timeout: number;
  readonly signal: AbortSignal | undefined;
  readonly logger: Logger | undefined;
  readonly backend: "zmq";
  readonly transport: "auto" | "ipc" | "tcp";
  readonly sharedMemory: boolean;
  readonly hostAddr: string | undefined;
  /** Milliseconds. */
  readonly operationTimeout: number;
  /** Undefined when the group runs without one (it warns). */
  readonly secret: string | undefined;
}

/** Defaults of the optional {@link ProcessGroupOptions}. */
export const GROUP_DEFAULTS = Object.freeze({
  /** Seconds. */
  timeout: 60,
  backend: "zmq" as const,
  transport: "auto" as const,
  sharedMemory: true,
  /** Seconds (torch.distributed's default of 30 minutes). */
  operationTimeout: 1800,
});

/**
 * Validates and completes process-group options.
 * @throws ValidationError naming the field ("options.size must be a positive integer").
 */
export function resolveGroupOptions(options: ProcessGroupOptions): ResolvedGroupOptions {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  const { rank, size, masterAddr, masterPort } = options;
  if (!Number.isInteger(size) || size < 1) throw new ValidationError(`options.size must be a positive integer (got ${String(size)})`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new ValidationError(`options.rank must be an integer in [0, ${size}) (got ${String(rank)})`);
  if (size > 1) {
    if (typeof masterAddr !== "string" || masterAddr.length === 0) throw new ValidationError("options.masterAddr must be a non-empty host name or address");
  }
  if (size > 1) {
    if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) throw new ValidationError(`options.masterPort must be an integer port in [1, 65535] (got ${String(masterPort)})`);
  }
  // Seconds at the API (as everywhere in multirank), milliseconds inside; at most MAX_DURATION_SECONDS.
  const timeout = durationToMs(options.timeout ?? GROUP_DEFAULTS.timeout, "options.timeout");
  const operationTimeout = durationToMs(options.operationTimeout ?? GROUP_DEFAULTS.operationTimeout, "options.operationTimeout");
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new ValidationError("options.signal must be an AbortSignal");
  const backend = options.backend ?? GROUP_DEFAULTS.backend;
  if (backend !== "zmq") throw new ValidationError(`options.backend must be "zmq" (got ${String(backend)}); an NCCL backend is planned, see src/collectives/BACKENDS.md`);
  const transport = options.transport ?? GROUP_DEFAULTS.transport;
  if (!["auto", "ipc", "tcp"].includes(transport)) throw new ValidationError(`options.transport must be "auto", "ipc" or "tcp" (got ${String(transport)})`);
  const sharedMemory = options.sharedMemory ?? GROUP_DEFAULTS.sharedMemory;
  if (typeof sharedMemory !== "boolean") throw new ValidationError("options.sharedMemory must be a boolean");
  if (options.hostAddr !== undefined && (typeof options.hostAddr !== "string" || options.hostAddr.length === 0)) throw new ValidationError("options.hostAddr must be a non-empty address");
  if (options.logger !== undefined && typeof (options.logger as { child?: unknown }).child !== "function") throw new ValidationError("options.logger must be a pino logger");
  const secret = options.secret ?? (process.env[GROUP_SECRET_ENV] || undefined);
  // The message never quotes the secret.
  if (secret !== undefined && (typeof secret !== "string" || secret.length < MIN_SECRET_LENGTH)) {
    throw new ValidationError(`options.secret (or ${GROUP_SECRET_ENV}) must be a string of at least ${MIN_SECRET_LENGTH} characters`);
  }
  return Object.freeze({
    rank,
    size,
    masterAddr: size > 1 ? masterAddr : "127.0.0.1",
    masterPort: size > 1 ? masterPort : 0,
    timeout,
    signal: options.signal,
    logger: options.logger,
    backend,
    transport,
    sharedMemory,
    hostAddr: options.hostAddr,
    operationTimeout,
    secret,
  });
}

/**
 * Reads torchrun's variables (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
 * `MASTER_PORT`) and the group's secret (`MULTIRANK_GROUP_SECRET`) into
 * process-group options; `extra` overrides them.
 * @throws ValidationError naming the variable when one is missing or not a number.
 * @example const group = await createProcessGroup(processGroupOptionsFromEnv());
 */
export function processGroupOptionsFromEnv(env: NodeJS.ProcessEnv = process.env, extra: Partial<ProcessGroupOptions> = {}): ProcessGroupOptions {
  const int = (name: string): number => {
    const raw = env[name];
    const value = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
    if (!Number.isInteger(value)) throw new ValidationError(`environment variable ${name} must be an integer (got ${raw === undefined ? "nothing" : JSON.stringify(raw)})`);
    return value;
  };
  const size = int("WORLD_SIZE");
  return {
    rank: int("RANK"),
    size,
    masterAddr: env.MASTER_ADDR ?? "127.0.0.1",
    masterPort: size > 1 ? int("MASTER_PORT") : Number(env.MASTER_PORT ?? 0) || 0,
    ...(env[GROUP_SECRET_ENV] ? { secret: env[GROUP_SECRET_ENV] } : {}),
    ...extra,
  } as ProcessGroupOptions;
}

/** Validates per-call options. @throws ValidationError naming `o.timeout` / `o.signal`. */
export function checkCallOptions(o: CollectiveOptions | undefined, method: string): CollectiveOptions {
  if (o === undefined) return {};
  if (typeof o !== "object" || o === null) throw new ValidationError(`${method}: options must be an object`);
  if (o.timeout !== undefined) durationToMs(o.timeout, `${method}: options.timeout`);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new ValidationError(`${method}: options.signal must be an AbortSignal`);
  return o;
}
