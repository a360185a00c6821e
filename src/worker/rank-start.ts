import { availableParallelism } from "node:os";
import { pino, type Logger } from "pino";
import type { WorkerDevice } from "../devices/index.js";
import { loadWorkerClass } from "./load-worker.js";
import type { RankEnv } from "./rank-env.js";
import { createRankGroup } from "./rank-platform.js";
import { RankRuntime } from "./rank-runtime.js";
import { RequestLogStream, type RequestLogRecord } from "./request-log.js";

const FORWARD_LEVEL = pino.levels.values.info!;

function levelValue(name: string): number {
  return name === "silent" ? Number.POSITIVE_INFINITY : (pino.levels.values[name] ?? FORWARD_LEVEL);
}

/**
 * The rank's logger. Records go to stdout (the runner relays them) at the
 * rank's level, and records logged through a request's `ctx.log` also go to
 * `forward`, from info up, whatever the rank's level: they belong to the
 * caller. `forward` gets the record's values, not its line to parse back.
 */
function createLogger(env: RankEnv, forward: (record: RequestLogRecord) => void): Logger {
  const stdoutLevel = levelValue(env.logLevel);
  const streams = [
    // Synchronous writes: a rank that crashes right after logging still shows the line.
    { level: stdoutLevel, stream: pino.destination({ fd: 1, sync: true }) },
    { level: FORWARD_LEVEL, stream: new RequestLogStream(forward) },
  ].filter((s) => Number.isFinite(s.level));
  const level = Math.min(stdoutLevel, FORWARD_LEVEL);
  return pino({ level: pino.levels.labels[level] ?? "info", base: { rank: env.rank } }, pino.multistream(streams));
}

/** How {@link startRank} pins the process and hears of a refusal. */
export interface RankStartOptions {
  /** Pins this process before any user code loads; returns what `worker.device` reports. */
  pin(logger: Logger): WorkerDevice;
  /** The runner refused this rank (attach mode): the process exits right after. */
  refused?: (reason: string) => void;
  /** A joined rank gives up on a silent runner: the process exits right after. */
  runnerGone?: (why: string) => void;
}

/**
 * Runs a rank until teardown: its logger, its pinning, the rank runtime, and
 * the handlers that report an uncaught error as fatal before the process
 * dies. Shared by the rank the runner spawns (rank-main.ts) and by
 * `multirank rank`, the rank another launcher starts.
 */
export async function startRank(env: RankEnv, options: RankStartOptions): Promise<void> {
  let forward: (record: RequestLogRecord) => void = () => {};
  const logger = createLogger(env, (record) => forward(record));
  let device: WorkerDevice;
  try {
    device = options.pin(logger);
  } catch (error) {
    logger.warn({ err: error }, "device pinning failed; running unpinned on the CPU");
    device = { kind: "cpu", cpus: Array.from({ length: availableParallelism() }, (_, i) => i) };
  }

  const runtime = new RankRuntime({
    env,
    logger,
    device,
    loadWorker: () => loadWorkerClass(env.workerModule, process.cwd(), env.compiledWorker),
    createGroup: (rendezvous) => createRankGroup(env, logger, rendezvous),
    exit: (code) => process.exit(code),
    ...(options.refused ? { refused: options.refused } : {}),
    ...(options.runnerGone ? { runnerGone: options.runnerGone } : {}),
  });

  forward = (record) => runtime.forwardLog(record);

  let dying = false;
  const fatal = (error: unknown): void => {
    if (dying) return;
    dying = true;
    logger.fatal({ err: error }, "uncaught error; the rank exits");
    void runtime.reportFatal(error).finally(() => process.exit(1));
  };
  process.on("uncaughtException", fatal);
  process.on("unhandledRejection", fatal);

  await runtime.run();
}
