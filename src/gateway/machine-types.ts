/**
 * Machine types: named presets that say how many ranks an app runs and on
 * what. `cpu`, `cpu-x2`, `cpu-x4`, ... run that many ranks on the CPU;
 * `gpu`, `gpu-x2`, `gpu-x4`, `gpu-x8`, ... run one rank per GPU.
 */
import { ConfigError } from "./errors.js";

/** A machine type name: `cpu`, `gpu`, or either with `-x<N>`. */
export type MachineType = "cpu" | "gpu" | `cpu-x${number}` | `gpu-x${number}`;

/** What a machine type resolves to. */
export interface MachineSpec {
  /** Ranks per runner. */
  worldSize: number;
  /** Whether each rank needs its own GPU. */
  gpu: boolean;
}

const PATTERN = /^(cpu|gpu)(?:-x([1-9][0-9]?))?$/;

/** True when `name` is a machine type this gateway knows. */
export function isMachineType(name: string): name is MachineType {
  return PATTERN.test(name);
}

/**
 * Resolves a machine type to a world size and device kind.
 * @throws {ConfigError} for an unknown name.
 * @example parseMachineType("gpu-x2") // { worldSize: 2, gpu: true }
 */
export function parseMachineType(name: string): MachineSpec {
  const match = PATTERN.exec(name);
  if (!match) throw new ConfigError(`unknown machine type "${name}"; use cpu, cpu-x<N>, gpu or gpu-x<N> (N from 1 to 99)`);
  return { worldSize: match[2] ? Number(match[2]) : 1, gpu: match[1] === "gpu" };
}
