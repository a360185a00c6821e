/**
 * `benchmarkWorldSizes()`: how cold start, latency and throughput of a worker
 * change with the number of ranks.
 */
import { availableParallelism } from "node:os";
import type { BenchmarkOptions } from "./options.js";
import { resolveBenchmarkOptions } from "./options.js";
import { REPORT_SCHEMA_VERSION, type WorldSizeBenchmarkReport, type WorldSizeResult } from "./report.js";
import { measureWorldSize } from "./world-size.js";

/**
 * Benchmarks `options.worker` at each of `options.worldSizes`, one world at a
 * time: for each it starts a fresh `DistributedRunner` (timing the cold
 * start), sends `warmup` unmeasured requests, then `requests` measured ones
 * with `concurrency` in flight, and stops the runner. With `stream: true`
 * requests go through `stream()` and time to first event and events/s are
 * measured too. Every runner is stopped, or terminated on error or abort.
 *
 * Defaults: worldSizes [1, 2, 4], requests 200 (20 with quick), concurrency 1,
 * warmup 10 (2 with quick), payloadBytes 0 (a tiny `{ seq }` payload),
 * stream false, timeout 60 s per request, startTimeout 300 s.
 *
 * @throws {ValidationError} when an option is invalid (before any rank starts); the message names the field.
 * @throws {AbortError} when `options.signal` aborts.
 * @throws the runner's error (`RankError`, `RankExitError`, `TimeoutError`, ...) when a start or a request fails.
 * @example
 * const report = await benchmarkWorldSizes({ worker: "./workers/echo.ts", worldSizes: [1, 2], requests: 100 });
 * for (const r of report.results) console.log(r.worldSize, r.latencyMs.p50, r.requestsPerSecond);
 */
export async function benchmarkWorldSizes(options: BenchmarkOptions): Promise<WorldSizeBenchmarkReport> {
  const resolved = resolveBenchmarkOptions(options);
  const createdAt = new Date().toISOString();
  const results: WorldSizeResult[] = [];
  for (const [index, worldSize] of resolved.settings.worldSizes.entries()) {
    results.push(await measureWorldSize(resolved, worldSize, index));
  }
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    createdAt,
    worker: resolved.worker instanceof URL ? resolved.worker.href : resolved.worker,
    settings: resolved.settings,
    environment: { node: process.version, platform: process.platform, arch: process.arch, cpus: availableParallelism() },
    results,
  };
}
