/**
 * Gateway benchmark: requests/s and p99 latency of `POST /fal/run/{app}` on
 * the echo app (2 ranks, so every request crosses the gateway, its queue,
 * the runner and both ranks) against a bare fastify route returning the same
 * JSON, measured with autocannon in the same run; then the same requests on a
 * gateway whose queue is in Redis (a redis-server started here on a free port;
 * the row is left out, saying why, without one).
 *
 *   node --import tsx bench/gateway.ts [--quick] [--connections N] [--duration S]
 *
 * Prints a table and writes bench/out/gateway.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import Fastify from "fastify";
import { pino } from "pino";
import { createGateway, defineApp, type GatewayOptions } from "../src/server/index.js";
import { startBenchRedis } from "./lib/redis-server.js";

const SELF = fileURLToPath(import.meta.url);
const OUT_DIR = path.join(path.dirname(SELF), "out");
const quick = process.argv.includes("--quick");
const arg = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const connections = arg("--connections", quick ? 8 : 32);
const duration = arg("--duration", quick ? 3 : 10);
const BODY = JSON.stringify({ prompt: "a cat in a hat", seed: 42, steps: 4 });

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function measure(name: string, url: string): Promise<Row> {
  const options = { url, method: "POST" as const, headers: { "content-type": "application/json" }, body: BODY, connections, pipelining: 1 };
  await autocannon({ ...options, duration: 1 }); // warm-up: JIT, sockets, the runner
  const result = await autocannon({ ...options, duration });
  return { name, rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx };
}

async function main(): Promise<void> {
  const bare = Fastify({ logger: false });
  bare.post("/echo", async (request) => request.body);
  await bare.listen({ port: 0, host: "127.0.0.1" });
  const bareUrl = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/echo`;

  const app = defineApp({ name: "bench/echo", worker: fileURLToPath(new URL("../workers/echo.ts", import.meta.url)), machineType: "cpu-x2", concurrency: 64, keepAlive: 600 });
  /** Starts a gateway with `extra`, checks it echoes, measures it, closes it. */
  const measureGateway = async (name: string, extra: Partial<GatewayOptions>): Promise<Row> => {
    const gateway = await createGateway({ apps: [app], logger: pino({ level: "warn" }), ...extra });
    try {
      const base = await gateway.listen({ port: 0 });
      const check = await fetch(`${base}/fal/run/bench/echo`, { method: "POST", headers: { "content-type": "application/json" }, body: BODY });
      if (check.status !== 200 || (await check.text()) !== BODY) throw new Error(`${name}: the gateway did not echo the body`);
      return await measure(name, `${base}/fal/run/bench/echo`);
    } finally {
      await gateway.close();
    }
  };
  const redis = await startBenchRedis();
  try {
    const rows = [await measure("bare fastify route (baseline)", bareUrl), await measureGateway("gateway /fal/run, echo app, 2 ranks", {})];
    if ("skipped" in redis) process.stderr.write(`the Redis queue row is left out: ${redis.skipped}\n`);
    else rows.push(await measureGateway("same, queue in Redis (BullMQ)", { queue: { redis: redis.url } }));
    const [baseline, gw, onRedis] = rows as [Row, Row, Row | undefined];
    const pad = (s: string, n: number): string => s.padEnd(n);
    process.stdout.write(`\nconnections ${connections}, ${duration} s each, ${os.cpus().length} CPUs, node ${process.version}\n\n`);
    process.stdout.write(`${pad("benchmark", 40)}${pad("req/s", 10)}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("errors", 8)}ratio (req/s vs baseline)\n`);
    for (const row of rows) {
      process.stdout.write(`${pad(row.name, 40)}${pad(row.rps.toFixed(0), 10)}${pad(String(row.p50), 9)}${pad(String(row.p99), 9)}${pad(String(row.errors + row.non2xx), 8)}${(row.rps / baseline.rps).toFixed(3)}\n`);
    }
    const json = {
      date: new Date().toISOString(),
      host: os.hostname(),
      cpus: os.cpus().length,
      node: process.version,
      quick,
      connections,
      durationSeconds: duration,
      rows,
      ratios: {
        rps: gw.rps / baseline.rps,
        p99: gw.p99 / Math.max(baseline.p99, 1),
        ...(onRedis ? { redisRps: onRedis.rps / baseline.rps, redisP99: onRedis.p99 / Math.max(baseline.p99, 1) } : {}),
      },
    };
    mkdirSync(OUT_DIR, { recursive: true });
    writeFileSync(path.join(OUT_DIR, "gateway.json"), `${JSON.stringify(json, null, 2)}\n`);
    process.stdout.write(`\nwrote ${path.join(OUT_DIR, "gateway.json")}\n`);
  } finally {
    if (!("skipped" in redis)) await redis.stop();
    await bare.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
