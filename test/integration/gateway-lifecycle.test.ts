/** Runner pools with real runners, graceful shutdown, and `multirank serve` under SIGTERM. */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { childPids, isRunning, waitFor } from "../helpers/processes.js";
import { cleanUpGateways, gatewayWorker, post, startGateway } from "../fixtures/gateway/harness.js";

const control = gatewayWorker("control");

cleanUpGateways();

async function runners(url: string, app: string): Promise<Record<string, number>> {
  return (await (await fetch(`${url}/healthz`)).json()).apps[app].runners;
}

describe("runner pools", () => {
  it("a hung rank fails its request as a runner crash; the runner is replaced and /healthz says why", async () => {
    const probe = fileURLToPath(new URL("../fixtures/workers/probe.ts", import.meta.url));
    const { url } = await startGateway({ apps: [defineApp({ name: "t/hang", worker: probe, worldSize: 2, heartbeatTimeout: 1 })] });
    const hung = await post(`${url}/fal/run/t/hang`, { op: "spin", rank: 1, ms: 60_000 });
    expect(hung.status).toBeGreaterThanOrEqual(500);
    expect(hung.body).toMatchObject({ error_type: "runner_crash" });
    expect(hung.body.detail).toMatch(/rank 1 is hung/);
    const health = (await (await fetch(`${url}/healthz`)).json()).apps["t/hang"];
    expect(health.failures).toMatchObject({ replaced: 1, last: { code: "MULTIRANK_ERR_RANK_HUNG" } });
    // A fresh runner serves the next request.
    expect((await post(`${url}/fal/run/t/hang`, { op: "echo", value: "ok" })).body).toBe("ok");
  });

  // Reuse and idle stop are two tests: with one short keepAlive for both, a
  // loaded machine's gap between two requests could outlast it.
  it("cold start, then warm reuse while within keepAlive", async () => {
    const { url } = await startGateway({ apps: [defineApp({ name: "t/pool", worker: control, worldSize: 2, keepAlive: 300 })] });
    expect(await runners(url, "t/pool")).toMatchObject({ idle: 0, busy: 0, starting: 0 });
    const first = (await post(`${url}/fal/run/t/pool`, { id: "1" })).body;
    const second = (await post(`${url}/fal/run/t/pool`, { id: "2" })).body;
    expect(second.pid).toBe(first.pid); // reused while warm
    expect(second.call).toBe(first.call + 1);
    expect(await runners(url, "t/pool")).toMatchObject({ idle: 1 });
  });

  it("idle stop after keepAlive, then a new cold start", async () => {
    const { url } = await startGateway({ apps: [defineApp({ name: "t/pool", worker: control, worldSize: 2, keepAlive: 0.5 })] });
    const first = (await post(`${url}/fal/run/t/pool`, { id: "1" })).body;
    // An upper bound (keepAlive, then a graceful stop), not an expectation.
    expect(await waitFor(() => !isRunning(first.pid), 15_000)).toBe(true); // stopped after keepAlive idle
    await expect.poll(() => runners(url, "t/pool")).toMatchObject({ idle: 0, busy: 0, stopping: 0 });
    const third = (await post(`${url}/fal/run/t/pool`, { id: "3" })).body;
    expect(third.pid).not.toBe(first.pid);
    expect(third.call).toBe(1);
  });

  it("never more than maxRunners; requests wait in the queue meanwhile", async () => {
    const { url } = await startGateway({ apps: [defineApp({ name: "t/cap", worker: control, worldSize: 1, maxRunners: 2, keepAlive: 30 })] });
    let peak = 0;
    const sampler = setInterval(async () => {
      const counts = await runners(url, "t/cap").catch(() => undefined);
      if (counts) peak = Math.max(peak, counts.starting + counts.idle + counts.busy);
    }, 20);
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => post(`${url}/fal/run/t/cap`, { id: String(i), ms: 200 })));
    clearInterval(sampler);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.body.pid)).size).toBe(2);
    expect(peak).toBeLessThanOrEqual(2);
  });

  it("minRunners are started at boot and survive keepAlive; a crashed runner is replaced", async () => {
    const { gateway, url } = await startGateway({ apps: [defineApp({ name: "t/min", worker: control, worldSize: 2, minRunners: 1, keepAlive: 0.2 })] });
    await gateway.warm();
    expect(await runners(url, "t/min")).toMatchObject({ idle: 1 });
    await new Promise((r) => setTimeout(r, 500));
    expect(await runners(url, "t/min")).toMatchObject({ idle: 1 });
    const before = (await post(`${url}/fal/run/t/min`, {})).body.pid;
    const crashed = await post(`${url}/fal/run/t/min`, { mode: "crash" });
    expect(crashed.status).toBe(500);
    expect(crashed.body.error_type).toBe("runner_crash");
    expect(crashed.body.detail).toMatch(/rank 1 exited with code 3/);
    // The replacement is a cold start of two ranks: the suite's poll bound, not 5 s.
    await expect.poll(() => runners(url, "t/min")).toMatchObject({ idle: 1 });
    const after = (await post(`${url}/fal/run/t/min`, {})).body.pid;
    expect(after).not.toBe(before);
    expect(isRunning(before)).toBe(false);
  });

  it("an app asking for more GPUs than the host has fails at load with a clear message", async () => {
    await expect(startGateway({ apps: [defineApp({ name: "t/big", worker: control, machineType: "gpu-x4" })], host: { gpuCount: 2 } })).rejects.toMatchObject({
      code: "MULTIRANK_ERR_GATEWAY_CONFIG",
      message: expect.stringContaining("needs 4 GPUs per runner but this host has 2"),
    });
  });
});

