/**
 * `multirank serve` on a Redis queue: `--redis URL`, `$MULTIRANK_REDIS_URL`
 * (the flag wins) and a config's `queue` turn it on; a job runs through it and
 * `/healthz` says `queue.backend: "redis"`; an unreachable Redis is one line
 * naming the URL and a non-zero exit; a password in the URL is never printed.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { afterAll, afterEach, expect, it } from "vitest";
import { findFreePort } from "../../src/util/free-port.js";
import { ownChildPids, waitFor } from "../helpers/processes.js";
import { describeWithRedis, startRedis } from "../helpers/redis-server.js";
import { example } from "../helpers/runners.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "dist/cli/main.js");
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  const gone = await waitFor(() => ownChildPids().filter((pid) => !redisPids.has(pid)).length === 0, 15_000);
  expect(gone, `child processes left behind: ${ownChildPids().join(", ")}`).toBe(true);
});
/** This file's redis-servers: children too, stopped by describeWithRedis's hooks. */
const redisPids = new Set<number>();

/** A folder with `gateway.config.mjs`: one one-rank echo app, plus `extra` (JS source of more fields). */
function project(extra = ""): string {
  const dir = mkdtempSync(join(tmpdir(), "multirank-serve-redis-"));
  dirs.push(dir);
  writeFileSync(join(dir, "gateway.config.mjs"), `export default { apps: [{ name: "t/echo", worker: ${JSON.stringify(example("echo"))}, worldSize: 1 }], ${extra} };\n`);
  return dir;
}

interface Served {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `multirank serve` in `cwd`; once it prints its banner, calls `whileUp`
 * with its URL, then SIGTERMs it. Resolves when it has exited (also when it
 * exits before the banner).
 */
async function serve(cwd: string, args: string[], env: Record<string, string>, whileUp?: (url: string) => Promise<void>): Promise<Served> {
  const { MULTIRANK_REDIS_URL: _inherited, ...inherited } = process.env;
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--config", "gateway.config.mjs", ...args], {
    cwd,
    // Logs at info: what a user sees, and where a password must not appear either.
    env: { ...inherited, MULTIRANK_LOG_LEVEL: "info", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    // Upper bound for a busy machine: the gateway checks its worker module and connects to Redis first.
    const up = await Promise.race([exited.then(() => false), waitFor(() => stdout.includes("Ctrl-C"), 60_000)]);
    if (!up && child.exitCode === null) throw new Error(`multirank serve printed no banner within 60 s:\n${stdout}\n${stderr}`);
    if (up && whileUp) {
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
      try {
        await whileUp(url);
      } catch (error) {
        throw new Error(`${(error as Error).message}\nserve's output:\n${stdout}\n${stderr}`, { cause: error });
      }
    }
    if (child.exitCode === null) child.kill("SIGTERM");
    // Bounded: a gateway that hangs on shutdown (an open Redis connection keeps it alive) fails here, and is SIGKILLed below.
    const gone = await Promise.race([exited.then(() => true), waitFor(() => child.exitCode !== null || child.signalCode !== null, 60_000)]);
    if (!gone) throw new Error(`multirank serve did not exit within 60 s of SIGTERM:\n${stdout}\n${stderr}`);
    return { code: await exited, stdout, stderr };
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

/** One echo through the fal queue route (submit, then the result), and the health report. */
async function echoAndHealth(url: string, text: string): Promise<{ result: unknown; health: { status: string; queue?: { backend: string; ok: boolean } } }> {
  const submitted = (await (await fetch(`${url}/fal/queue/t/echo`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text }) })).json()) as {
    request_id: string;
  };
  // Bounded: a job that never ends fails the test with the gateway's output instead of timing it out.
  const status = await (await fetch(`${url}/fal/queue/t/echo/requests/${submitted.request_id}/status/stream`, { signal: AbortSignal.timeout(60_000) })).text();
  expect(status).toContain("COMPLETED");
  const result = await (await fetch(`${url}/fal/queue/t/echo/requests/${submitted.request_id}`)).json();
  const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string; queue?: { backend: string; ok: boolean } };
  return { result, health };
}

