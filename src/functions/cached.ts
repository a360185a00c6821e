import { pack } from "../codec/packer.js";

/**
 * Memoizes `fn` per argument list for the life of the process: inside a
 * remote function's warm environment, a model loaded by a cached loader loads
 * once per environment, not once per call (fal's `@cached`). Arguments are
 * compared by value (their msgpack bytes); a rejected promise is forgotten,
 * so a failed load is tried again.
 * @example const loadModel = cached(async (path: string) => readWeights(path));
 */
export function cached<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  const memo = new Map<string, R>();
  return (...args: A): R => {
    const key = pack(args, "cached() arguments").toString("base64");
    if (memo.has(key)) return memo.get(key)!;
    const value = fn(...args);
    memo.set(key, value);
    if (value instanceof Promise) value.catch(() => memo.delete(key));
    return value;
  };
}
