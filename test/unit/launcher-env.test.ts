import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.js";
import { expandSlurmTaskCounts, readRankPlacement } from "../../src/worker/launcher-env.js";

describe("readRankPlacement", () => {
  it("reads torchrun's variables", () => {
    expect(readRankPlacement({ RANK: "5", WORLD_SIZE: "8", LOCAL_RANK: "1", LOCAL_WORLD_SIZE: "4" })).toEqual({
      launcher: "torchrun",
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
    });
  });

  it("reads Open MPI's and prefers them to the Slurm allocation around mpirun", () => {
    const env = {
      OMPI_COMM_WORLD_RANK: "3",
      OMPI_COMM_WORLD_SIZE: "4",
      OMPI_COMM_WORLD_LOCAL_RANK: "1",
      OMPI_COMM_WORLD_LOCAL_SIZE: "2",
      SLURM_PROCID: "0",
      SLURM_NTASKS: "1",
      SLURM_LOCALID: "0",
    };
    expect(readRankPlacement(env)).toEqual({ launcher: "openmpi", rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2 });
  });

  it("reads MPICH's", () => {
    expect(readRankPlacement({ PMI_RANK: "2", PMI_SIZE: "3", MPI_LOCALRANKID: "0", MPI_LOCALNRANKS: "1" })).toMatchObject({ launcher: "mpich", rank: 2, worldSize: 3, localRank: 0, localWorldSize: 1 });
  });

  it("reads Slurm's, the local size from the per-node task counts of this node", () => {
    const env = { SLURM_PROCID: "6", SLURM_NTASKS: "7", SLURM_LOCALID: "0", SLURM_NODEID: "3", SLURM_TASKS_PER_NODE: "2(x3),1" };
    expect(readRankPlacement(env)).toEqual({ launcher: "slurm", rank: 6, worldSize: 7, localRank: 0, localWorldSize: 1 });
    expect(readRankPlacement({ ...env, SLURM_PROCID: "1", SLURM_LOCALID: "1", SLURM_NODEID: "0" })).toMatchObject({ localWorldSize: 2 });
  });

  it("prefers a Slurm step's own counts to the job's", () => {
    const env = { SLURM_PROCID: "1", SLURM_NTASKS: "8", SLURM_STEP_NUM_TASKS: "2", SLURM_LOCALID: "1", SLURM_NODEID: "0", SLURM_TASKS_PER_NODE: "8", SLURM_STEP_TASKS_PER_NODE: "2" };
    expect(readRankPlacement(env)).toMatchObject({ worldSize: 2, localWorldSize: 2 });
  });

  it("reads a Kubernetes Indexed Job's index, with the world size given", () => {
    expect(readRankPlacement({ JOB_COMPLETION_INDEX: "3" }, { worldSize: 4 })).toEqual({ launcher: "kubernetes", rank: 3, worldSize: 4, localRank: 0, localWorldSize: 1 });
    expect(() => readRankPlacement({ JOB_COMPLETION_INDEX: "3" })).toThrow(/--world-size/);
  });

  it("refuses a world size that disagrees with the runner's, naming both", () => {
    expect(() => readRankPlacement({ RANK: "0", WORLD_SIZE: "3" }, { worldSize: 4 })).toThrow(ValidationError);
    expect(() => readRankPlacement({ RANK: "0", WORLD_SIZE: "3" }, { worldSize: 4 })).toThrow(/world size is 3, but the runner's is 4/);
  });

  it("refuses a rank outside the world and variables that are not numbers, naming the variable", () => {
    expect(() => readRankPlacement({ OMPI_COMM_WORLD_RANK: "4", OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_LOCAL_RANK: "0", OMPI_COMM_WORLD_LOCAL_SIZE: "1" })).toThrow(/rank 4, outside a world of size 4/);
    expect(() => readRankPlacement({ PMI_RANK: "x", PMI_SIZE: "2" })).toThrow(/PMI_RANK must be an integer >= 0, got "x"/);
    expect(() => readRankPlacement({ SLURM_PROCID: "0", SLURM_NTASKS: "2", SLURM_LOCALID: "0", SLURM_NODEID: "4", SLURM_TASKS_PER_NODE: "2" })).toThrow(/SLURM_NODEID \(4\)/);
  });

  it("says nothing when no launcher started the process", () => {
    expect(readRankPlacement({ PATH: "/usr/bin" })).toBeUndefined();
  });
});

describe("expandSlurmTaskCounts", () => {
  it("expands repeats", () => {
    expect(expandSlurmTaskCounts("2(x3),1")).toEqual([2, 2, 2, 1]);
    expect(expandSlurmTaskCounts("4")).toEqual([4]);
  });

  it("refuses anything else", () => {
    expect(() => expandSlurmTaskCounts("2(x)", "SLURM_TASKS_PER_NODE")).toThrow(/SLURM_TASKS_PER_NODE must look like/);
    expect(() => expandSlurmTaskCounts("0")).toThrow(ValidationError);
  });
});
