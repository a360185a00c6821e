/**
 * `multirank rank --worker PATH`: one rank of a runner in attach mode
 * (`launcher: "external"`), started on its host by another launcher (mpirun,
 * srun, a Kubernetes Indexed Job, torchrun). It reads where it sits from the
 * launcher's variables, the join string from its environment or a file,
 * pins itself to its host's device for its local rank and serves the runner
 * until teardown.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { curveKeyPair } from "zeromq";
import { MultirankError } from "../errors.js";
import { decodeJoinInfo, joinToken, type JoinInfo } from "../transport/join-info.js";
import { groupMeetingPoint, pinLocalRank } from "../worker/joined-rank.js";
import { readRankPlacement, type RankPlacement } from "../worker/launcher-env.js";
import type { RankEnv } from "../worker/rank-env.js";
import { startRank } from "../worker/rank-start.js";

export const USAGE = `usage: multirank rank --worker <path> [--join <string>] [--world-size <n>]

Runs one rank of a runner started with launcher: "external". Start it on
every host with your launcher (mpirun, srun, a Kubernetes Indexed Job,
torchrun); each rank reads its place from the launcher's variables (RANK,
OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID or JOB_COMPLETION_INDEX, with
their sizes and local ranks).

  --worker <path>     the worker module (.ts runs as is), as the runner's worker option
  --join <string>     the runner's join string; prefer MULTIRANK_JOIN in the
                      environment, or MULTIRANK_JOIN_FILE (a path), since a
                      command line is visible to every user of the host
  --world-size <n>    the world size, when the launcher does not say it (a
                      Kubernetes Indexed Job; also MULTIRANK_WORLD_SIZE); checked
                      against the join string's
  --help              this text

Environment: MULTIRANK_HOST_ADDR (rank 0: the address other hosts reach for
the process group), MULTIRANK_LOG_LEVEL, MULTIRANK_MAX_MESSAGE_BYTES.
Exit codes: 0 after the runner's stop(); 75 after its restart() (so a
restart policy starts the rank again); 2 bad usage, a placement that
disagrees with the runner, or a join the runner refused; 70 the runner went
silent; 71 the process group broke; 1 a fatal error.
`;

/** A bad command line, join string or placement: exit 2, with a message that never holds the join string. */
class UsageError extends Error {}

/** The runner's default maxMessageBytes: a rank cannot learn the runner's own. */
const DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024;

/**
 * Runs the subcommand; resolves only when the rank did not start (the
 * running rank ends the process itself, after its teardown).
 * @returns the exit code: 2 for bad usage.
 */
export async function runRankCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let env: RankEnv;
  let placement: RankPlacement;
  try {
    const args = parseArguments(argv);
    if (args === "help") {
      out.write(USAGE);
      return 0;
    }
    const join = readJoin(args.join);
    const worldSize = args.worldSize ?? envWorldSize();
    if (worldSize !== undefined && worldSize !== join.worldSize) {
      throw new UsageError(`the world size given (${worldSize}) disagrees with the runner's (${join.worldSize}, from its join string)`);
    }
    placement = readPlacement(join.worldSize);
    env = await rankEnvFor(args.worker, join, placement);
  } catch (error) {
    if (error instanceof UsageError || error instanceof MultirankError) {
      process.stderr.write(`multirank rank: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  await startRank(env, {
    pin: (logger) => pinLocalRank(placement, logger),
    refused: (reason) => process.stderr.write(`multirank rank: the runner refused rank ${placement.rank}: ${reason}\n`),
    runnerGone: (why) => process.stderr.write(`multirank rank: ${why}\n`),
  });
  return 0;
}

function parseArguments(argv: string[]): { worker: string; join: string | undefined; worldSize: number | undefined } | "help" {
  let values: { worker?: string | undefined; join?: string | undefined; "world-size"?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { worker: { type: "string" }, join: { type: "string" }, "world-size": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    // parseArgs quotes the argument it refused, which could be a join string given without --join: never echo it.
    const code = (error as { code?: string }).code;
    throw new UsageError(`${code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL" ? "unexpected argument" : "bad arguments"}; see multirank rank --help`);
  }
  if (values.help) return "help";
  if (!values.worker) throw new UsageError("--worker <path> is required");
  let worldSize: number | undefined;
  if (values["world-size"] !== undefined) worldSize = positive(values["world-size"], "--world-size");
  return { worker: values.worker, join: values.join, worldSize };
}

function envWorldSize(): number | undefined {
  const text = process.env.MULTIRANK_WORLD_SIZE;
  return text ? positive(text, "MULTIRANK_WORLD_SIZE") : undefined;
}

function positive(text: string, name: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) throw new UsageError(`${name} must be a positive integer, got "${text}"`);
  return value;
}

/** The join string from --join, else MULTIRANK_JOIN, else the file MULTIRANK_JOIN_FILE names. Errors name the source, never the string. */
function readJoin(flag: string | undefined): JoinInfo {
  if (flag !== undefined) return decodeJoinInfo(flag, "--join");
  if (process.env.MULTIRANK_JOIN) return decodeJoinInfo(process.env.MULTIRANK_JOIN, "MULTIRANK_JOIN");
  const file = process.env.MULTIRANK_JOIN_FILE;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw new UsageError(`could not read MULTIRANK_JOIN_FILE (${file}): ${(error as Error).message}`);
    }
    return decodeJoinInfo(text, `the file in MULTIRANK_JOIN_FILE (${file})`);
  }
  throw new UsageError("no join string: set MULTIRANK_JOIN (runner.joinInfo) or MULTIRANK_JOIN_FILE (the runner's joinFile)");
}

function readPlacement(worldSize: number): RankPlacement {
  const placement = readRankPlacement(process.env, { worldSize });
  if (!placement) {
    throw new UsageError(
      "no launcher variables: start this under torchrun (RANK, WORLD_SIZE), mpirun (OMPI_COMM_WORLD_RANK or PMI_RANK), srun (SLURM_PROCID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)",
    );
  }
  return placement;
}

async function rankEnvFor(worker: string, join: JoinInfo, placement: RankPlacement): Promise<RankEnv> {
  const { rank, worldSize } = placement;
  const maxText = process.env.MULTIRANK_MAX_MESSAGE_BYTES;
  const group = rank === 0 ? await groupMeetingPoint(join.endpoint) : undefined;
  // Its own CURVE keys: the runner admits any client key and judges the hello's token instead.
  const keys = curveKeyPair();
  return {
    rank,
    worldSize,
    // Unused: a joined group meets where the runner's setup says.
    masterAddr: "127.0.0.1",
    masterPort: 0,
    controlEndpoint: join.endpoint,
    routingId: `j${rank}-${randomBytes(6).toString("hex")}`,
    token: joinToken(join.secret, rank),
    workerModule: resolve(worker),
    errorFile: undefined,
    maxMessageBytes: maxText ? positive(maxText, "MULTIRANK_MAX_MESSAGE_BYTES") : DEFAULT_MAX_MESSAGE_BYTES,
    deathPipeFd: undefined,
    logLevel: process.env.MULTIRANK_LOG_LEVEL || "info",
    streamWindow: 4 * 1024 * 1024,
    curve: { serverKey: join.serverKey, publicKey: keys.publicKey, secretKey: keys.secretKey },
    groupSecret: undefined,
    join: { host: hostname(), group },
  };
}
