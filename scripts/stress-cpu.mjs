#!/usr/bin/env node
// Keeps every core busy until killed, to run the test suite the way a loaded
// CI machine would. Usage: node scripts/stress-cpu.mjs [workers]
// (default: os.availableParallelism()). Spin loops in worker threads: one
// process, so one PID to kill, and SIGTERM/SIGINT end every thread with it.
import { availableParallelism } from "node:os";
import { isMainThread, Worker } from "node:worker_threads";

if (isMainThread) {
  const count = Number(process.argv[2] ?? availableParallelism());
  if (!Number.isInteger(count) || count < 1) {
    process.stderr.write(`stress-cpu: the worker count must be a positive integer, got ${process.argv[2]}\n`);
    process.exit(2);
  }
  for (let i = 0; i < count; i++) new Worker(new URL(import.meta.url));
  process.stderr.write(`stress-cpu: ${count} busy threads in process ${process.pid}\n`);
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, () => process.exit(0));
} else {
  // A busy loop that never yields; Math.sqrt keeps the JIT from removing it.
  let x = 0;
  for (;;) x = Math.sqrt(x + 1);
}
