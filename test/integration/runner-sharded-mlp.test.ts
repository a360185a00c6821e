import { describe, expect, it } from "vitest";
import { referenceMlp } from "../../workers/sharded-mlp-reference.js";
import { cleanUpRunners, example, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

const dims = { model: 24, hidden: 70, blocks: 3 }; // 70 hidden units: not divisible by 4
const seed = 1234;

function input(batch: number): Float32Array {
  return Float32Array.from({ length: batch * dims.model }, (_, i) => Math.sin(i * 0.37) * 0.8);
}

describe("the tensor-parallel MLP through the runner", () => {
  it.each([1, 2, 4])("matches the unsharded reference at world size %i", async (worldSize) => {
    const runner = makeRunner({ worker: example("sharded-mlp"), worldSize });
    await runner.start({ seed, dims });
    const x = input(3);
    const { y, batch } = await runner.invoke<{ y: Float32Array; batch: number }>({ x });
    expect(batch).toBe(3);
    expect(y).toBeInstanceOf(Float32Array);
    const expected = referenceMlp(seed, dims, x);
    expect(y.length).toBe(expected.length);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i]! - expected[i]!));
    expect(worst).toBeLessThan(1e-5);
  });

  it("a malformed input fails on every rank with a clear error, and the group keeps working", async () => {
    const runner = makeRunner({ worker: example("sharded-mlp"), worldSize: 2 });
    await runner.start({ seed, dims });
    await expect(runner.invoke({ x: [1, 2, 3] })).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANKS_FAILED" });
    // No x at all (an empty request body through the gateway) names the field too.
    const missing = await runner.invoke({}).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: "MULTIRANK_ERR_RANKS_FAILED" });
    expect((missing as Error).message).toContain("input.x must be a Float32Array or an array of numbers");
    const { y } = await runner.invoke<{ y: Float32Array }>({ x: input(1) });
    expect(y.length).toBe(dims.model);
  });
});
