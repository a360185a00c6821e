/**
 * The tests' launcher for attach mode: starts `multirank rank` processes as
 * torchrun would (its variables, one host), records them, and kills what is
 * left at the end of a test.
 */
import { spawn, type ChildProcess } from "node:child_process";

const CLI = "dist/cli/main.js";

/** One started rank: its process, what it wrote on stderr, and its exit code (null when a signal ended it). */
export interface Launched {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Every rank started and not yet cleaned up. */
const launched: Launched[] = [];

/**
 * Starts rank `rank` of `worldSize` running `worker`, with torchrun's
 * variables (one host: local rank = rank) and `env` on top (the join string
 * in MULTIRANK_JOIN or MULTIRANK_JOIN_FILE, other launchers' variables).
 */
export function launchRank(worker: string, rank: number, worldSize: number, env: Record<string, string> = {}): Launched {
  const child = spawn(process.execPath, [CLI, "rank", "--worker", worker], {
    env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(worldSize), MULTIRANK_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  return trackLaunched(child);
}

/** Records a process started another way (mpirun, say; stderr piped), so {@link killLaunchedRanks} ends it too. */
export function trackLaunched(child: ChildProcess): Launched {
  let err = "";
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const rankProcess = { child, stderr: () => err, exited };
  launched.push(rankProcess);
  return rankProcess;
}

/** SIGKILLs every rank still running and waits for all of them to exit (for afterEach). */
export async function killLaunchedRanks(): Promise<void> {
  for (const { child } of launched) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.all(launched.splice(0).map((r) => r.exited));
}
