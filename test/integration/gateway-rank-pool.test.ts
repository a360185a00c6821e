/** A gateway with `rankPool`: cold starts take pre-started rank processes, and closing the gateway ends them. */
import { describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { createGateway } from "../../src/server/index.js";
import { childPids, waitFor } from "../helpers/processes.js";
import { cleanUpGateways, gatewayWorker, post, quietLogger, startGateway } from "../fixtures/gateway/harness.js";

const control = gatewayWorker("control");

cleanUpGateways();

describe("a gateway with a rank pool", () => {
  it("serves a cold start with its pre-started processes, refills, and ends them all on close", async () => {
    const { gateway, url } = await startGateway({ apps: [defineApp({ name: "t/pool", worker: control, worldSize: 2 })], rankPool: { size: 2 } });
    // Upper bounds, not expectations: the pool starts two processes at once.
    expect(await waitFor(() => childPids().length === 2, 15_000)).toBe(true);
    const pooled = childPids();
    const first = (await post(`${url}/fal/run/t/pool`, { id: "1" })).body;
    expect(pooled).toContain(first.pid);
    // Two ranks, and two new idle processes once the start was over.
    expect(await waitFor(() => childPids().length === 4, 15_000)).toBe(true);
    await gateway.close();
    expect(await waitFor(() => childPids().length === 0, 15_000)).toBe(true);
  });

  it("starts no process ahead with rankPool { size: 0 }, and rejects a bad size naming the field", async () => {
    const { url } = await startGateway({ apps: [defineApp({ name: "t/nopool", worker: control, worldSize: 1 })], rankPool: { size: 0 } });
    expect(childPids()).toEqual([]);
    expect((await post(`${url}/fal/run/t/nopool`, { id: "1" })).status).toBe(200);
    await expect(createGateway({ logger: quietLogger, apps: [defineApp({ name: "t/bad", worker: control })], rankPool: { size: -1 } })).rejects.toMatchObject({
      code: "MULTIRANK_ERR_INVALID_ARGUMENT",
      message: expect.stringMatching(/options\.rankPool\.size/),
    });
  });
});
