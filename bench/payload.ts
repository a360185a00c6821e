/**
 * 1, 16 and 64 MiB payloads sent to every rank of a world of 4 and
 * acknowledged, against `Buffer.copy` of the same bytes in this process, in
 * the same run. Bandwidth counts the payload once (not once per rank), the
 * stricter reading. Target (issue 4): 64 MiB at >= 25% of Buffer.copy.
 * Each size runs twice: an ordinary Buffer, which the runner copies into one
 * of its pooled shared-memory segments per request, and a Buffer from
 * allocSharedBuffer, which travels as a reference with no copy at all.
 */
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { allocSharedBuffer, DistributedRunner } from "multirank";
import { msSince, now, QUICK, report, row, summarize, type BenchRow } from "./lib/index.js";

const ACK = fileURLToPath(new URL("./workers/ack.ts", import.meta.url));
const MiB = 1024 * 1024;

function copyMs(size: number, reps: number): number {
  const source = Buffer.alloc(size, 3);
  const target = Buffer.allocUnsafe(size);
  source.copy(target);
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = now();
    source.copy(target);
    samples.push(msSince(t));
  }
  return summarize(samples).p50;
}

async function withSharedPayloadsOff<T>(fn: () => Promise<T>): Promise<T> {
  process.env.MULTIRANK_SHARED_PAYLOAD_MIN_BYTES = String(Number.MAX_SAFE_INTEGER);
  try {
    return await fn();
  } finally {
    delete process.env.MULTIRANK_SHARED_PAYLOAD_MIN_BYTES;
  }
}

async function invokeMs(runner: DistributedRunner, data: Buffer, reps: number): Promise<number> {
  await runner.invoke({ data });
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = now();
    const ack = await runner.invoke<{ bytes: number }>({ data });
    samples.push(msSince(t));
    if (ack.bytes !== data.length) throw new Error(`rank 0 acknowledged ${ack.bytes} bytes, not ${data.length}`);
  }
  return summarize(samples).p50;
}

export async function main(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const runner = new DistributedRunner({ worker: ACK, worldSize: 4, logger: pino({ level: "warn" }), maxMessageBytes: 256 * MiB });
  await runner.start();
  try {
    // Mid-size payloads: through a shared-memory segment (the default from
    // 64 KiB) against through the socket, each to 4 ranks.
    for (const kib of [64, 256, 768]) {
      const size = kib * 1024;
      const reps = QUICK ? 30 : 150;
      const data = Buffer.alloc(size, 5);
      const shared = await invokeMs(runner, data, reps);
      const socket = await withSharedPayloadsOff(() => invokeMs(runner, data, reps));
      rows.push(row({ name: `${kib} KiB to 4 ranks, p50 ms, shared memory`, value: shared, unit: "ms", baselineName: "same through the socket", baseline: socket, lowerIsBetter: true }));
    }
    for (const mib of [1, 16, 64]) {
      const size = mib * MiB;
      const reps = QUICK ? (mib >= 64 ? 3 : 8) : mib >= 64 ? 10 : 30;
      const baseMs = copyMs(size, reps);
      const copy = size / (baseMs / 1000) / 1e9;
      // An ordinary Buffer (copied into a pooled segment per request), then
      // allocSharedBuffer memory (sent by reference, its pages reused).
      for (const [how, data] of [["Buffer", Buffer.alloc(size, 5)], ["allocSharedBuffer", allocSharedBuffer(size).fill(5)]] as const) {
        // References cost milliseconds: more samples keep one collection on a rank out of the median.
        const ms = await invokeMs(runner, data, how === "allocSharedBuffer" ? Math.max(reps, 20) : reps);
        // Bandwidths in GB/s; ratio = ours / copy (higher is better).
        const ours = size / (ms / 1000) / 1e9;
        rows.push(row({ name: `${mib} MiB to 4 ranks, ${how}, acknowledged`, value: ours, unit: "GB/s", baselineName: "Buffer.copy GB/s", baseline: copy, lowerIsBetter: false, ...(mib === 64 ? { target: { min: 0.25 } } : {}), extra: { p50ms: ms, copyP50ms: baseMs } }));
      }
    }
  } finally {
    await runner.stop();
  }
  report("payload", rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
