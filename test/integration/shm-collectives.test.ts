// The shared-memory all-reduce: mapped segments when the addon has them, the
// tmpfs-file fallback otherwise, and the optional `out` array on both.
import { afterEach, describe, expect, it } from "vitest";
import { COLLECTIVE_SEGMENT_PREFIX } from "../../src/collectives/shm.js";
import { shmAvailable, SHM_DIR, sweepLeftovers } from "../../src/shm/index.js";
import { killAll, spawnRanks } from "../fixtures/collectives-spawn.js";
import fs from "node:fs";

const SCRIPT = "test/fixtures/shm-child.ts";

afterEach(() => killAll());

async function run(size: number, env: Record<string, string>): Promise<Record<string, unknown>[]> {
  const ranks = await spawnRanks(size, SCRIPT, { MODE: "reduce", ...env });
  return Promise.all(
    ranks.map(async (rp) => {
      await new Promise((resolve) => (rp.child.exitCode === null ? rp.child.once("exit", resolve) : resolve(undefined)));
      const line = rp.stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (!line) throw new Error(`rank ${rp.rank} reported nothing:\n${rp.stdout}\n${rp.stderr.slice(-3000)}`);
      return JSON.parse(line.slice(7)) as Record<string, unknown>;
    }),
  );
}

function check(results: Record<string, unknown>[], size: number, mapped: boolean): void {
  expect(results.map((r) => r.rank)).toEqual([...Array(size).keys()]);
  for (const res of results) {
    expect(res, `rank ${res.rank}`).toMatchObject({
      fresh: -1,
      inputKept: -1,
      out: { same: true, wrong: -1 },
      inPlace: { same: true, wrong: -1 },
      inPlaceAgain: -1,
      avg64: -1,
      scatterOut: { same: true, wrong: -1 },
      scatterAliased: -1,
      small: [(size * (size + 1)) / 2, 2 * size],
      "bad-length": "MULTIRANK_ERR_INVALID_ARGUMENT",
      "bad-type": "MULTIRANK_ERR_INVALID_ARGUMENT",
      mapped,
    });
  }
}

describe("shared-memory all-reduce", () => {
  it("world size 4 reduces straight from mapped segments, with and without out", async () => {
    expect(shmAvailable()).toBe(true);
    check(await run(4, {}), 4, true);
  });

  it("world size 3 on the tmpfs-file fallback gives the same results", async () => {
    check(await run(3, { MULTIRANK_COLLECTIVES_SHM: "file" }), 3, false);
  });

  it("a group's start sweeps mapped buffers that a killed rank left", () => {
    // A dead pid (beyond pid_max) in a collectives-shaped name.
    const name = `${COLLECTIVE_SEGMENT_PREFIX}-0123456789ab-r0-p999999999-0123456789ab`;
    fs.writeFileSync(`${SHM_DIR}/${name}`, "");
    try {
      sweepLeftovers();
      expect(fs.existsSync(`${SHM_DIR}/${name}`)).toBe(false);
    } finally {
      fs.rmSync(`${SHM_DIR}/${name}`, { force: true });
    }
  });
});
