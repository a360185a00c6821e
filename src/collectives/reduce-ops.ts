import { ValidationError } from "../errors.js";
import type { ReduceOp, Reducible } from "./types.js";

/** The reduction ops, for validation and tests. */
export const REDUCE_OPS: readonly ReduceOp[] = Object.freeze(["sum", "avg", "min", "max", "prod"]);

/** Wire names of the reducible dtypes. */
export type ReducibleDtype = "float32" | "float64" | "int32";

/**
 * The dtype of a reducible array, or `undefined` when `value` is not one.
 * @example dtypeOf(new Float32Array(2)) // "float32"
 */
export function dtypeOf(value: unknown): ReducibleDtype | undefined {
  if (value instanceof Float32Array) return "float32";
  if (value instanceof Float64Array) return "float64";
  if (value instanceof Int32Array) return "int32";
  return undefined;
}

/** A new zeroed array of `dtype` and `length`. */
export function allocLike<A extends Reducible>(like: A, length: number): A {
  return new (like.constructor as new (n: number) => A)(length);
}

/** Checks `op` is a {@link ReduceOp}; throws `ValidationError` naming `field` otherwise. */
export function checkReduceOp(op: unknown, field = "op"): ReduceOp {
  if (typeof op !== "string" || !(REDUCE_OPS as readonly string[]).includes(op)) {
    throw new ValidationError(`${field} must be one of ${REDUCE_OPS.join(", ")} (got ${String(op)})`);
  }
  return op as ReduceOp;
}

// One loop per op keeps each function monomorphic in the op (the branch is
// hoisted out of the hot loop); V8 still sees up to three array shapes.
function sumInto(acc: Reducible, src: Reducible): void {
  for (let i = 0; i < acc.length; i++) acc[i] += src[i];
}
function prodInto(acc: Reducible, src: Reducible): void {
  if (acc instanceof Int32Array) {
    // Math.imul wraps like int32 multiplication; plain `*` would lose precision past 2^53.
    for (let i = 0; i < acc.length; i++) acc[i] = Math.imul(acc[i], src[i]);
    return;
  }
  for (let i = 0; i < acc.length; i++) acc[i] *= src[i];
}
function minInto(acc: Reducible, src: Reducible): void {
  for (let i = 0; i < acc.length; i++) {
    const y = src[i];
    // `y !== y` is the NaN test: NaN wins, as in torch.
    if (y < acc[i] || y !== y) acc[i] = y;
  }
}
function maxInto(acc: Reducible, src: Reducible): void {
  for (let i = 0; i < acc.length; i++) {
    const y = src[i];
    if (y > acc[i] || y !== y) acc[i] = y;
  }
}

/**
 * `acc[i] = acc[i] (op) src[i]` for every `i`. `avg` accumulates as `sum`;
 * call {@link finishReduce} once all contributions are in.
 * Both arrays must have the same type and length (the caller checks).
 */
export function reduceInto(acc: Reducible, src: Reducible, op: ReduceOp): void {
  switch (op) {
    case "sum":
    case "avg":
      return sumInto(acc, src);
    case "prod":
      return prodInto(acc, src);
    case "min":
      return minInto(acc, src);
    case "max":
      return maxInto(acc, src);
  }
}

/** Finishes a reduction of `count` contributions: divides by `count` for `avg`, no-op otherwise. */
export function finishReduce(acc: Reducible, op: ReduceOp, count: number): void {
  if (op !== "avg" || count === 1) return;
  if (acc instanceof Int32Array) {
    for (let i = 0; i < acc.length; i++) acc[i] = Math.trunc(acc[i] / count);
    return;
  }
  for (let i = 0; i < acc.length; i++) acc[i] /= count;
}
