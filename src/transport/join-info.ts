import { createHmac } from "node:crypto";
import { ValidationError } from "../errors.js";

/**
 * What a rank started by another launcher (mpirun, srun, a Kubernetes Job,
 * torchrun) needs to join a runner: the runner's control endpoint, its CURVE
 * public key (the rank checks it is talking to that runner) and the run's
 * secret (the runner checks the rank belongs to this run). It is one opaque
 * string, `mrj1.` and base64url of a small JSON object, so it travels in one
 * environment variable or one file. It holds a secret: never log it, never
 * put it on a command line.
 */
export interface JoinInfo {
  /** `tcp://host:port` the ranks connect to. */
  endpoint: string;
  /** The runner's CURVE public key (Z85, 40 characters). */
  serverKey: string;
  /** The run's secret, hex: proves a rank to the runner and to its peers. */
  secret: string;
  /** Ranks the runner waits for. */
  worldSize: number;
}

const PREFIX = "mrj1.";
const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** Encodes `info` as the opaque join string. */
export function encodeJoinInfo(info: JoinInfo): string {
  return PREFIX + Buffer.from(JSON.stringify([info.endpoint, info.serverKey, info.secret, info.worldSize])).toString("base64url");
}

/**
 * Decodes a join string; `from` names where it came from in errors (never the string itself: it holds a secret).
 * @throws {ValidationError} not a join string of this version, or a field that is wrong.
 */
export function decodeJoinInfo(text: string, from = "the join string"): JoinInfo {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) throw new ValidationError(`${from} is not a multirank join string (it starts with "${PREFIX}"; print runner.joinInfo or read the runner's joinFile)`);
  let fields: unknown;
  try {
    fields = JSON.parse(Buffer.from(trimmed.slice(PREFIX.length), "base64url").toString("utf8"));
  } catch {
    throw new ValidationError(`${from} is damaged: its body is not valid base64url JSON`);
  }
  if (!Array.isArray(fields) || fields.length !== 4) throw new ValidationError(`${from} is damaged: it does not hold four fields`);
  const [endpoint, serverKey, secret, worldSize] = fields as unknown[];
  if (typeof endpoint !== "string" || !/^tcp:\/\/.+:\d+$/.test(endpoint)) throw new ValidationError(`${from} is damaged: its endpoint is not tcp://host:port`);
  if (typeof serverKey !== "string" || !Z85_KEY.test(serverKey)) throw new ValidationError(`${from} is damaged: its server key is not a Z85 CURVE key`);
  if (typeof secret !== "string" || !/^[0-9a-f]{32,}$/.test(secret)) throw new ValidationError(`${from} is damaged: its secret is not hex`);
  if (typeof worldSize !== "number" || !Number.isInteger(worldSize) || worldSize < 1) throw new ValidationError(`${from} is damaged: its world size is not a positive integer`);
  return { endpoint, serverKey, secret, worldSize };
}

/** The token rank `rank` proves itself with in its hello: HMAC-SHA256 of `join:<rank>` under the run's secret, hex. */
export function joinToken(secret: string, rank: number): string {
  return createHmac("sha256", secret).update(`join:${rank}`).digest("hex");
}

/** The process group's secret of a joined run, derived from the run's secret (so it never travels on its own). */
export function joinGroupSecret(secret: string): string {
  return createHmac("sha256", secret).update("group").digest("hex");
}
