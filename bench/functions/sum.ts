/** The remote function of bench/functions: a sum, with a dependency packed by the benchmark (BENCH_FN_DEP). */
import { remote } from "multirank";

type Add = (a: number, b: number) => number;
let add: Add | undefined;

export const sum = remote({ name: "bench-sum", dependencies: process.env.BENCH_FN_DEP ? [process.env.BENCH_FN_DEP] : [], keepAlive: 120 }, async (xs: number[]) => {
  // Loaded once per warm environment; a call then costs what the worker's does.
  add ??= ((await import("bench-fn-add" as string)) as { default: Add }).default;
  return xs.reduce(add, 0);
});
