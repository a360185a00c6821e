/**
 * The entry point of a rank process. The runner spawns `node rank-main.js`
 * with the rank's environment; nothing here is meant to be imported.
 */
import { Socket } from "node:net";
import { availableParallelism } from "node:os";
import { pino, type Logger } from "pino";
import type { WorkerDevice } from "../devices/index.js";
import { createRankGroup, pinRank } from "./rank-platform.js";
import { loadWorkerClass } from "./load-worker.js";
import { readRankEnv, type RankEnv } from "./rank-env.js";
import { RankRuntime, RUNNER_GONE_EXIT_CODE } from "./rank-runtime.js";
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

/**
 * The runner holds the other end of this pipe. When the runner dies, even by
 * SIGKILL, the kernel closes it and we see end-of-file: the rank must not outlive it.
 */
function watchDeathPipe(fd: number, onDeath: () => void): void {
  const pipe = new Socket({ fd, readable: true, writable: false });
  pipe.on("end", onDeath);
  pipe.on("close", onDeath);
  pipe.on("error", onDeath);
  pipe.resume();
  pipe.unref();
}

async function main(): Promise<void> {
  let env: RankEnv;
  try {
    env = readRankEnv();
  } catch (error) {
    process.stderr.write(`multirank rank: ${(error as Error).message}\n`);
    process.exit(2);
  }
  if (env.deathPipeFd !== undefined) watchDeathPipe(env.deathPipeFd, () => process.exit(RUNNER_GONE_EXIT_CODE));

  let forward: (record: RequestLogRecord) => void = () => {};
  const logger = createLogger(env, (record) => forward(record));
  let device: WorkerDevice;
  try {
    device = pinRank(logger);
  } catch (error) {
    logger.warn({ err: error }, "device pinning failed; running unpinned on the CPU");
    device = { kind: "cpu", cpus: Array.from({ length: availableParallelism() }, (_, i) => i) };
  }

  const runtime = new RankRuntime({
    env,
    logger,
    device,
    loadWorker: () => loadWorkerClass(env.workerModule),
    createGroup: () => createRankGroup(env, logger),
    exit: (code) => process.exit(code),
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

void main();
