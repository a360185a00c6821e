/**
 * The Runpod protocol suite (test/fixtures/gateway/runpod-suite.ts) against
 * the Redis queue: the same tests as gateway-runpod.test.ts, on a
 * redis-server of this file's own.
 */
import { beforeAll } from "vitest";
import { runpodProtocolSuite } from "../fixtures/gateway/runpod-suite.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

describeWithRedis("Runpod protocol on the Redis queue", () => {
  let server: RedisServer;
  // Registered before the suite's own beforeAll, so Redis is up when its gateway starts.
  beforeAll(async () => {
    server = await startRedis();
  });
  runpodProtocolSuite(() => ({ redis: server.url, stalledAfter: 2 }));
});
