import { afterEach, describe, expect, it } from "vitest";
import { killAll, spawnRanks } from "../fixtures/collectives-spawn.js";
import { referenceMlp, uniformAt, type MlpDims } from "../../workers/sharded-mlp-reference.js";

afterEach(() => killAll());

// Hidden 101 does not divide by 2 or 4; batch 3; the all-reduce of 3×48
// floats takes the direct path, 3×9000 (second case) the large-payload path.
const CASES: { dims: MlpDims; batch: number }[] = [
  { dims: { model: 48, hidden: 101, blocks: 3 }, batch: 3 },
  { dims: { model: 9000, hidden: 6, blocks: 1 }, batch: 3 },
];

describe("sharded MLP: tensor-parallel shards + real allReduce match the unsharded reference", () => {
  for (const { dims, batch } of CASES) {
    for (const size of [1, 2, 4]) {
      it(`world size ${size}, dims ${JSON.stringify(dims)}`, async () => {
        const seed = 1234;
        const input = Float32Array.from({ length: batch * dims.model }, (_, i) => uniformAt(99, 0, i, 1));
        const want = referenceMlp(seed, dims, input);
        const ranks = await spawnRanks(size, "test/fixtures/collectives-mlp-rank.ts", { DIMS: JSON.stringify(dims), SEED: String(seed), BATCH: String(batch) });
        const results = (await Promise.all(ranks.map((r) => r.result))) as { rank: number; hidden: [number, number]; y: number[] }[];
        // Each rank held a different, non-overlapping slice covering all hidden units.
        expect(results.map((r) => r.hidden[1] - r.hidden[0]).reduce((a, b) => a + b, 0)).toBe(dims.hidden);
        for (const r of results) {
          expect(r.y.length).toBe(want.length);
          let worst = 0;
          for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(r.y[i] - want[i]));
          expect(worst, `rank ${r.rank}`).toBeLessThan(1e-5);
        }
      });
    }
  }
});
