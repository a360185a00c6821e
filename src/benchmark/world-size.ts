/**
 * Measures one world size: cold start, warm-up, measured requests, stop.
 * Uses only the public runner API, and always leaves no rank behind.
 */
import { performance } from "node:perf_hooks";
import { DistributedRunner } from "../runner/distributed-runner.js";
import type { DistributedRunnerOptions } from "../runner/options.js";
import { throwIfAborted } from "./abort.js";
import { runClosedLoop } from "./closed-loop.js";
import type { BenchmarkProgress, ResolvedBenchmarkOptions } from "./options.js";
import type { WorldSizeResult } from "./report.js";
import { ratePerSecond, summarize } from "./stats.js";

/** What one request reports back to the measuring loop. */
interface StreamTally {
  /** Send to first item per request, ms, in completion order. */
  firstEventMs: number[];
  events: number;
}

/**
 * Starts a runner of `worldSize` ranks, measures it and stops it.
 *
 * @param index position of `worldSize` in `settings.worldSizes`, for progress.
 * @throws {AbortError} when `options.signal` aborts; the first request's error when a request fails;
 *   the runner's error when start or stop fails. Ranks are terminated in every case.
 */
export async function measureWorldSize(options: ResolvedBenchmarkOptions, worldSize: number, index: number): Promise<WorldSizeResult> {
  const { settings, signal } = options;
  const progress = (phase: BenchmarkProgress["phase"], completed = 0, total = 0): void =>
    options.onProgress?.({ phase, worldSize, worldSizeIndex: index, worldSizeCount: settings.worldSizes.length, completed, total });

  throwIfAborted(signal);
  progress("start");
  const runnerOptions: DistributedRunnerOptions = { worker: options.worker, worldSize };
  if (options.logger) runnerOptions.logger = options.logger;
  if (options.devices !== undefined) runnerOptions.devices = options.devices;

  let runner: DistributedRunner | undefined;
  let stopped = false;
  try {
    const startedAt = performance.now();
    runner = new DistributedRunner(runnerOptions);
    await runner.start({ ...options.setupArgs, timeout: options.startTimeout, ...(signal ? { signal } : {}) });
    const coldStartMs = performance.now() - startedAt;
    const devices = runner.devices.map((device) => (device.kind === "cuda" ? `cuda:${device.index}` : "cpu"));

    const live = runner;
    const tally: StreamTally = { firstEventMs: [], events: 0 };
    const send = settings.stream
      ? (seq: number, requestSignal: AbortSignal) => streamOnce(live, options, seq, requestSignal, tally)
      : (seq: number, requestSignal: AbortSignal) => live.invoke(options.payloadFor(seq), { timeout: options.timeout, signal: requestSignal });

    if (settings.warmup > 0) {
      progress("warmup", 0, settings.warmup);
      await runClosedLoop(settings.warmup, settings.concurrency, send, {
        signal,
        onFinished: (done) => progress("warmup", done, settings.warmup),
      });
      throwIfAborted(signal);
    }
    tally.firstEventMs.length = 0;
    tally.events = 0;

    progress("measure", 0, settings.requests);
    const measured = await runClosedLoop(settings.requests, settings.concurrency, send, {
      firstSeq: settings.warmup,
      signal,
      onFinished: (done) => progress("measure", done, settings.requests),
    });
    throwIfAborted(signal);

    progress("stop");
    const stopAt = performance.now();
    await runner.stop({ timeout: options.timeout });
    const stopMs = performance.now() - stopAt;
    stopped = true;

    const result: WorldSizeResult = {
      worldSize,
      devices,
      coldStartMs,
      stopMs,
      latencyMs: summarize(measured.latenciesMs),
      durationMs: measured.durationMs,
      requestsPerSecond: ratePerSecond(measured.latenciesMs.length, measured.durationMs),
    };
    if (settings.stream) {
      result.stream = {
        timeToFirstEventMs: summarize(tally.firstEventMs),
        events: tally.events,
        eventsPerSecond: ratePerSecond(tally.events, measured.durationMs),
      };
    }
    progress("done");
    return result;
  } finally {
    // Anything that went wrong (a failed request, an abort, a failed stop) ends with SIGKILL: no rank outlives the benchmark.
    if (runner && !stopped) await runner.terminate().catch(() => {});
  }
}

/**
 * One streamed request: counts its items and records the time to the first.
 * A request that yields nothing counts its full time as time to first event.
 */
async function streamOnce(runner: DistributedRunner, options: ResolvedBenchmarkOptions, seq: number, signal: AbortSignal, tally: StreamTally): Promise<void> {
  const t0 = performance.now();
  let first: number | undefined;
  let events = 0;
  for await (const _item of runner.stream(options.payloadFor(seq), { timeout: options.timeout, signal })) {
    first ??= performance.now() - t0;
    events++;
  }
  tally.firstEventMs.push(first ?? performance.now() - t0);
  tally.events += events;
}
