/**
 * The few messages between a {@link RankPool} and its idle processes, over
 * Node's IPC channel (fd 4 of the pooled process). A pooled process says
 * `ready` once it has loaded the rank runtime; the pool says `assign` once,
 * with everything a freshly spawned rank would have had at its start.
 */

/** Pooled process -> pool. */
export type PooledProcessMessage = { t: "ready" };

/** Pool -> pooled process: become a rank. */
export interface RankAssignment {
  t: "assign";
  /** The whole environment the rank would have been spawned with (it replaces the process's). */
  env: Record<string, string>;
  /** The rank's working directory. */
  cwd: string;
}

/** The fd of a pooled process's death pipe (the same as a spawned rank's). */
export const POOLED_DEATH_PIPE_FD = 3;
