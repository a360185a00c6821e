import { isAbsolute } from "node:path";
import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import { durationToMs } from "../util/timers.js";
import { abortSignal, boolean, integerInRange, nonEmptyString, oneOf, positiveInteger } from "../util/validate.js";
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
  readonly rendezvousSocket: string | undefined;
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

/** Longest unix socket path Linux takes (sun_path is 108 bytes with its terminating zero). */
const MAX_UNIX_PATH_BYTES = 107;

function unixSocketPath(value: unknown, field: string): string {
  const path = nonEmptyString(value, field, "an absolute unix socket path");
  if (!isAbsolute(path)) throw new ValidationError(`${field} must be an absolute path (got ${JSON.stringify(path)})`);
  if (Buffer.byteLength(path) > MAX_UNIX_PATH_BYTES) throw new ValidationError(`${field} is ${Buffer.byteLength(path)} bytes long; a unix socket path takes at most ${MAX_UNIX_PATH_BYTES}`);
  return path;
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
  const size = positiveInteger(options.size, "options.size");
  const rank = integerInRange(options.rank, "options.rank", 0, size - 1);
  const masterAddr = size > 1 ? nonEmptyString(options.masterAddr, "options.masterAddr", "a non-empty host name or address") : "127.0.0.1";
  const masterPort = size > 1 ? integerInRange(options.masterPort, "options.masterPort", 1, 65535) : 0;
  const rendezvousSocket = options.rendezvousSocket === undefined ? undefined : unixSocketPath(options.rendezvousSocket, "options.rendezvousSocket");
  // Seconds at the API (as everywhere in multirank), milliseconds inside; at most MAX_DURATION_SECONDS.
  const timeout = durationToMs(options.timeout ?? GROUP_DEFAULTS.timeout, "options.timeout");
  const operationTimeout = durationToMs(options.operationTimeout ?? GROUP_DEFAULTS.operationTimeout, "options.operationTimeout");
  if (options.signal !== undefined) abortSignal(options.signal, "options.signal");
  const backend = options.backend ?? GROUP_DEFAULTS.backend;
  if (backend !== "zmq") throw new ValidationError(`options.backend must be "zmq" (got ${String(backend)}); an NCCL backend is planned, see src/collectives/BACKENDS.md`);
  const transport = oneOf(options.transport ?? GROUP_DEFAULTS.transport, "options.transport", ["auto", "ipc", "tcp"] as const);
  const sharedMemory = boolean(options.sharedMemory ?? GROUP_DEFAULTS.sharedMemory, "options.sharedMemory");
  if (options.hostAddr !== undefined) nonEmptyString(options.hostAddr, "options.hostAddr", "a non-empty address");
  if (options.logger !== undefined && typeof (options.logger as { child?: unknown }).child !== "function") throw new ValidationError("options.logger must be a pino logger");
  const secret = options.secret ?? (process.env[GROUP_SECRET_ENV] || undefined);
  // The message never quotes the secret.
  if (secret !== undefined && (typeof secret !== "string" || secret.length < MIN_SECRET_LENGTH)) {
    throw new ValidationError(`options.secret (or ${GROUP_SECRET_ENV}) must be a string of at least ${MIN_SECRET_LENGTH} characters`);
  }
  return Object.freeze({
    rank,
    size,
    masterAddr,
    masterPort,
    rendezvousSocket,
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
  if (o.signal !== undefined) abortSignal(o.signal, `${method}: options.signal`);
  return o;
}