/** The keys the gateways wrote, in a fresh client (with the password when there is one). */
async function keysIn(url: string): Promise<string[]> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await client.connect();
    return await client.keys("*");
  } finally {
    client.disconnect();
  }
}

describeWithRedis("multirank serve on a Redis queue", () => {
  it("--redis URL runs the jobs through Redis; the flag's URL replaces the config's, whose other queue options still apply", async () => {
    const redis = await startRedis();
    redisPids.add(redis.pid);
    const dir = project(`queue: { redis: "redis://127.0.0.1:1", prefix: "from-config" }`);
    let seen: Awaited<ReturnType<typeof echoAndHealth>> | undefined;
    const run = await serve(dir, ["--redis", redis.url], {}, async (url) => {
      seen = await echoAndHealth(url, "over redis");
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(seen!.result).toEqual({ text: "over redis" });
    expect(seen!.health).toMatchObject({ status: "ok", queue: { backend: "redis", ok: true } });
    expect(run.stdout).toContain(`queue      Redis at ${redis.url}`);
    const keys = await keysIn(redis.url);
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((key) => key.startsWith("from-config"))).toBe(true);
  });

  it("$MULTIRANK_REDIS_URL does the same, and its password shows nowhere", async () => {
    const redis = await startRedis();
    redisPids.add(redis.pid);
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
    try {
      await admin.connect();
      await admin.config("SET", "requirepass", "sw0rdfish-in-the-url");
    } finally {
      admin.disconnect();
    }
    const withPassword = `redis://:sw0rdfish-in-the-url@127.0.0.1:${redis.port}`;
    let seen: Awaited<ReturnType<typeof echoAndHealth>> | undefined;
    const run = await serve(project(), [], { MULTIRANK_REDIS_URL: withPassword, MULTIRANK_LOG_LEVEL: "debug" }, async (url) => {
      seen = await echoAndHealth(url, "from the environment");
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(seen!.result).toEqual({ text: "from the environment" });
    expect(seen!.health).toMatchObject({ status: "ok", queue: { backend: "redis", ok: true } });
    expect(run.stdout).toContain(`queue      Redis at redis://:***@127.0.0.1:${redis.port}`);
    expect(run.stdout + run.stderr).not.toContain("sw0rdfish");
    expect((await keysIn(withPassword)).length).toBeGreaterThan(0);
  });

  it("a config's queue alone turns it on", async () => {
    const redis = await startRedis();
    redisPids.add(redis.pid);
    let seen: Awaited<ReturnType<typeof echoAndHealth>> | undefined;
    const run = await serve(project(`queue: { redis: ${JSON.stringify(redis.url)} }`), [], {}, async (url) => {
      seen = await echoAndHealth(url, "from the config");
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(seen!.result).toEqual({ text: "from the config" });
    expect(seen!.health).toMatchObject({ queue: { backend: "redis", ok: true } });
  });

  it("an unreachable Redis is one line naming the URL (password hidden) and exit 1; the flag wins over the environment", async () => {
    const redis = await startRedis();
    redisPids.add(redis.pid);
    const port = await findFreePort("127.0.0.1");
    const unreachable = `redis://user:n0t-to-be-printed@127.0.0.1:${port}`;
    const run = await serve(project(), ["--redis", unreachable], { MULTIRANK_REDIS_URL: redis.url });
    expect(run.code).toBe(1);
    expect(run.stdout.trimEnd()).toMatch(new RegExp(`^multirank serve: cannot reach Redis at redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    expect(run.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stdout + run.stderr).not.toContain("n0t-to-be-printed");
    expect(run.stdout + run.stderr).not.toMatch(/\n\s+at /);
  });
});
