import { afterEach, describe, expect, it } from "vitest";
import { DTYPES, LENGTHS, OPS, chunkOf, digest, expectedReduce } from "../fixtures/collectives-data.js";
import { killAll, spawnRanks } from "../fixtures/collectives-spawn.js";

const SCRIPT = "test/fixtures/collectives-rank.ts";

afterEach(() => killAll());

type Result = Record<string, unknown> & { rank: number };

async function run(size: number, env: Record<string, string> = {}): Promise<Result[]> {
  const ranks = await spawnRanks(size, SCRIPT, { SCENARIO: "ops", ...env });
  return (await Promise.all(ranks.map((r) => r.result))) as Result[];
}

function checkOps(results: Result[], size: number): void {
  for (const res of results) {
    const r = res.rank;
    expect(res.barrier).toBe(true);
    expect(res.broadcast).toEqual(
      Array.from({ length: size }, (_, root) => ({
        from: root,
        list: [1, "two", null],
        f: [root, 0.5],
        fIs: "Float32Array",
        f64: [root, root / 3],
        f64Is: "Float64Array",
        buf: `hello from ${root}`,
      })),
    );
    expect(res.allGather).toEqual({
      objects: Array.from({ length: size }, (_, k) => ({ rank: k, name: `r${k}` })),
      arrays: Array.from({ length: size }, (_, k) => [k, k * 2, 0 - k || 0]),
      arrayType: Array(size).fill("Int32Array"),
    });
    expect(res.gather).toEqual(r === size - 1 ? Array.from({ length: size }, (_, k) => k * 10) : null);
    if (size > 1) {
      const prev = (r - 1 + size) % size;
      expect(res.p2p).toEqual({ from: prev, buf: [prev, 1, 2], f: [prev, prev + 0.25], fIs: "Float32Array" });
    }
    const reduce = res.allReduce as Record<string, string>;
    const scatter = res.reduceScatter as Record<string, string>;
    for (const dtype of DTYPES) {
      for (const op of OPS) {
        for (const len of LENGTHS) {
          const key = `${dtype}/${op}/${len}`;
          const want = expectedReduce(dtype, op, len, size);
          expect(reduce[key], `allReduce ${key} on rank ${r}`).toBe(digest(want));
          const [start, end] = chunkOf(len, size, r);
          expect(scatter[key], `reduceScatter ${key} on rank ${r}`).toBe(digest(want.subarray(start, end)));
        }
      }
    }
  }
}

describe("collectives: every op and reduce op against values computed here", () => {
  for (const size of [1, 2, 3, 4]) {
    it(`world size ${size}`, async () => {
      checkOps(await run(size), size);
    });
  }

  it("world size 3 over tcp without shared memory (ring path)", async () => {
    checkOps(await run(3, { TRANSPORT: "tcp", SHM: "0" }), 3);
  });

  it("world size 4 over ipc without shared memory (ring path)", async () => {
    checkOps(await run(4, { SHM: "0" }), 4);
  });
});
