/** Runpod protocol, driven by Runpod's real SDK (runpod-sdk 1.1.2) with baseUrl pointed at the gateway. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import runpodSdk from "runpod-sdk";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, exampleWorker, gatewayWorker, post, startGateway } from "../fixtures/gateway/harness.js";

const KEY = "rp-secret-key";
let url: string;
let control: NonNullable<ReturnType<ReturnType<typeof runpodSdk>["endpoint"]>>;
let text: typeof control;
let scratch: string;

cleanUpGateways("all");

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "gateway-runpod-"));
  vi.spyOn(console, "log").mockImplementation(() => {}); // runSync prints each poll
  ({ url } = await startGateway({
    apps: [
      defineApp({ name: "test/control", worker: gatewayWorker("control"), worldSize: 1, keepAlive: 60 }),
      defineApp({ name: "test/text", worker: exampleWorker("text-stream"), worldSize: 2, keepAlive: 60 }),
    ],
    keys: [KEY],
    streamHoldMs: 2000,
  }));
  const sdk = runpodSdk(KEY, { baseUrl: `${url}/v2` });
  control = sdk.endpoint("test--control")!;
  text = sdk.endpoint("text")!; // the alias alone works when unique
});

afterAll(() => {
  vi.restoreAllMocks();
  rmSync(scratch, { recursive: true, force: true });
});

describe("Runpod protocol with runpod-sdk", () => {
  it("policy.executionTimeout past 24.8 days waits instead of firing at once; past 365 days it answers 422 naming it", async () => {
    const done = await post(`${url}/v2/test--control/runsync`, { input: { id: "long", ms: 200 }, policy: { executionTimeout: 2.2e9 } }, { authorization: KEY });
    expect(done.body).toMatchObject({ status: "COMPLETED", output: { id: "long" } });
    const refused = await post(`${url}/v2/test--control/run`, { input: {}, policy: { executionTimeout: 4e13 } }, { authorization: KEY });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", error: expect.stringContaining("policy.executionTimeout") });
  });

  it("run + status: IN_QUEUE, then COMPLETED with id, output, workerId and integer times", async () => {
    const started = await control.run({ input: { id: "rp1", ms: 100 } });
    expect(started).toMatchObject({ status: "IN_QUEUE" });
    let status: any;
    await expect.poll(async () => (status = await control.status(started.id)).status).toBe("COMPLETED");
    expect(status).toMatchObject({ id: started.id, output: { id: "rp1" }, error: null, started: true, completed: true, succeeded: true });
    expect(Number.isInteger(status.delayTime) && Number.isInteger(status.executionTime)).toBe(true);
    expect(status.executionTime).toBeGreaterThanOrEqual(90);
    expect(status.workerId).toMatch(/^test--control-\d+$/);
  });

  it("runSync waits for the result", async () => {
    const result = await control.runSync({ input: { id: "sync" } }, 60_000);
    expect(result).toMatchObject({ status: "COMPLETED", output: { id: "sync" } });
  });

  it("stream yields each chunk as {output}, held open until new chunks come", async () => {
    const { id } = await text.run({ input: { prompt: "a dog", maxTokens: 4, delayMs: 60 } });
    const chunks: any[] = [];
    for await (const chunk of text.stream(id)) chunks.push(chunk);
    expect(chunks.slice(0, 4).map((c) => c.output.index)).toEqual([0, 1, 2, 3]);
    expect(chunks.at(-1).output).toMatchObject({ tokens: 4 });
    expect(chunks).toHaveLength(5);
  });

  it("cancel stops a running job: CANCELLED", async () => {
    const { id } = await control.run({ input: { ms: 5000 } });
    await expect.poll(async () => (await control.status(id)).status).toBe("IN_PROGRESS");
    const cancelled = await control.cancel(id);
    expect(cancelled).toMatchObject({ id, status: "CANCELLED" });
  });

  it("a worker error is FAILED with the rank's message (HTTP 200)", async () => {
    const result = await control.runSync({ input: { id: "bad", mode: "throw" } }, 60_000);
    expect(result).toMatchObject({ status: "FAILED", output: null });
    expect((result as any).error).toContain("boom bad");
  });

  it("retry runs a failed job again under the same id", async () => {
    const marker = join(scratch, "crash-once");
    const { id } = await control.run({ input: { id: "again", mode: "crash-once", marker } });
    // Upper bounds: the retry runs on a fresh runner, a cold start.
    await expect.poll(async () => (await control.status(id)).status, { timeout: 30_000 }).toBe("FAILED");
    const retried = await post(`${url}/v2/test--control/retry/${id}`, {}, { authorization: KEY });
    expect(retried.body).toEqual({ id, status: "IN_QUEUE" });
    await expect.poll(async () => (await control.status(id)).status, { timeout: 30_000 }).toBe("COMPLETED");
    expect(((await control.status(id)) as any).output).toMatchObject({ id: "again" });
  });

  it("purge-queue cancels waiting jobs; health counts jobs and workers", async () => {
    // Runs until the file appears, so it is still in progress when the queue is counted.
    const release = join(scratch, "release-blocker");
    const blocker = await control.run({ input: { untilFile: release } });
    await expect.poll(async () => (await control.status(blocker.id)).status).toBe("IN_PROGRESS");
    const a = await control.run({ input: {} });
    const b = await control.run({ input: {}, policy: { lowPriority: true } } as never);
    const health = await control.health();
    expect(health.jobs).toMatchObject({ inQueue: 2, inProgress: 1 });
    expect(health.workers).toMatchObject({ running: 1 });
    expect(await control.purgeQueue()).toEqual({ removed: 2, status: "completed" });
    expect((await control.status(a.id)).status).toBe("CANCELLED");
    expect((await control.status(b.id)).status).toBe("CANCELLED");
    writeFileSync(release, "");
    expect((await control.statusSync(blocker.id, 30_000)).status).toBe("COMPLETED");
    expect((await control.health()).jobs.completed).toBeGreaterThan(0);
  });

  it("auth: Bearer or bare key; a wrong or missing key is 401; unknown endpoint 404; missing input 400", async () => {
    expect((await post(`${url}/v2/test--control/runsync`, { input: {} }, { authorization: `Bearer ${KEY}` })).body.status).toBe("COMPLETED");
    expect((await post(`${url}/v2/test--control/runsync`, { input: {} }, { authorization: KEY })).body.status).toBe("COMPLETED");
    expect((await post(`${url}/v2/test--control/run`, { input: {} }, { authorization: "Bearer nope" })).status).toBe(401);
    expect((await post(`${url}/v2/test--control/run`, { input: {} })).status).toBe(401);
    expect((await post(`${url}/v2/nothing/run`, { input: {} }, { authorization: KEY })).status).toBe(404);
    const missing = await post(`${url}/v2/test--control/run`, { prompt: "x" }, { authorization: KEY });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toContain("input");
    expect((await post(`${url}/v2/test--control/run`, "{oops", { authorization: KEY })).status).toBe(400);
  });
});
