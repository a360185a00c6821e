import { describe, expect, it } from "vitest";
import { RankPool, ValidationError } from "../../src/index.js";
import { resolveRunnerOptions } from "../../src/runner/options.js";

describe("RankPool options", () => {
  it.each([
    [{ size: -1 }, /options\.size/],
    [{ size: 1.5 }, /options\.size/],
    [{ nodeArgs: "--inspect" as unknown as string[] }, /options\.nodeArgs/],
  ])("rejects %j naming the field", (options, field) => {
    expect(() => new RankPool(options)).toThrow(ValidationError);
    expect(() => new RankPool(options)).toThrow(field);
  });

  it("a pool of size 0 starts nothing and is full at once", async () => {
    const pool = new RankPool({ size: 0 });
    await pool.full();
    expect(pool.idle).toBe(0);
    await pool.close();
  });

  it("the runner's options.rankPool must be a RankPool", () => {
    const resolve = (): unknown => resolveRunnerOptions({ worker: "w.js", rankPool: { size: 2 } as unknown as RankPool });
    expect(resolve).toThrow(ValidationError);
    expect(resolve).toThrow(/options\.rankPool/);
  });
});
