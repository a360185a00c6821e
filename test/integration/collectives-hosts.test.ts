/**
 * A process group across two "hosts" on this machine: MULTIRANK_HOST_ID makes
 * ranks 0 and 1 claim host-a and ranks 2 and 3 host-b (all on 127.0.0.1), so
 * each pair is connected as it would be across machines. Network namespaces
 * with their own addresses are another test (they need root).
 */
import { afterEach, describe, expect, it } from "vitest";
import { killAll, spawnRanks } from "../fixtures/collectives-spawn.js";

const SCRIPT = "test/fixtures/collectives-rank.ts";
const hostOf = (rank: number): string => (rank < 2 ? "host-a" : "host-b");
const twoHosts = (rank: number): Record<string, string> => ({ MULTIRANK_HOST_ID: hostOf(rank) });

afterEach(() => killAll());

interface ErrorInfo {
  code?: string;
  rank?: number;
  message: string;
}

describe("collectives across hosts", () => {
  it("same-host pairs use unix links, other pairs ZeroMQ over tcp, and every call gives the right result", async () => {
    const ranks = await spawnRanks(4, SCRIPT, { SCENARIO: "hosts" }, twoHosts);
    const results = (await Promise.all(ranks.map((r) => r.result))) as Record<string, unknown>[];
    for (const [r, res] of results.entries()) {
      expect(res.transport).toBe("mixed");
      // Shared memory only when every rank is on one host.
      expect(res.sharedMemory).toBe(false);
      const routes = res.routes as Record<string, { link: string; data: string; host: string }>;
      for (let peer = 0; peer < 4; peer++) {
        if (peer === r) continue;
        const same = hostOf(peer) === hostOf(r);
        expect(routes[peer], `rank ${r} to ${peer}`).toEqual({ link: same ? "unix" : "tcp", data: same ? "link" : "zmq", host: hostOf(peer) });
      }
      expect(res.small).toEqual([10, 12]);
      expect(res.large).toEqual({ length: 4 << 20, wrong: 0, sample: 1023 * 10 });
      expect(res.broadcast).toEqual([0, 1, 2, 3].map((root) => ({ root, f: [root, 0.5] })));
      expect(res.allGather).toEqual([0, 1, 2, 3].map((k) => ({ rank: k, host: hostOf(k) })));
      expect(res.p2p).toEqual([0, 1, 2, 3].filter((k) => k !== r).map((k) => ({ from: k, to: r, f: [k, r] })));
    }
  }, 120_000);

  it("a rank on the other host SIGKILLed mid-all-reduce fails every other rank within the bound, naming the rank and its host", async () => {
    const ranks = await spawnRanks(4, SCRIPT, { SCENARIO: "kill" }, twoHosts);
    await Promise.all(ranks.map((r) => r.waitFor("PROGRESS", 2)));
    const killedAt = Date.now();
    ranks[2].child.kill("SIGKILL");
    const survivors = (await Promise.all([0, 1, 3].map((r) => ranks[r].result))) as { error: ErrorInfo; at: number }[];
    for (const s of survivors) {
      expect(s.error.code).toBe("MULTIRANK_ERR_PEER_LOST");
      expect(s.error.rank).toBe(2);
      expect(s.error.message).toContain("rank 2 on host host-b");
      // About 0.2 s on an idle machine (a killed process's sockets close at
      // once; a silent host takes the heartbeat timeout, under 1.2 s); the
      // bound leaves room for a busy one and is half the all-reduce's timeout.
      expect(s.at - killedAt).toBeLessThan(10_000);
    }
  }, 120_000);

  it("a rank on the other host that goes silent with its sockets open (SIGSTOP, as a host cut off) is found by the heartbeats", async () => {
    const ranks = await spawnRanks(4, SCRIPT, { SCENARIO: "kill" }, twoHosts);
    await Promise.all(ranks.map((r) => r.waitFor("PROGRESS", 2)));
    const stoppedAt = Date.now();
    // Nothing closes: only the ZeroMQ heartbeats (0.75 s of silence) can tell.
    ranks[2].child.kill("SIGSTOP");
    const [r0, r1, r3] = (await Promise.all([0, 1, 3].map((r) => ranks[r].result))) as { error: ErrorInfo; at: number }[];
    for (const s of [r0, r1]) {
      expect(s.error.code).toBe("MULTIRANK_ERR_PEER_LOST");
      expect(s.error.message).toContain("rank 2 on host host-b");
      // About 1 s on an idle machine; the bound leaves room for a busy one and is half the all-reduce's timeout.
      expect(s.at - stoppedAt).toBeLessThan(10_000);
    }
    // Rank 2's neighbour on host-b hears of it when the ranks on host-a leave the broken group.
    expect(r3.error.code).toBe("MULTIRANK_ERR_PEER_LOST");
    expect(r3.at - stoppedAt).toBeLessThan(10_000);
  }, 120_000);
});
