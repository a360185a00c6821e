import { RANK_ENV } from "../transport/messages.js";

/** Everything a rank learns from its environment at start. */
export interface RankEnv {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  controlEndpoint: string;
  routingId: string;
  token: string;
  workerModule: string;
  /** The runner's compiled copy of a `.ts` worker (what to import instead of running tsx). */
  compiledWorker?: string | undefined;
  errorFile: string | undefined;
  maxMessageBytes: number;
  deathPipeFd: number | undefined;
  logLevel: string;
  curve: { serverKey: string; publicKey: string; secretKey: string } | undefined;
  /** Bytes of streamed results a request may send ahead of the runner's credit. */
  streamWindow: number;
  /** The process group's secret (the runner always sets one). */
  groupSecret: string | undefined;
  /** Where the group meets on this host, instead of MASTER_ADDR:MASTER_PORT (see `ProcessGroupOptions.rendezvousSocket`). */
  rendezvousSocket?: string | undefined;
  /**
   * A rank that joins a runner (attach mode, `multirank rank`): what its
   * hello adds, its host and, on rank 0, where the process group should meet.
   * Such a rank learns the group's secret and meeting point from `setup`.
   */
  join?: { host: string; group: { masterAddr: string; masterPort: number } | undefined } | undefined;
}

/** The runner's default `streamHighWaterMark`, for ranks started without one. */
const DEFAULT_STREAM_WINDOW = 4 * 1024 * 1024;

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === "") throw new Error(`environment variable ${name} is not set: this process must be started by DistributedRunner`);
  return value;
}

function integer(env: NodeJS.ProcessEnv, name: string, min = 0): number {
  const text = required(env, name);
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`environment variable ${name} must be an integer >= ${min}, got "${text}"`);
  return value;
}

/** Reads and checks a rank's environment; the message names the variable that is wrong. */
export function readRankEnv(env: NodeJS.ProcessEnv = process.env): RankEnv {
  const worldSize = integer(env, "WORLD_SIZE", 1);
  const rank = integer(env, "RANK");
  if (rank >= worldSize) throw new Error(`RANK (${rank}) must be below WORLD_SIZE (${worldSize})`);
  const serverKey = env[RANK_ENV.curveServerKey];
  return {
    rank,
    worldSize,
    masterAddr: env.MASTER_ADDR || "127.0.0.1",
    masterPort: integer(env, "MASTER_PORT"),
    controlEndpoint: required(env, RANK_ENV.controlEndpoint),
    routingId: required(env, RANK_ENV.routingId),
    token: required(env, RANK_ENV.token),
    workerModule: required(env, RANK_ENV.workerModule),
    compiledWorker: env[RANK_ENV.compiledWorker] || undefined,
    errorFile: env[RANK_ENV.errorFile] || undefined,
    maxMessageBytes: integer(env, RANK_ENV.maxMessageBytes, 1),
    deathPipeFd: env[RANK_ENV.deathPipeFd] ? integer(env, RANK_ENV.deathPipeFd) : undefined,
    logLevel: env[RANK_ENV.logLevel] || "info",
    streamWindow: env[RANK_ENV.streamWindow] ? integer(env, RANK_ENV.streamWindow, 1) : DEFAULT_STREAM_WINDOW,
    curve: serverKey
      ? { serverKey, publicKey: required(env, RANK_ENV.curvePublicKey), secretKey: required(env, RANK_ENV.curveSecretKey) }
      : undefined,
    groupSecret: env[RANK_ENV.groupSecret] || undefined,
    rendezvousSocket: env[RANK_ENV.rendezvousSocket] || undefined,
  };
}
