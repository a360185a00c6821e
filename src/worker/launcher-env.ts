import { ValidationError } from "../errors.js";

/** Which engine started a rank, as told by the variables it set. */
export type LauncherName = "torchrun" | "openmpi" | "mpich" | "slurm" | "kubernetes";

/** Where a rank sits in its job: what every launcher tells its processes, in one shape. */
export interface RankPlacement {
  launcher: LauncherName;
  /** This process's rank, `0 <= rank < worldSize`. */
  rank: number;
  worldSize: number;
  /** Its index among the ranks on its host: picks the host's device. */
  localRank: number;
  /** Ranks on its host. */
  localWorldSize: number;
}

/** Options of {@link readRankPlacement}. */
export interface PlacementOptions {
  /** The world size when the launcher does not say it (a Kubernetes Indexed Job); checked against it otherwise. */
  worldSize?: number | undefined;
}

/**
 * Reads a rank's placement from the variables its launcher set. When several
 * are present the innermost launcher wins: torchrun inside a Slurm step, or
 * `mpirun` inside an allocation, sets its own variables next to Slurm's, and
 * those are the ones that describe this process.
 *
 * | launcher | rank | world size | local rank | local size |
 * |---|---|---|---|---|
 * | torchrun | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `LOCAL_WORLD_SIZE` |
 * | Open MPI | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` | `OMPI_COMM_WORLD_LOCAL_SIZE` |
 * | MPICH (Hydra) | `PMI_RANK` | `PMI_SIZE` | `MPI_LOCALRANKID` | `MPI_LOCALNRANKS` |
 * | Slurm | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` | from `SLURM_TASKS_PER_NODE` and `SLURM_NODEID` |
 * | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX` | `options.worldSize` | 0 | 1 |
 *
 * @returns `undefined` when no launcher's variables are set.
 * @throws {ValidationError} a variable that is not a number, a rank outside
 * the world, or a world size that disagrees with `options.worldSize` (both
 * numbers named).
 */
export function readRankPlacement(env: NodeJS.ProcessEnv, options: PlacementOptions = {}): RankPlacement | undefined {
  const placement = launcherPlacement(env, options);
  if (!placement) return undefined;
  const expected = options.worldSize;
  if (expected !== undefined && placement.worldSize !== expected) {
    throw new ValidationError(`${placement.launcher} says the world size is ${placement.worldSize}, but the runner's is ${expected}`);
  }
  if (placement.rank >= placement.worldSize) {
    throw new ValidationError(`${placement.launcher} gave rank ${placement.rank}, outside a world of size ${placement.worldSize}`);
  }
  if (placement.localRank >= placement.localWorldSize) {
    throw new ValidationError(`${placement.launcher} gave local rank ${placement.localRank}, outside a local size of ${placement.localWorldSize}`);
  }
  return placement;
}

function launcherPlacement(env: NodeJS.ProcessEnv, options: PlacementOptions): RankPlacement | undefined {
  const int = (name: string, min = 0): number => integerVar(env, name, min);
  const optionalInt = (name: string, fallback: number, min = 0): number => (isSet(env, name) ? int(name, min) : fallback);
  if (isSet(env, "RANK") && isSet(env, "WORLD_SIZE")) {
    const worldSize = int("WORLD_SIZE", 1);
    const rank = int("RANK");
    return { launcher: "torchrun", rank, worldSize, localRank: optionalInt("LOCAL_RANK", rank), localWorldSize: optionalInt("LOCAL_WORLD_SIZE", worldSize, 1) };
  }
  if (isSet(env, "OMPI_COMM_WORLD_RANK")) {
    return {
      launcher: "openmpi",
      rank: int("OMPI_COMM_WORLD_RANK"),
      worldSize: int("OMPI_COMM_WORLD_SIZE", 1),
      localRank: int("OMPI_COMM_WORLD_LOCAL_RANK"),
      localWorldSize: int("OMPI_COMM_WORLD_LOCAL_SIZE", 1),
    };
  }
  if (isSet(env, "PMI_RANK")) {
    return { launcher: "mpich", rank: int("PMI_RANK"), worldSize: int("PMI_SIZE", 1), localRank: optionalInt("MPI_LOCALRANKID", 0), localWorldSize: optionalInt("MPI_LOCALNRANKS", 1, 1) };
  }
  if (isSet(env, "SLURM_PROCID")) {
    // A step's own counts (srun inside sbatch) describe this process; the job's are the allocation's.
    const ntasks = isSet(env, "SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    const perNode = isSet(env, "SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
    const worldSize = int(ntasks, 1);
    const localRank = int("SLURM_LOCALID");
    let localWorldSize = worldSize;
    if (isSet(env, perNode)) {
      const counts = expandSlurmTaskCounts(env[perNode]!, perNode);
      const node = optionalInt("SLURM_NODEID", 0);
      if (node >= counts.length) throw new ValidationError(`SLURM_NODEID (${node}) has no entry in ${perNode} ("${env[perNode]}")`);
      localWorldSize = counts[node]!;
    }
    return { launcher: "slurm", rank: int("SLURM_PROCID"), worldSize, localRank, localWorldSize };
  }
  if (isSet(env, "JOB_COMPLETION_INDEX")) {
    if (options.worldSize === undefined) {
      throw new ValidationError("a Kubernetes Indexed Job does not say its world size: give --world-size (or MULTIRANK_WORLD_SIZE), the Job's completions");
    }
    return { launcher: "kubernetes", rank: int("JOB_COMPLETION_INDEX"), worldSize: options.worldSize, localRank: 0, localWorldSize: 1 };
  }
  return undefined;
}

/**
 * Expands Slurm's task counts per node, `2(x3),1` -> `[2, 2, 2, 1]`.
 * @throws {ValidationError} anything else, naming `variable`.
 */
export function expandSlurmTaskCounts(text: string, variable = "SLURM_TASKS_PER_NODE"): number[] {
  const counts: number[] = [];
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!m || Number(m[1]) < 1) throw new ValidationError(`${variable} must look like "2(x3),1", got "${text}"`);
    const repeat = m[2] === undefined ? 1 : Number(m[2]);
    for (let i = 0; i < repeat; i++) counts.push(Number(m[1]));
  }
  return counts;
}

function isSet(env: NodeJS.ProcessEnv, name: string): boolean {
  return env[name] !== undefined && env[name] !== "";
}

function integerVar(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const text = env[name];
  if (text === undefined || text === "") throw new ValidationError(`environment variable ${name} is not set`);
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new ValidationError(`environment variable ${name} must be an integer >= ${min}, got "${text}"`);
  }
  return value;
}
