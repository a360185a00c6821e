/**
 * The flow-control suite (test/fixtures/gateway/flow-control-suite.ts) against
 * the Redis queue: the same test as gateway-flow-control.test.ts, with the
 * redis-server's memory bounded too.
 */
import { beforeAll } from "vitest";
import { flowControlSuite } from "../fixtures/gateway/flow-control-suite.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

describeWithRedis("flow control on the Redis queue", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis();
  });
  flowControlSuite(() => ({ url: server.url, pid: server.pid }));
});
