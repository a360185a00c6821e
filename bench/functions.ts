/**
 * Remote functions on the local host (issue 12) against a DistributedRunner
 * over a worker doing the same sum with the same payload, in the same run:
 * - the first call with an empty cache directory (npm install of a packed
 *   tarball, bundle, cold start, call), and a call after the environment
 *   exists but no runner is up (a new LocalHost on the same cache directory:
 *   bundle, cold start, call), each against the runner's start plus its first
 *   invoke;
 * - warm calls, p50 and p90, against the runner's invoke.
 * Target: a warm call <= 1.2x the invoke.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner, LocalHost } from "multirank";
import { msSince, now, QUICK, report, row, summarize, type BenchRow } from "./lib/index.js";

const SUM_WORKER = fileURLToPath(new URL("./workers/sum.mjs", import.meta.url));
const N = QUICK ? 300 : 2000;
const WARMUP = QUICK ? 50 : 200;
const ROUNDS = 4;
const RESTARTS = QUICK ? 2 : 5;
const XS = Array.from({ length: 16 }, (_, i) => i);
const logger = pino({ level: "warn" });

/** A one-file package packed with npm pack: the function's dependency, no registry. */
function packDependency(work: string): string {
  const dir = join(work, "bench-fn-add");
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "bench-fn-add", version: "1.0.0", main: "index.js" }));
  writeFileSync(join(dir, "index.js"), "module.exports = (a, b) => a + b;\n");
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", work], { cwd: dir, encoding: "utf8" }).trim().split("\n").pop()!;
  return `file:${join(work, tgz)}`;
}

/** The baseline's cold path: start a runner and invoke it once. */
async function runnerColdCall(): Promise<number> {
  const t = now();
  const runner = new DistributedRunner({ worker: SUM_WORKER, logger });
  await runner.start();
  await runner.invoke({ args: [XS] });
  const ms = msSince(t);
  await runner.stop();
  return ms;
}

async function timed(fn: () => Promise<unknown>, count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = now();
    await fn();
    samples.push(msSince(t));
  }
  return samples;
}

export async function main(): Promise<BenchRow[]> {
  const work = mkdtempSync(join(tmpdir(), "multirank-bench-fn-"));
  const cacheDir = join(work, "cache");
  process.env.BENCH_FN_DEP = packDependency(work);
  const hosts: LocalHost[] = [];
  const runner = new DistributedRunner({ worker: SUM_WORKER, logger });
  try {
    const { sum } = await import("./functions/sum.js");
    const expected = XS.reduce((a, b) => a + b, 0);

    // (a) Nothing built: the environment is installed from the tarball.
    const first = new LocalHost({ cacheDir, logger });
    hosts.push(first);
    let t = now();
    if ((await sum.on(first)(XS)) !== expected) throw new Error("bench-sum returned a wrong sum");
    const firstCall = msSince(t);
    await first.close();

    // (b) The environment exists, no runner is up: a new host on the same cache.
    const restarts: number[] = [];
    const coldInvokes: number[] = [];
    let warmHost: LocalHost | undefined;
    for (let i = 0; i < RESTARTS; i++) {
      coldInvokes.push(await runnerColdCall());
      const host = new LocalHost({ cacheDir, logger });
      hosts.push(host);
      t = now();
      await sum.on(host)(XS);
      restarts.push(msSince(t));
      if (i < RESTARTS - 1) await host.close();
      else warmHost = host;
    }

    // (c) Warm: blocks of each in turn, so a noisy neighbour hits both alike.
    await runner.start();
    const warm = sum.on(warmHost!);
    const payload = { args: [XS] };
    await timed(() => runner.invoke(payload), WARMUP);
    await timed(() => warm(XS), WARMUP);
    const invokes: number[] = [];
    const calls: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      invokes.push(...(await timed(() => runner.invoke(payload), N / ROUNDS)));
      calls.push(...(await timed(() => warm(XS), N / ROUNDS)));
    }
    const invoke = summarize(invokes);
    const call = summarize(calls);
    const coldInvoke = summarize(coldInvokes).p50;

    const rows: BenchRow[] = [
      row({ name: "first call, empty cache (install + bundle + cold start)", value: firstCall, unit: "ms", baselineName: "runner start + first invoke p50", baseline: coldInvoke, lowerIsBetter: true }),
      row({ name: "call after the runner stopped (new host, env exists) p50", value: summarize(restarts).p50, unit: "ms", baselineName: "runner start + first invoke p50", baseline: coldInvoke, lowerIsBetter: true, extra: { samples: restarts.length } }),
      row({ name: "warm call p50", value: call.p50, unit: "ms", baselineName: "runner.invoke p50", baseline: invoke.p50, lowerIsBetter: true, target: { max: 1.2 } }),
      row({ name: "warm call p90", value: call.p90, unit: "ms", baselineName: "runner.invoke p90", baseline: invoke.p90, lowerIsBetter: true }),
    ];
    report("functions", rows, { calls: N, restarts: RESTARTS });
    return rows;
  } finally {
    await runner.stop().catch(() => {});
    for (const host of hosts) await host.close().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
