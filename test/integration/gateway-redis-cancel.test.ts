/**
 * A cancel asked for through another gateway reaches the one running the job
 * over pub/sub; a message lost while that gateway's subscriber reconnected
 * must not lose the cancel. The record keeps it (no state the runner writes
 * clears it), and the runner looks at its running jobs' records again.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cleanUpGateways, gatewayWorker, post, startGateway } from "../fixtures/gateway/harness.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

describeWithRedis("Redis queue: a cancel whose message was lost", () => {
  let redis: RedisServer;
  let dir: string;
  cleanUpGateways("each");
  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), "multirank-redis-cancel-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reaches the ranks from the record alone", async () => {
    const { url } = await startGateway({
      apps: [{ name: "test/ledger", worker: gatewayWorker("ledger"), worldSize: 1, keepAlive: 60 }],
      queue: { redis: redis.url, prefix: "lost-cancel", stalledAfter: 3 },
    });
    // Waits for a file nobody writes: it runs until cancelled.
    const submitted = await post(`${url}/fal/queue/test/ledger`, { tag: "held", ledger: join(dir, "ledger.jsonl"), untilFile: join(dir, "never") });
    expect(submitted.status).toBe(200);
    const id = submitted.body.request_id as string;
    const status = async (): Promise<string> => (await (await fetch(`${url}/fal/queue/test/ledger/requests/${id}/status`)).json()).status;
    await expect.poll(status, { timeout: 60_000, interval: 100 }).toBe("IN_PROGRESS");
    // What another gateway's cancel writes, without the pub/sub message that usually follows it.
    const client = new Redis(redis.url);
    try {
      expect(await client.hset(`lost-cancel:job:${id}`, "cancelRequested", "1")).toBe(0);
    } finally {
      client.disconnect();
    }
    await expect.poll(status, { timeout: 30_000, interval: 200 }).toBe("COMPLETED");
    const result = await fetch(`${url}/fal/queue/test/ledger/requests/${id}`);
    expect((await result.json()).error_type).toBe("cancelled");
  }, 120_000);
});
