/**
 * The Redis test helper itself (test/helpers/redis-server.ts): a server it
 * starts keeps its data through a SIGKILL and restart, takes the eviction
 * policy it is given, and leaves no process or folder behind.
 */
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import { expect, it } from "vitest";
import { childPids, isRunning, waitFor } from "../helpers/processes.js";
import { describeWithRedis, startRedis } from "../helpers/redis-server.js";

/** A client that fails fast instead of retrying for ever, closed when the test ends. */
function client(url: string): Redis {
  return new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
}

describeWithRedis("the redis-server test helper", () => {
  it("keeps a key through SIGKILL and restart (AOF, appendfsync always), on the same port", async () => {
    const redis = await startRedis();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const before = client(redis.url);
    try {
      await before.set("survivor", "still here");
    } finally {
      before.disconnect();
    }
    const firstPid = redis.pid;
    await redis.kill();
    expect(isRunning(firstPid)).toBe(false);
    await redis.restart();
    expect(redis.pid).not.toBe(firstPid);
    const after = client(redis.url);
    try {
      expect(await after.get("survivor")).toBe("still here");
      expect(await after.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    } finally {
      after.disconnect();
    }
  });

  it("defaults to noeviction and takes another maxmemory-policy when asked", async () => {
    const [plain, lru] = await Promise.all([startRedis(), startRedis({ maxmemoryPolicy: "allkeys-lru" })]);
    const a = client(plain.url);
    const b = client(lru.url);
    try {
      expect(await a.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", "noeviction"]);
      expect(await b.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", "allkeys-lru"]);
    } finally {
      a.disconnect();
      b.disconnect();
    }
  });

  it("stop() ends the process and removes the folder, twice without harm", async () => {
    const redis = await startRedis();
    const { pid, dir } = redis;
    expect(childPids()).toContain(pid);
    expect(existsSync(dir)).toBe(true);
    await redis.stop();
    await redis.stop();
    expect(existsSync(dir)).toBe(false);
    // The exit was awaited; the bound covers a zombie not yet reaped on a busy machine.
    expect(await waitFor(() => !childPids().includes(pid), 15_000)).toBe(true);
  });

  it("await using stops the server at the end of its block", async () => {
    let pid = -1;
    let dir = "";
    {
      await using redis = await startRedis();
      ({ pid, dir } = redis);
      expect(isRunning(pid)).toBe(true);
    }
    expect(existsSync(dir)).toBe(false);
    expect(await waitFor(() => !isRunning(pid), 15_000)).toBe(true);
  });
});
