/**
 * The entry point of a pooled rank process (see `RankPool`): it loads the
 * rank runtime, says it is ready, and waits for its assignment, the
 * environment of a rank. It holds no device until then: CUDA is loaded by the
 * pinning that follows the assignment, after `CUDA_VISIBLE_DEVICES` is set.
 * Nothing here is meant to be imported.
 */
import type { PooledProcessMessage, RankAssignment } from "../transport/rank-pool-messages.js";

// Exit code of a rank whose runner is gone (RUNNER_GONE_EXIT_CODE, not imported: see below).
const RUNNER_GONE = 70;

let assignment: RankAssignment | undefined;
let assigned: ((a: RankAssignment) => void) | undefined;
// Listen before loading anything: an assignment may arrive while the runtime loads.
process.on("message", (message: RankAssignment) => {
  if (message?.t !== "assign" || assignment) return;
  assignment = message;
  assigned?.(message);
});
// The channel closes when the pool's process dies or gives the process up.
const onDisconnect = (): void => {
  if (!assignment) process.exit(RUNNER_GONE);
};
process.on("disconnect", onDisconnect);

const { bootRank, watchDeathPipe } = await import("./rank-boot.js");
const { setParentDeathSignal } = await import("../devices/parent-death.js");
const { POOLED_DEATH_PIPE_FD } = await import("../transport/rank-pool-messages.js");
watchDeathPipe(POOLED_DEATH_PIPE_FD, () => process.exit(RUNNER_GONE));
try {
  // Also loads the addon now rather than at the rank's start. (MULTIRANK_PARENT_PID is the pool's process.)
  setParentDeathSignal("SIGKILL");
} catch (error) {
  process.stderr.write(`multirank pooled rank: parent-death signal unavailable (${(error as Error).message}); relying on the death pipe\n`);
}
process.send?.({ t: "ready" } satisfies PooledProcessMessage, undefined, undefined, () => {});

const { env, cwd } = assignment ?? (await new Promise<RankAssignment>((resolve) => (assigned = resolve)));
// The rank sees the environment it would have been spawned with. Node writes
// process.env through to the C environment, so native code (CUDA, OpenMP) loaded later reads it too.
for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
Object.assign(process.env, env);
process.chdir(cwd);
process.off("disconnect", onDisconnect);
// A rank has no IPC channel (user code must not see process.send); the death pipe and the signal remain.
process.disconnect?.();
await bootRank({ deathPipeWatched: true });
