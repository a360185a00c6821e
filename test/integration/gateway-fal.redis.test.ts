/**
 * The fal protocol suite (test/fixtures/gateway/fal-suite.ts) against the
 * Redis queue: the same tests as gateway-fal.test.ts, on a redis-server of
 * this file's own.
 */
import { beforeAll } from "vitest";
import { falProtocolSuite } from "../fixtures/gateway/fal-suite.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

describeWithRedis("fal protocol on the Redis queue", () => {
  let server: RedisServer;
  // Registered before the suite's own beforeAll, so Redis is up when its gateway starts.
  beforeAll(async () => {
    server = await startRedis();
  });
  falProtocolSuite(() => ({ redis: server.url, stalledAfter: 2 }));
});
