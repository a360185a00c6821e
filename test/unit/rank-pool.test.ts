import { describe, expect, it } from "vitest";
import { RankPool } from "../../src/index.js";
import { resolveRunnerOptions } from "../../src/runner/options.js";

describe("RankPool options", () => {
  it.each([
    [{ size: -1 }, /options\.size/],
    [{ size: 1.5 }, /options\.size/],
    [{ nodeArgs: "--inspect" as unknown as string[] }, /options\.nodeArgs/],
  ])("rejects %j naming the field", (options, field) => {
    expect(() => new RankPool(options)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_VALIDATION", message: expect.stringMatching(field) }));
  });

  it("a pool of size 0 starts nothing and is full at once", async () => {
    const pool = new RankPool({ size: 0 });
    await pool.full();
    expect(pool.idle).toBe(0);
    await pool.close();
  });

  it("the runner's options.rankPool must be a RankPool", () => {
    expect(() => resolveRunnerOptions({ worker: "w.js", rankPool: { size: 2 } as unknown as RankPool })).toThrow(
      expect.objectContaining({ code: "MULTIRANK_ERR_VALIDATION", message: expect.stringMatching(/options\.rankPool/) }),
    );
  });
});
