import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterEach, expect } from "vitest";
import { DistributedRunner, type DistributedRunnerOptions } from "../../src/index.js";
import { childPids, waitFor } from "./processes.js";

/** Absolute path of a fixture worker (`test/fixtures/workers/<name>.ts`). */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/workers/${name}.ts`, import.meta.url));
}

/** Absolute path of an example worker (`workers/<name>.ts`). */
export function example(name: string): string {
  return fileURLToPath(new URL(`../../workers/${name}.ts`, import.meta.url));
}

/** A quiet logger; set TEST_LOG_LEVEL=debug to see ranks' output. */
export const testLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

const live = new Set<DistributedRunner>();

/** A runner that the suite terminates after each test, whatever happened. */
export function makeRunner(options: DistributedRunnerOptions): DistributedRunner {
  const runner = new DistributedRunner({ logger: testLogger, ...options });
  live.add(runner);
  return runner;
}

/** Registers the cleanup; call once at the top of each integration suite. */
export function cleanUpRunners(): void {
  afterEach(async () => {
    const runners = [...live];
    live.clear();
    await Promise.all(runners.map((runner) => runner.terminate().catch(() => {})));
    // An upper bound: the exits were awaited; zombies may take a moment to be reaped.
    const gone = await waitFor(() => childPids().length === 0, 15_000);
    expect(gone, `child processes left behind: ${childPids().join(", ")}`).toBe(true);
  });
}
