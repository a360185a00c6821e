/**
 * fastify's per-request logger is made only when a request writes a line
 * (src/gateway/request-logger.ts): a request at a level that writes nothing
 * makes no pino child, and the lines that are written carry the request's
 * `reqId` as before. In-process (`server.inject`) with a fake runner.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { lazyChildLoggerFactory } from "../../src/gateway/request-logger.js";
import { createGateway, defineApp, type Gateway, type PoolRunner } from "../../src/server/index.js";
import { FakeRunnerLifecycle } from "../helpers/fake-runner.js";

class FakeRunner extends FakeRunnerLifecycle {
  async invoke(payload: unknown): Promise<unknown> {
    return payload;
  }
  // eslint-disable-next-line require-yield
  async *stream(): AsyncGenerator<Buffer> {
    return;
  }
}

const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
});

/** A pino logger at `level` writing into `lines`, counting the children made from it (inherited by every descendant). */
function capturing(level: string): { logger: pino.Logger; lines: Array<Record<string, unknown>>; children: () => number } {
  const lines: Array<Record<string, unknown>> = [];
  let children = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level, onChild: () => void children++ }, sink);
  return { logger, lines, children: () => children };
}

async function gatewayOn(logger: pino.Logger): Promise<Gateway> {
  const gateway = await createGateway({
    apps: [defineApp({ name: "t/echo", worker: "/w.ts", keepAlive: 60 })],
    logger,
    host: { gpuCount: 0 },
    createRunner: () => new FakeRunner() as unknown as PoolRunner,
  });
  gateways.push(gateway);
  return gateway;
}

describe("the gateway's per-request logger", () => {
  it("makes no pino child for a request that writes no line", async () => {
    const { logger, children } = capturing("warn");
    const gateway = await gatewayOn(logger);
    const warm = await gateway.server.inject({ method: "POST", url: "/fal/run/t/echo", payload: { n: 1 } });
    expect(warm.statusCode).toBe(200);
    const before = children();
    for (let i = 0; i < 5; i++) {
      const reply = await gateway.server.inject({ method: "POST", url: "/fal/run/t/echo", payload: { n: i } });
      expect(reply.json()).toEqual({ n: i });
    }
    expect(children() - before).toBe(0);
  });

  it("writes each line of a request with its reqId, as fastify's own child does", async () => {
    const { logger, lines } = capturing("info");
    const gateway = await gatewayOn(logger);
    const reply = await gateway.server.inject({ method: "POST", url: "/fal/run/t/nope", payload: {} });
    expect(reply.statusCode).toBe(404);
    const mine = lines.filter((line) => typeof line.reqId === "string");
    expect(mine.map((line) => line.msg)).toEqual(expect.arrayContaining(["incoming request", "request refused", "request completed"]));
    expect(new Set(mine.map((line) => line.reqId)).size).toBe(1);
    expect(mine.every((line) => line.component === "http")).toBe(true);
  });

  it("checks the level before making the child, and follows a level set on it", () => {
    const { logger, lines, children } = capturing("warn");
    const log = lazyChildLoggerFactory(logger, { reqId: "r1" }, {});
    log.info("dropped");
    log.debug({ a: 1 }, "dropped too");
    expect(children()).toBe(0);
    expect(log.level).toBe("warn");
    log.warn({ a: 2 }, "kept");
    expect(children()).toBe(1);
    expect(lines.at(-1)).toMatchObject({ reqId: "r1", a: 2, msg: "kept", level: 40 });
    log.level = "debug";
    log.debug("now kept");
    expect(lines.at(-1)).toMatchObject({ reqId: "r1", msg: "now kept", level: 20 });
    expect(logger.level).toBe("warn");
    expect(log.child({ sub: 1 }).level).toBe("debug");
  });
});