describe("graceful shutdown", () => {
  it("finishes requests in flight and queued, refuses new ones, stops every runner", async () => {
    const { gateway, url } = await startGateway({ apps: [defineApp({ name: "t/drain", worker: control, worldSize: 2, keepAlive: 30 })], shutdownGrace: 10 });
    await post(`${url}/fal/run/t/drain`, {}); // warm
    const inFlight = post(`${url}/fal/run/t/drain`, { id: "sync", ms: 1500 });
    // Dispatched to the warm runner (not still on its way) before the next request and the close.
    await expect.poll(async () => (await (await fetch(`${url}/healthz`)).json()).apps["t/drain"].running).toBe(1);
    const queued = await post(`${url}/fal/queue/t/drain`, { id: "queued", ms: 100 });
    // close() stops taking requests at once (the dispatchers drain synchronously).
    const closing = gateway.close();
    const refused = await post(`${url}/fal/queue/t/drain`, {}).catch(() => ({ status: 0 }));
    expect([503, 0]).toContain(refused.status); // 503 while draining, or the socket is already closed
    const sync = await inFlight;
    expect(sync).toMatchObject({ status: 200, body: { id: "sync" } });
    await closing;
    expect(queued.status).toBe(200);
    expect(childPids()).toEqual([]);
  });

  it("multirank serve: prints the URL and a curl, exits 0 on SIGTERM with a request in flight", async () => {
    const script = fileURLToPath(new URL("../fixtures/gateway/serve-main.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", script, "--port", "0", "--config", fileURLToPath(new URL("../../gateway.config.ts", import.meta.url))], {
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent" },
      // A piped stdin: the server exits when this process does, even if the run is killed.
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      // Upper bounds: loading the config through tsx is seconds on a busy machine.
      expect(await waitFor(() => stdout.includes("Ctrl-C"), 60_000)).toBe(true);
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
      expect(stdout).toContain(`curl -s ${url}/fal/run/multirank/echo -H 'content-type: application/json' -d '{"text":"hello from two ranks"}'`);
      // 10 tokens 300 ms apart: seconds of request for the poll below to see running.
      const inFlight = post(`${url}/fal/run/multirank/text-stream`, { maxTokens: 10, delayMs: 300 });
      // Cold start, then mid-request: a runner is busy with it.
      const busy = async (): Promise<number> => (await (await fetch(`${url}/healthz`)).json()).apps["multirank/text-stream"].runners.busy;
      await expect.poll(busy, { timeout: 60_000 }).toBe(1);
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect((await inFlight).body).toMatchObject({ tokens: 10 });
      expect(await exited).toBe(0);
      expect(stdout).toContain("stopped");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 150_000);
  it("multirank serve --rank-pool 2 keeps two rank processes waiting from the start; a bad size exits 2", async () => {
    const script = fileURLToPath(new URL("../fixtures/gateway/serve-main.ts", import.meta.url));
    const bad = spawn(process.execPath, ["--import", "tsx", script, "--port", "0", "--rank-pool", "two"], { stdio: ["pipe", "pipe", "pipe"] });
    let badOut = "";
    bad.stdout.on("data", (chunk: Buffer) => (badOut += chunk.toString()));
    bad.stderr.resume();
    expect(await new Promise((resolve) => bad.once("exit", resolve))).toBe(2);
    expect(badOut).toContain("--rank-pool (or $MULTIRANK_RANK_POOL) must be a whole number of processes; got two");

    const child = spawn(process.execPath, ["--import", "tsx", script, "--port", "0", "--rank-pool", "2", "--config", fileURLToPath(new URL("../../gateway.config.ts", import.meta.url))], {
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    // The serve process's children that are pooled rank processes (none are ranks before a request).
    const pooled = (): number =>
      childPids(child.pid).filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "latin1").includes("rank-pool-main");
        } catch {
          return false;
        }
      }).length;
    try {
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      expect(await waitFor(() => stdout.includes("Ctrl-C"), 60_000)).toBe(true);
      await expect.poll(pooled, { timeout: 60_000 }).toBe(2);
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 150_000);
});
