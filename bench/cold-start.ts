/**
 * Cold start of world sizes 1, 2 and 4 (construct, spawn, load the worker,
 * setup, ready) against spawning the same number of bare `node` processes
 * and waiting for each to say it is up, in the same run. Then the first
 * request to an app scaled to zero through the gateway (echo, world 2), with
 * and without a pool of pre-started rank processes, against 2 bare spawns.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner, RankPool } from "multirank";
import { createGateway, defineApp, type Gateway } from "multirank/gateway";
import { msSince, now, QUICK, report, row, summarize, type BenchRow } from "./lib/index.js";

const ECHO_TS = fileURLToPath(new URL("../workers/echo.ts", import.meta.url));
const REPS = QUICK ? 3 : 10;

function bareNodes(count: number): Promise<number> {
  const t = now();
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          const child = spawn(process.execPath, ["-e", "process.stdout.write('up')"], { stdio: ["ignore", "pipe", "inherit"] });
          child.stdout!.once("data", () => resolve());
          child.once("error", reject);
        }),
    ),
  ).then(() => msSince(t));
}

async function coldStart(worldSize: number): Promise<number> {
  const t = now();
  const runner = new DistributedRunner({ worker: ECHO_TS, worldSize, logger: pino({ level: "warn" }) });
  await runner.start();
  const ms = msSince(t);
  await runner.stop();
  return ms;
}

const APP = "bench/echo";

/** A gateway serving the echo app at world size 2, scaled to zero a moment after each request. */
async function echoGateway(rankPool: RankPool | undefined): Promise<{ gateway: Gateway; url: string }> {
  const gateway = await createGateway({
    apps: [defineApp({ name: APP, worker: ECHO_TS, worldSize: 2, keepAlive: 0.1 })],
    logger: pino({ level: "warn" }),
    host: { gpuCount: 0 },
    page: false,
    ...(rankPool ? { rankPool } : {}),
  });
  const address = await gateway.listen({ host: "127.0.0.1", port: 0 });
  return { gateway, url: address };
}

/** Waits until the app has no runner (it scaled to zero after its keepAlive). */
async function scaledToZero(url: string): Promise<void> {
  for (;;) {
    const health = (await (await fetch(`${url}/healthz`)).json()) as { apps: Record<string, { runners: Record<string, number> }> };
    const r = health.apps[APP]!.runners;
    if (r.starting + r.idle + r.busy + r.stopping === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function firstRequest(url: string): Promise<number> {
  const t = now();
  const response = await fetch(`${url}/fal/run/${APP}`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"x":1}' });
  const body = await response.text();
  if (response.status !== 200 || body !== '{"x":1}') throw new Error(`echo answered ${response.status} ${body}`);
  return msSince(t);
}

function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return kb / 1024;
}

/** The gateway rows: a scaled-to-zero app's first request, spawning its ranks and taking them from a rank pool. */
async function gatewayRows(): Promise<BenchRow[]> {
  const pool = new RankPool({ size: 2, logger: pino({ level: "warn" }) });
  const plain = await echoGateway(undefined);
  const pooled = await echoGateway(pool);
  try {
    await firstRequest(plain.url); // warm the worker compile cache and the page cache
    const bare: number[] = [];
    const spawned: number[] = [];
    const fromPool: number[] = [];
    const idleRss: number[] = [];
    for (let i = 0; i < REPS; i++) {
      bare.push(await bareNodes(2));
      await scaledToZero(plain.url);
      spawned.push(await firstRequest(plain.url));
      await scaledToZero(pooled.url);
      await pool.full();
      idleRss.push(...pool.pids.map(rssMiB));
      fromPool.push(await firstRequest(pooled.url));
    }
    const baseline = summarize(bare).p50;
    const name = "first request to a scaled-to-zero app through the gateway (echo, world 2)";
    return [
      row({ name: `${name}, ranks spawned`, value: summarize(spawned).p50, unit: "ms", baselineName: "2 bare node spawns", baseline, lowerIsBetter: true, target: { max: 2.5 } }),
      row({
        name: `${name}, rank pool of 2`,
        value: summarize(fromPool).p50,
        unit: "ms",
        baselineName: "2 bare node spawns",
        baseline,
        lowerIsBetter: true,
        target: { max: 2.5 },
        extra: { idleRssMiBPerPooledProcess: Math.round(summarize(idleRss).p50) },
      }),
    ];
  } finally {
    await Promise.all([plain.gateway.close(), pooled.gateway.close()]);
    await pool.close();
  }
}

export async function main(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  await coldStart(1); // load zeromq, tsx and the OS page cache once
  for (const worldSize of [1, 2, 4]) {
    const ours: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < REPS; i++) {
      bare.push(await bareNodes(worldSize));
      ours.push(await coldStart(worldSize));
    }
    // Issue 17's targets: 2x one bare spawn at world 1, 1.5x four in parallel at world 4.
    const target = worldSize === 1 ? { target: { max: 2 } } : worldSize === 4 ? { target: { max: 1.5 } } : {};
    rows.push(row({ name: `cold start, world ${worldSize} (.ts worker)`, value: summarize(ours).p50, unit: "ms", baselineName: `${worldSize} bare node spawns`, baseline: summarize(bare).p50, lowerIsBetter: true, ...target }));
  }
  rows.push(...(await gatewayRows()));
  report("cold-start", rows, { reps: REPS });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
