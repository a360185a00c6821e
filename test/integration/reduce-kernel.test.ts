// The native reduction kernel (native/reduce_kernel.cc, `reduceArrays`): the
// shared-memory all-reduce relies on it being bit-identical to the JS
// reduceInto applied in rank order. Needs the built addon; spawns nothing.
import { beforeAll, describe, expect, it } from "vitest";
import { loadAddon } from "../../src/devices/addon.js";
import { reduceInto, REDUCE_OPS } from "../../src/collectives/index.js";
import { shmAvailable } from "../../src/shm/index.js";

type Numeric = Float32Array | Float64Array | Int32Array;
const KINDS = [Float32Array, Float64Array, Int32Array] as const;
// Longer than the kernel's block (4096 elements) and not a multiple of it.
const LENGTH = 2 * 4096 + 37;

beforeAll(() => {
  if (!shmAvailable()) throw new Error("the native addon is not built: run npm run build:native");
});

/** Deterministic values with the edge cases each type has: NaN and signed zeros for floats, overflow for int32. */
function sample(Kind: (typeof KINDS)[number], seed: number): Numeric {
  const out = new Kind(LENGTH);
  let x = seed * 2654435761;
  for (let i = 0; i < LENGTH; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    if (Kind === Int32Array) out[i] = i % 7 === 0 ? 2147483647 - seed : x;
    else out[i] = i % 101 === seed ? NaN : i % 53 === 0 ? -0 : (x / 65536) * (i % 3 === 0 ? 1e-3 : 1.5);
  }
  return out;
}

const bytes = (a: Numeric): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe("reduceArrays (native/reduce_kernel.cc)", () => {
  it("is bit-identical to reduceInto in source order, for every type and op, into a fresh acc and into sources[0]", () => {
    const addon = loadAddon();
    for (const Kind of KINDS) {
      for (const op of REDUCE_OPS) {
        const sources = [0, 1, 2, 3].map((r) => sample(Kind, r + 1));
        const expected = sources[0]!.slice();
        for (const s of sources.slice(1)) reduceInto(expected, s, op);

        const fresh = new Kind(LENGTH);
        addon.reduceArrays(fresh, sources, op);
        expect(bytes(fresh).equals(bytes(expected)), `${Kind.name} ${op} into a fresh acc`).toBe(true);

        const inPlace = sources[0]!.slice();
        addon.reduceArrays(inPlace, [inPlace, ...sources.slice(1)], op);
        expect(bytes(inPlace).equals(bytes(expected)), `${Kind.name} ${op} in place`).toBe(true);
      }
    }
  });

  it("refuses a source of another type or length, one overlapping acc, and an unknown op", () => {
    const addon = loadAddon();
    const acc = new Float32Array(8);
    const call = (f: () => void): unknown => {
      try {
        f();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    const invalid = { code: "MULTIRANK_ERR_INVALID_ARGUMENT" };
    expect(call(() => addon.reduceArrays(acc, [new Float64Array(8) as unknown as Float32Array], "sum"))).toMatchObject(invalid);
    expect(call(() => addon.reduceArrays(acc, [new Float32Array(7)], "sum"))).toMatchObject(invalid);
    expect(call(() => addon.reduceArrays(acc, [new Float32Array(8), acc.subarray(0, 8)], "sum"))).toMatchObject(invalid);
    expect(call(() => addon.reduceArrays(acc, [acc], "mean" as "sum"))).toMatchObject(invalid);
  });
});
