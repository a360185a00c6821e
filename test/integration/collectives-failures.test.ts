import { afterEach, describe, expect, it } from "vitest";
import { killAll, spawnRanks } from "../fixtures/collectives-spawn.js";

const SCRIPT = "test/fixtures/collectives-rank.ts";

afterEach(() => killAll());

interface ErrorInfo {
  code?: string;
  rank?: number;
  message: string;
}

describe("collectives: failures never hang", () => {
  it("a rank killed mid-all-reduce fails every other rank at once, not at its timeout, naming it", async () => {
    const ranks = await spawnRanks(3, SCRIPT, { SCENARIO: "kill" });
    await Promise.all(ranks.map((r) => r.waitFor("PROGRESS", 2)));
    const killedAt = Date.now();
    ranks[1].child.kill("SIGKILL");
    const survivors = (await Promise.all([ranks[0].result, ranks[2].result])) as { error: ErrorInfo; at: number }[];
    for (const s of survivors) {
      expect(s.error.code).toBe("MULTIRANK_ERR_PEER_LOST");
      expect(s.error.rank).toBe(1);
      expect(s.error.message).toContain("rank 1");
      // Within a second on an idle machine; the bound leaves room for a busy one
      // and is still half the all-reduce's 20 s timeout.
      expect(s.at - killedAt).toBeLessThan(10_000);
    }
  });

  it("mismatched calls reject on every rank with MULTIRANK_ERR_COLLECTIVE_MISMATCH, and the group stays usable", async () => {
    const ranks = await spawnRanks(3, SCRIPT, { SCENARIO: "mismatch" });
    const results = (await Promise.all(ranks.map((r) => r.result))) as Record<string, ErrorInfo | number[]>[];
    for (const res of results) {
      for (const name of ["small", "large", "op", "waiting"]) expect((res[name] as ErrorInfo).code, name).toBe("MULTIRANK_ERR_COLLECTIVE_MISMATCH");
      expect((res.small as ErrorInfo).message).toMatch(/float32\[999\]|rank 1/);
      expect(res.after).toEqual([6]);
    }
  });

  it("a timeout rejects with MULTIRANK_ERR_TIMEOUT on the waiting ranks and on the late one", async () => {
    const ranks = await spawnRanks(3, SCRIPT, { SCENARIO: "timeout" });
    const results = (await Promise.all(ranks.map((r) => r.result))) as { error: ErrorInfo; elapsed: number }[];
    for (const res of results.slice(0, 2)) {
      expect(res.error.code).toBe("MULTIRANK_ERR_TIMEOUT");
      expect(res.elapsed).toBeGreaterThanOrEqual(390);
      // At its own 0.4 s timeout, not when the late rank came (4 s).
      expect(res.elapsed).toBeLessThan(4000);
    }
    // The late rank learns its peers gave up instead of waiting out its own timeout:
    // the error it gets is a peer's (its own would name rank 2).
    expect(results[2].error.code).toBe("MULTIRANK_ERR_TIMEOUT");
    expect([0, 1]).toContain(results[2].error.rank);
  });
});
