/**
 * Mistakes in a gateway's configuration are caught when it loads, with a
 * ConfigError that names the field: misspelt options (with the closest known
 * name), keys read from unset environment variables. In-process, fake
 * runners: nothing is spawned.
 */
import { FakeRunnerLifecycle } from "../helpers/fake-runner.js";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, defineApp, type Gateway, type GatewayOptions, type PoolRunner } from "../../src/server/index.js";
import { closestName, editDistance } from "../../src/util/did-you-mean.js";

const CONFIG = "MULTIRANK_ERR_GATEWAY_CONFIG";

/** A runner whose invoke waits until released, so a request can be in flight during shutdown. */
class HeldRunner extends FakeRunnerLifecycle {
  static release: () => void = () => {};
  async invoke(payload: unknown): Promise<unknown> {
    await new Promise<void>((resolve) => (HeldRunner.release = resolve));
    return { echo: payload };
  }
}

const gateways: Gateway[] = [];
afterEach(async () => {
  HeldRunner.release();
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
});

function options(extra: Record<string, unknown> = {}): GatewayOptions {
  return {
    apps: [defineApp({ name: "t/echo", worker: "/w.ts" })],
    logger: pino({ level: "silent" }),
    host: { gpuCount: 0 },
    createRunner: () => new HeldRunner() as unknown as PoolRunner,
    ...extra,
  } as GatewayOptions;
}

describe("did you mean", () => {
  it("finds the known name a typo is closest to, and none when nothing is close", () => {
    expect(editDistance("concurency", "concurrency")).toBe(1);
    expect(editDistance("keepalive", "keepAlive")).toBe(0);
    expect(closestName("concurency", ["keepAlive", "concurrency", "timeout"])).toBe("concurrency");
    expect(closestName("keepalive", ["keepAlive", "keepaliveInterval"])).toBe("keepAlive");
    expect(closestName("banana", ["keepAlive", "concurrency"])).toBeUndefined();
  });
});

describe("unknown options are a ConfigError with the closest known name", () => {
  it.each([
    [{ keepalive: 300 }, '"keepalive" (did you mean "keepAlive"?)'],
    [{ concurency: 8 }, '"concurency" (did you mean "concurrency"?)'],
    [{ retries: { mx: 1 } }, 'options.retries has no field "mx" (did you mean "max"?)'],
    [{ colour: "red" }, 'no field "colour"'],
  ])("defineApp refuses %j", (extra, message) => {
    expect(() => defineApp({ name: "a/b", worker: "w.ts", ...extra } as never)).toThrow(
      expect.objectContaining({ code: CONFIG, message: expect.stringContaining(message) }),
    );
  });

  it("createGateway refuses a misspelt gateway option", async () => {
    await expect(createGateway(options({ shutdownGrase: 5 }))).rejects.toMatchObject({
      code: CONFIG,
      message: expect.stringContaining('"shutdownGrase" (did you mean "shutdownGrace"?)'),
    });
  });
});

describe("keys", () => {
  it("a key from an unset environment variable is a ConfigError naming keys[0], not a TypeError", async () => {
    await expect(createGateway(options({ keys: [process.env.MULTIRANK_TEST_SURELY_UNSET_KEY!] }))).rejects.toMatchObject({
      code: CONFIG,
      message: expect.stringContaining("options.keys[0] must be a non-empty string; got undefined"),
    });
    await expect(createGateway(options({ keys: ["id:secret", ""] }))).rejects.toMatchObject({ code: CONFIG, message: expect.stringContaining("options.keys[1]") });
  });
});

describe("shutdown", () => {
  it("503s while shutting down are logged at info, without a stack", async () => {
    const lines: Array<{ level: number; msg: string; err?: unknown }> = [];
    const capture = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
        done();
      },
    });
    const gateway = await createGateway(options({ logger: pino({ level: "info" }, capture), shutdownGrace: 30 }));
    gateways.push(gateway);
    const inFlight = gateway.server.inject({ method: "POST", url: "/fal/run/t/echo", payload: { n: 1 } });
    await expect.poll(() => gateway.server.inject({ method: "GET", url: "/healthz" }).then((r) => r.json().apps["t/echo"].running)).toBe(1);
    const closing = gateway.close();
    const refused = await gateway.server.inject({ method: "POST", url: "/fal/run/t/echo", payload: { n: 2 } });
    expect(refused.statusCode).toBe(503);
    HeldRunner.release();
    expect((await inFlight).statusCode).toBe(200);
    await closing;
    const errors = lines.filter((line) => line.level >= 50);
    expect(errors).toEqual([]);
    expect(lines.some((line) => line.level === 30 && line.msg === "request refused")).toBe(true);
  });
});
