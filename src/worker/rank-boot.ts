/**
 * What a spawned rank runs once it knows who it is: read the environment,
 * watch the death pipe, start the rank. Shared by `rank-main.ts` (a rank
 * spawned for its rank) and `rank-pool-main.ts` (a pooled process, told its
 * rank later); nothing else imports it.
 */
import { Socket } from "node:net";
import { pinRank } from "./rank-platform.js";
import { readRankEnv, type RankEnv } from "./rank-env.js";
import { RUNNER_GONE_EXIT_CODE } from "./rank-runtime.js";
import { startRank } from "./rank-start.js";

/**
 * The runner holds the other end of this pipe. When the runner dies, even by
 * SIGKILL, the kernel closes it and we see end-of-file: the rank must not outlive it.
 */
export function watchDeathPipe(fd: number, onDeath: () => void): void {
  const pipe = new Socket({ fd, readable: true, writable: false });
  pipe.on("end", onDeath);
  pipe.on("close", onDeath);
  pipe.on("error", onDeath);
  pipe.resume();
  pipe.unref();
}

/**
 * Runs this process as the rank its environment names, until teardown.
 * `deathPipeWatched`: the caller already watches the death pipe (a pooled
 * process does from its start); a second reader on the same fd would not do.
 */
export async function bootRank(options: { deathPipeWatched?: boolean } = {}): Promise<void> {
  let env: RankEnv;
  try {
    env = readRankEnv();
  } catch (error) {
    process.stderr.write(`multirank rank: ${(error as Error).message}\n`);
    process.exit(2);
  }
  if (env.deathPipeFd !== undefined && !options.deathPipeWatched) watchDeathPipe(env.deathPipeFd, () => process.exit(RUNNER_GONE_EXIT_CODE));
  await startRank(env, { pin: pinRank });
}
