/**
 * Cold start of world sizes 1, 2 and 4 (construct, spawn, load the worker,
 * setup, ready) against spawning the same number of bare `node` processes
 * and waiting for each to say it is up, in the same run.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner } from "multirank";
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
    rows.push(row({ name: `cold start, world ${worldSize} (.ts worker)`, value: summarize(ours).p50, unit: "ms", baselineName: `${worldSize} bare node spawns`, baseline: summarize(bare).p50, lowerIsBetter: true }));
  }
  report("cold-start", rows, { reps: REPS });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
