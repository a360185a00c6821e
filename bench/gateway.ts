/**
 * Gateway benchmark: requests/s and p99 latency of `POST /fal/run/{app}` on
 * the echo app (2 ranks, so every request crosses the gateway, its queue,
 * the runner and both ranks) against a bare fastify route returning the same
 * JSON, measured with autocannon in the same run; then the same requests on a
 * gateway whose queue is in Redis (a redis-server started here on a free port;
 * the row is left out, saying why, without one). Each server runs in a
 * process of its own (bench/lib/gateway-server.ts), one at a time, and
 * autocannon in this one, so neither side shares its event loop with the load
 * generator.
 *
 *   node --import tsx bench/gateway.ts [--quick] [--connections N] [--duration S] [--no-redis] [--cpu-prof DIR]
 *
 * `--cpu-prof DIR` writes a V8 CPU profile of each gateway process into DIR
 * (the bare route is not profiled). Prints a table and writes bench/out/gateway.json.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { startBenchRedis } from "./lib/redis-server.js";

const SELF = fileURLToPath(import.meta.url);
const OUT_DIR = path.join(path.dirname(SELF), "out");
const SERVER = path.join(path.dirname(SELF), "lib", "gateway-server.ts");
const quick = process.argv.includes("--quick");
const withRedis = !process.argv.includes("--no-redis");
const arg = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
};
const connections = Number(arg("--connections") ?? 8);
const duration = Number(arg("--duration") ?? (quick ? 3 : 10));
const cpuProfDir = arg("--cpu-prof");
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

/** A server of bench/lib/gateway-server.ts, started and listening. */
interface ServerProcess {
  url: string;
  stop(): Promise<void>;
}

/** Spawns bench/lib/gateway-server.ts with `args` and waits for its `READY <url>` line. */
async function startServer(args: string[], profile: boolean): Promise<ServerProcess> {
  const flags = ["--import", "tsx", ...(profile && cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(cpuProfDir)}`] : [])];
  const child: ChildProcess = spawn(process.execPath, [...flags, SERVER, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const killNow = (): void => void child.kill("SIGKILL");
  process.once("exit", killNow);
  const stop = async (): Promise<void> => {
    process.off("exit", killNow);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (line.startsWith("READY ")) resolve(line.slice("READY ".length));
    });
    child.once("exit", (code, signal) => reject(new Error(`${args.join(" ")}: exited (${code ?? signal}) before it listened`)));
  });
  return { url, stop };
}

/** Starts a server, checks it echoes, measures it, stops it. */
async function measureServer(name: string, args: string[]): Promise<Row> {
  const server = await startServer(args, args[0] === "gateway");
  try {
    const check = await fetch(server.url, { method: "POST", headers: { "content-type": "application/json" }, body: BODY });
    if (check.status !== 200 || (await check.text()) !== BODY) throw new Error(`${name}: the server did not echo the body`);
    return await measure(name, server.url);
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const redis = withRedis ? await startBenchRedis() : { skipped: "--no-redis" };
  try {
    const rows = [await measureServer("bare fastify route (baseline)", ["bare"]), await measureServer("gateway /fal/run, echo app, 2 ranks", ["gateway"])];
    if ("skipped" in redis) process.stderr.write(`the Redis queue row is left out: ${redis.skipped}\n`);
    else rows.push(await measureServer("same, queue in Redis (BullMQ)", ["gateway", redis.url]));
    const [baseline, gw, onRedis] = rows as [Row, Row, Row | undefined];
    const pad = (s: string, n: number): string => s.padEnd(n);
    process.stdout.write(`\neach server in its own process; connections ${connections}, ${duration} s each, ${os.cpus().length} CPUs, node ${process.version}\n\n`);
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
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
