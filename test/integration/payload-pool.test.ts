import { readdirSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { PayloadSegmentPool, payloadSizeClass } from "../../src/transport/payload-pool.js";

const PREFIX = `multirank-pooltest-p${process.pid}`;
const MiB = 1024 * 1024;

/** This test's segments still in /dev/shm. */
function ours(): string[] {
  return readdirSync("/dev/shm").filter((name) => name.startsWith(PREFIX));
}

const pools: PayloadSegmentPool[] = [];
function makePool(maxIdleBytes?: number): PayloadSegmentPool {
  const pool = new PayloadSegmentPool(PREFIX, maxIdleBytes);
  pools.push(pool);
  return pool;
}

afterEach(() => {
  for (const pool of pools.splice(0)) pool.close();
});

describe("payload segment pool", () => {
  it("sizes segments in classes at most a quarter too large", () => {
    expect(payloadSizeClass(1)).toBe(64 * 1024);
    expect(payloadSizeClass(64 * MiB)).toBe(64 * MiB);
    expect(payloadSizeClass(64 * MiB + 8)).toBe(80 * MiB);
    expect(payloadSizeClass(3 * MiB)).toBe(3 * MiB);
    for (const bytes of [65 * 1024, 1_000_001, 5 * MiB + 3, 97 * MiB]) {
      const size = payloadSizeClass(bytes);
      expect(size).toBeGreaterThanOrEqual(bytes);
      expect(size).toBeLessThanOrEqual(bytes * 1.25);
      expect(size % 4096).toBe(0);
    }
  });

  it("lends the same segment again once given back, and a new one while it is lent", () => {
    const pool = makePool();
    const a = pool.take(MiB);
    const b = pool.take(MiB);
    expect(b.name).not.toBe(a.name);
    pool.giveBack(a, true);
    expect(pool.idleBytes).toBe(MiB);
    expect(pool.take(MiB - 100)).toBe(a);
    expect(pool.idleBytes).toBe(0);
    expect(ours().sort()).toEqual([a.name, b.name].sort());
  });

  it("unlinks a segment given back not to be reused (a rank kept it) and what exceeds the idle cap", () => {
    const pool = makePool(MiB);
    const [a, b, c] = [pool.take(MiB), pool.take(MiB), pool.take(MiB)];
    pool.giveBack(a, false);
    pool.giveBack(b, true);
    pool.giveBack(c, true);
    expect(ours()).toEqual([b.name]);
    expect(a.closed && c.closed).toBe(true);
  });

  it("close unlinks idle and lent segments, and lends no more", () => {
    const pool = makePool();
    const lent = pool.take(MiB);
    pool.giveBack(pool.take(2 * MiB), true);
    expect(ours()).toHaveLength(2);
    pool.close();
    expect(ours()).toEqual([]);
    pool.giveBack(lent, true);
    expect(ours()).toEqual([]);
    expect(() => pool.take(MiB)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_STATE" }));
  });
});
