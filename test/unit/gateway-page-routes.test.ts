/**
 * The routes behind the web page: `GET /page/info` tells whether keys are
 * checked without revealing one; `GET /requests` lists an app's recent
 * requests (status, times, logs, errors; never inputs or outputs) behind the
 * key. In-process (`server.inject`) with fake runners: nothing is spawned.
 */
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, defineApp, type Gateway, type GatewayOptions, type PoolRunner } from "../../src/server/index.js";
import { Job } from "../../src/gateway/job.js";
import { JobStore, RECENT_JOBS_PER_APP } from "../../src/gateway/job-store.js";
import { FakeRunnerLifecycle } from "../helpers/fake-runner.js";

const KEY = "kid:page-routes-secret";
const INPUT_SECRET = "input-secret-1234";

/** Echoes, logs `payload.log` as the rank would, fails when asked. */
class FakeRunner extends FakeRunnerLifecycle {
  async invoke(payload: { log?: string; fail?: boolean }, options: { onLog?: (log: { level: number; msg: string; time: number; rank: number }) => void }): Promise<unknown> {
    if (payload.log) options.onLog?.({ level: 30, msg: payload.log, time: Date.now(), rank: 0 });
    if (payload.fail) throw new Error("it broke");
    return { echo: payload };
  }
}

const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
});

async function gateway(extra: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const created = await createGateway({
    apps: [defineApp({ name: "t/echo", worker: "/w.ts", keepAlive: 60, retries: { max: 0 } }), defineApp({ name: "t/other", worker: "/w.ts" })],
    logger: pino({ level: "silent" }),
    host: { gpuCount: 0 },
    shutdownGrace: 1,
    createRunner: () => new FakeRunner() as unknown as PoolRunner,
    ...extra,
  });
  gateways.push(created);
  return created;
}

describe("GET /page/info", () => {
  it("says whether keys are checked, on /fal and /v2 and on the operations routes, and never holds a key", async () => {
    const open = await gateway();
    expect((await open.server.inject({ method: "GET", url: "/page/info" })).json()).toEqual({ keys: false, opsNeedKey: false });
    const keyed = await gateway({ keys: [KEY] });
    const info = await keyed.server.inject({ method: "GET", url: "/page/info" });
    expect(info.statusCode).toBe(200);
    expect(info.json()).toEqual({ keys: true, opsNeedKey: false });
    expect(info.body).not.toContain("page-routes-secret");
    const closed = await gateway({ keys: [KEY], requireKeyForOps: true });
    expect((await closed.server.inject({ method: "GET", url: "/page/info" })).json()).toEqual({ keys: true, opsNeedKey: true });
  });
});

describe("GET /requests", () => {
  it("lists an app's requests newest first with status, times, errors and logs, without their inputs, behind the key", async () => {
    const server = (await gateway({ keys: [KEY] })).server;
    const auth = { authorization: `Key ${KEY}` };
    expect((await server.inject({ method: "POST", url: "/fal/run/t/echo", headers: auth, payload: { log: "first", secret: INPUT_SECRET } })).statusCode).toBe(200);
    expect((await server.inject({ method: "POST", url: "/fal/run/t/echo", headers: auth, payload: { fail: true, secret: INPUT_SECRET } })).statusCode).toBe(500);
    expect((await server.inject({ method: "POST", url: "/fal/run/t/other", headers: auth, payload: {} })).statusCode).toBe(200);

    const refused = await server.inject({ method: "GET", url: "/requests?app=t/echo" });
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe("MULTIRANK_ERR_GATEWAY_UNAUTHORIZED");

    const listed = await server.inject({ method: "GET", url: "/requests?app=t/echo", headers: auth });
    expect(listed.statusCode).toBe(200);
    expect(listed.body).not.toContain(INPUT_SECRET);
    const { app, requests } = listed.json();
    expect(app).toBe("t/echo");
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({ status: "FAILED", attempts: 1, error: { type: expect.any(String), message: expect.stringContaining("it broke") } });
    expect(requests[1]).toMatchObject({ status: "COMPLETED", attempts: 1, error: null, logs: [expect.objectContaining({ message: "[rank 0] first", level: "INFO", source: "user" })] });
    for (const request of requests) {
      expect(Object.keys(request).sort()).toEqual(["attempts", "createdAt", "error", "id", "logs", "queueMs", "runMs", "status"]);
      expect(request.queueMs).toBeGreaterThanOrEqual(0);
      expect(request.runMs).toBeGreaterThanOrEqual(0);
      expect(Number.isNaN(Date.parse(request.createdAt))).toBe(false);
    }
    const one = await server.inject({ method: "GET", url: "/requests?app=t/echo&limit=1", headers: auth });
    expect(one.json().requests.map((r: { id: string }) => r.id)).toEqual([requests[0].id]);
    // An app that is not (or no longer) served lists nothing rather than failing the page's poll.
    expect((await server.inject({ method: "GET", url: "/requests?app=t/gone", headers: auth })).json()).toEqual({ app: "t/gone", requests: [] });
  });

  it("is open like the fal routes when the gateway has no keys, and answers 422 naming a bad query parameter", async () => {
    const server = (await gateway()).server;
    expect((await server.inject({ method: "GET", url: "/requests?app=t/echo" })).statusCode).toBe(200);
    for (const [url, field] of [["/requests", "app"], ["/requests?app=t/echo&limit=0", "limit"], ["/requests?app=t/echo&limit=51", "limit"], ["/requests?app=t/echo&limit=x", "limit"]] as const) {
      const refused = await server.inject({ method: "GET", url });
      expect(refused.statusCode, url).toBe(422);
      expect(refused.json().error, url).toContain(`query parameter ${field}`);
    }
  });
});

describe("JobStore.recent", () => {
  it("keeps the last RECENT_JOBS_PER_APP ids per app, newest first, and forgets expired jobs and apps left with none", () => {
    const store = new JobStore(1);
    try {
      const jobs = Array.from({ length: RECENT_JOBS_PER_APP + 5 }, (_, i) => new Job({ id: `j${i}`, app: "a/b", input: {}, priority: "normal", streaming: false, timeoutMs: 1000 }));
      for (const job of jobs) store.add(job);
      store.add(new Job({ id: "other", app: "c/d", input: {}, priority: "normal", streaming: false, timeoutMs: 1000 }));
      const recent = store.recent("a/b");
      expect(recent).toHaveLength(RECENT_JOBS_PER_APP);
      expect(recent[0]!.id).toBe(`j${RECENT_JOBS_PER_APP + 4}`);
      expect(recent.at(-1)!.id).toBe("j5");
      expect(store.recent("a/b", 2).map((j) => j.id)).toEqual([`j${RECENT_JOBS_PER_APP + 4}`, `j${RECENT_JOBS_PER_APP + 3}`]);
      store.recent("c/d")[0]!.fail("FAILED", { type: "worker_error", message: "x" });
      store.sweep(Date.now() + 10_000);
      expect(store.recent("c/d")).toEqual([]);
      expect(store.recent("a/b")).toHaveLength(RECENT_JOBS_PER_APP); // unfinished jobs stay
    } finally {
      store.close();
    }
  });
});
