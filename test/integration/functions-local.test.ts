import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packIsNumberFixture, refuseRegistry } from "../helpers/fixture-package.js";
import { childPids, waitFor } from "../helpers/processes.js";

type Fixture = typeof import("../fixtures/functions/math.js");
let fx: Fixture;
let local: { close(): Promise<void> };
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "multirank-fn-test-"));
  // A dependency made here with npm pack: the suite needs no registry.
  process.env.TEST_FN_DEP = packIsNumberFixture(work);
  process.env.MULTIRANK_CACHE_DIR = join(work, "cache");
  process.env.MULTIRANK_DATA_DIR = join(work, "data");
  refuseRegistry();
  fx = await import("../fixtures/functions/math.js");
  // The package as a user has it (the fixture imports "multirank" too): one registry, one local host.
  ({ local } = await import("multirank"));
}, 60_000);

afterAll(async () => {
  await local?.close();
  expect(await waitFor(() => childPids().length === 0, 15_000), `left: ${childPids().join(", ")}`).toBe(true);
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("remote functions on the local host", () => {
  it("runs in its own environment with its own dependency, which the caller cannot see", async () => {
    expect(await fx.sumNumbers([1, "2", "x"])).toBe(3);
    expect(() => createRequire(import.meta.url).resolve("fn-fixture-isnum")).toThrow();
  }, 120_000);

  it("runs the module's top-level code there, knows it is remote, and travels helpers", async () => {
    const first = await fx.whereAmI();
    expect(first).toMatchObject({ remote: true, loads: 1, doubled: 42, seesCallersPackages: false });
    expect(fx.isRemoteHere).toBe(false);
    expect(first.pid).not.toBe(process.pid);
    // Warm: the same process answers again.
    expect((await fx.whereAmI()).pid).toBe(first.pid);
  }, 120_000);

  it("stops after keepAlive idle seconds, and the next call starts it again", async () => {
    const first = await fx.whereAmI();
    await expect.poll(async () => childPids().length === 0 || !(await import("../helpers/processes.js")).isRunning(first.pid), { timeout: 15_000 }).toBe(true);
    const second = await fx.whereAmI();
    expect(second.pid).not.toBe(first.pid);
  }, 120_000);

  it("a remote error arrives as RemoteExecutionError with the remote name, message, stack and rank", async () => {
    const error = await fx.fails("bad input").catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_REMOTE", remoteName: "TypeError", remoteMessage: "bad input", rank: 0, functionName: "t-fails", host: "local" });
    expect((error as { remoteStack?: string }).remoteStack).toMatch(/bad input/);
  }, 120_000);

  it("submit: id, status, result, output; cancel rejects with AbortError and reports CANCELLED", async () => {
    const call = fx.slow.submit(10);
    expect(call.id).toMatch(/[0-9a-f-]{36}/);
    expect(await call.result()).toBe(10);
    expect(call.status()).toBe("COMPLETED");
    expect(await call.output()).toMatchObject({ id: call.id, status: "COMPLETED", output: 10 });
    const long = fx.slow.submit(60_000);
    expect(long.status()).toBe("IN_PROGRESS");
    long.cancel();
    await expect(long.result()).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect((await long.output()).status).toBe("CANCELLED");
  }, 120_000);

  it("output() splits a call's time into delayTime (until a runner took it) and executionTime", async () => {
    // maxRunners 1: the second call waits for the first, which sleeps 300 ms.
    const first = fx.slow.submit(300);
    const second = fx.slow.submit(10);
    const [a, b] = await Promise.all([first.output(), second.output()]);
    expect(a).toMatchObject({ status: "COMPLETED", output: 300 });
    expect(a.executionTime).toBeGreaterThanOrEqual(299);
    expect(b).toMatchObject({ status: "COMPLETED", output: 10 });
    expect(b.delayTime).toBeGreaterThanOrEqual(250);
    expect(b.executionTime).toBeGreaterThanOrEqual(9);
  }, 120_000);

  it("map yields results in input order, and stops at the first error", async () => {
    const results: number[] = [];
    for await (const value of fx.squareOrFail.map([3, 1, 2, 4])) results.push(value);
    expect(results).toEqual([9, 1, 4, 16]);
    const seen: number[] = [];
    const failing = (async () => {
      for await (const value of fx.squareOrFail.map([2, -1, 3])) seen.push(value);
    })();
    await expect(failing).rejects.toMatchObject({ code: "MULTIRANK_ERR_REMOTE", remoteName: "RangeError" });
    expect(seen).toEqual([4]);
  }, 120_000);

  it("a generator streams its values; called plainly it returns them all", async () => {
    const items: unknown[] = [];
    for await (const item of fx.countTo.stream(3)) items.push(item);
    expect(items).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(await fx.countTo(2)).toEqual([{ i: 1 }, { i: 2 }]);
  }, 120_000);

  it("cached runs once per warm environment", async () => {
    expect(await fx.useModel("/m")).toEqual({ sum: 6, loaderRuns: 1 });
    expect(await fx.useModel("/m")).toEqual({ sum: 6, loaderRuns: 1 });
    expect(await fx.useModel("/other")).toEqual({ sum: 6, loaderRuns: 2 });
  }, 120_000);

  it("a DistributedWorker class is sharded over worldSize ranks with this.group", async () => {
    expect(await fx.rankSum({ scale: 10 })).toEqual({ sum: 30, worldSize: 2 });
  }, 120_000);

  it("a DistributedWorker class's .local() runs it from its source at its world size, without an environment", async () => {
    const before = childPids().length;
    expect(await fx.rankSum.local({ scale: 10 })).toEqual({ sum: 30, worldSize: 2 });
    // Its runner stopped after the call.
    expect(childPids().length).toBeLessThanOrEqual(before);
  }, 120_000);

  it(".local() runs in this process without isolation", async () => {
    expect(await fx.squareOrFail.local(5)).toBe(25);
    expect(await fx.countTo.local(2)).toEqual([{ i: 1 }, { i: 2 }]);
  });

  it("arguments that cannot be serialized are refused before anything is sent", async () => {
    await expect(fx.squareOrFail((() => 1) as unknown as number)).rejects.toMatchObject({ code: "MULTIRANK_ERR_SERIALIZATION" });
  }, 120_000);

  it("an import the dependencies do not list is reported, naming the package", async () => {
    const { leaky } = await import("../fixtures/functions/undeclared.js");
    await expect(leaky()).rejects.toMatchObject({ code: "MULTIRANK_ERR_UNDECLARED_DEPENDENCY", packageName: "fn-fixture-isnum" });
  }, 120_000);

  it("names are unique per host; bad options are refused", async () => {
    const { remote } = await import("multirank");
    expect(() => remote({ name: "t-where" }, async () => 1)).toThrow(/already defined/);
    expect(() => remote({ name: "Bad Name" }, async () => 1)).toThrow(/options\.name/);
    expect(() => remote({ name: "t-x", worldSize: 2, machineType: "cpu" }, async () => 1)).toThrow(/exclusive/);
  });
});
