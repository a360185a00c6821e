/**
 * The core the protocols work through: apps by name, jobs it hands out, and
 * nothing else (no dispatcher, pool or job store reachable from a protocol).
 * Stub dispatchers record what reached them: nothing is spawned.
 */
import { afterEach, describe, expect, it } from "vitest";
import { KeyChecker } from "../../src/gateway/auth.js";
import { GatewayCore, type ProtocolCore } from "../../src/gateway/core.js";
import type { Dispatcher } from "../../src/gateway/dispatcher.js";
import type { Job } from "../../src/gateway/job.js";
import { JobStore } from "../../src/gateway/job-store.js";

/** Just what the core calls on a dispatcher, with a log of the calls. */
function stubDispatcher(name: string, calls: string[]): Dispatcher {
  const queued: Job[] = [];
  return {
    app: { name, timeout: 7 },
    submit: (job: Job) => void queued.push(job),
    position: (job: Job) => queued.indexOf(job),
    cancel: (job: Job) => (calls.push(`${name}#cancel`), job.cancel()),
    resubmit: (job: Job) => (calls.push(`${name}#resubmit`), job.reset()),
    purge: () => (calls.push(`${name}#purge`), queued.splice(0).length),
    stats: () => ({ completed: 0, failed: 0, inProgress: 0, inQueue: queued.length, retried: 0 }),
    pool: { counts: () => ({ starting: 0, idle: 1, busy: 0, stopping: 0 }) },
  } as unknown as Dispatcher;
}

const stores: JobStore[] = [];
afterEach(() => stores.splice(0).forEach((store) => store.close()));

function core(dispatchers: Map<string, Dispatcher>): GatewayCore {
  const store = new JobStore(60);
  stores.push(store);
  return new GatewayCore(dispatchers, store, new KeyChecker([]));
}

describe("GatewayCore", () => {
  it("submits and finds jobs by app name, and refuses an app it does not serve", async () => {
    const calls: string[] = [];
    const apps = new Map([["a/one", stubDispatcher("a/one", calls)]]);
    const c: ProtocolCore = core(apps);
    const job = await c.submit("a/one", { input: { x: 1 }, priority: "normal", streaming: false });
    expect(job).toMatchObject({ app: "a/one", timeoutMs: 7000, status: "IN_QUEUE" });
    expect(await c.job("a/one", job.id)).toBe(job);
    expect(await c.findJob("a/two", job.id)).toBeUndefined();
    await expect(c.job("a/two", job.id)).rejects.toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_GATEWAY_JOB_NOT_FOUND" }));
    await expect(c.submit("a/two", { input: {}, priority: "normal", streaming: false })).rejects.toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND" }));
    expect(() => c.assertApp("a/two")).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND" }));
    expect(c.appNames()).toEqual(["a/one"]);
    expect(await c.position(job)).toBe(0);
    expect(await c.health("a/one")).toEqual({ jobs: expect.objectContaining({ inQueue: 1 }), runners: { starting: 0, idle: 1, busy: 0, stopping: 0 } });
    expect(await c.recentJobs("a/one", 5)).toEqual([job]);
    expect(await c.purge("a/one")).toBe(1);
  });

  it("keeps dispatchers and the job store to itself", () => {
    const c = core(new Map());
    expect(Object.keys(c)).toEqual([]);
    expect("dispatchers" in c).toBe(false);
    expect("jobs" in c).toBe(false);
  });

  it("cancels a job at the dispatcher that queued it, and retries it at the app served now", async () => {
    const calls: string[] = [];
    const apps = new Map([["a/one", stubDispatcher("a/one", calls)]]);
    const c = core(apps);
    const job = await c.submit("a/one", { input: {}, priority: "normal", streaming: false });
    // `update` replaced the app: a new dispatcher under the same name; the old one drains.
    apps.set("a/one", stubDispatcher("a/one(new)", calls));
    expect(await c.cancel(job)).toBe(true);
    expect(await c.cancel(job)).toBe(false);
    expect(await c.retry(job)).toBe(true);
    expect(await c.cancel(job)).toBe(true);
    expect(calls).toEqual(["a/one#cancel", "a/one#cancel", "a/one(new)#resubmit", "a/one(new)#cancel"]);
  });
});
