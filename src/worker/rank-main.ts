/**
 * The entry point of a rank process. The runner spawns `node rank-main.js`
 * with the rank's environment; nothing here is meant to be imported.
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
  await startRank(env, { pin: pinRank });
}

void main();
