/**
 * Invoke round trip with a tiny payload at world sizes 1, 2 and 4, and a
 * one-item stream, against a raw zeromq.js DEALER/ROUTER round trip between
 * two processes measured in the same run.
 * Targets (issue 4): p50 at world size 1 <= 1.5x raw; world size 4 <= 3x raw.
 * The runner's default control channel on one host is a unix stream socket;
 * rows "over ZeroMQ ..." run the same runner with ZeroMQ instead.
 */
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner } from "multirank";
import { msSince, now, QUICK, rawPeer, rawUnixPeer, report, row, summarize, type BenchRow } from "./lib/index.js";

const ECHO = fileURLToPath(new URL("../workers/echo.ts", import.meta.url));
const N = QUICK ? 300 : 3000;
const WARMUP = QUICK ? 50 : 300;

async function rawBaseline(open: () => Promise<{ roundTrip(body: Buffer): Promise<void>; close(): Promise<void> }> = rawPeer): Promise<number> {
  const peer = await open();
  try {
    const body = Buffer.from('{"text":"hi"}');
    for (let i = 0; i < WARMUP; i++) await peer.roundTrip(body);
    const samples: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = now();
      await peer.roundTrip(body);
      samples.push(msSince(t));
    }
    return summarize(samples).p50;
  } finally {
    await peer.close();
  }
}

async function measure(worldSize: number, transport: "auto" | "ipc" | "tcp" = "auto"): Promise<{ invoke: ReturnType<typeof summarize>; stream: ReturnType<typeof summarize> }> {
  const runner = new DistributedRunner({ worker: ECHO, worldSize, transport, logger: pino({ level: "warn" }) });
  await runner.start();
  try {
    const payload = { text: "hi" };
    for (let i = 0; i < WARMUP; i++) await runner.invoke(payload);
    const invokes: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = now();
      await runner.invoke(payload);
      invokes.push(msSince(t));
    }
    const streams: number[] = [];
    for (let i = 0; i < N / 3; i++) {
      const t = now();
      for await (const _ of runner.stream(payload)) {
        /* the echo's result is the one item */
      }
      streams.push(msSince(t));
    }
    return { invoke: summarize(invokes), stream: summarize(streams) };
  } finally {
    await runner.stop();
  }
}

export async function main(): Promise<BenchRow[]> {
  // Interleave baseline and subject so a noisy neighbour hits both alike.
  const rows: BenchRow[] = [];
  for (const worldSize of [1, 2, 4]) {
    const raw = await rawBaseline();
    const { invoke, stream } = await measure(worldSize);
    const target = worldSize === 1 ? { max: 1.5 } : worldSize === 4 ? { max: 3 } : undefined;
    rows.push(row({ name: `invoke p50, world ${worldSize}`, value: invoke.p50, unit: "ms", baselineName: "raw zmq round trip p50", baseline: raw, lowerIsBetter: true, ...(target ? { target } : {}), extra: { p90: invoke.p90, p99: invoke.p99 } }));
    rows.push(row({ name: `stream (1 item) p50, world ${worldSize}`, value: stream.p50, unit: "ms", baselineName: "raw zmq round trip p50", baseline: raw, lowerIsBetter: true, extra: { p99: stream.p99 } }));
    if (worldSize === 1) {
      // What the default control channel's socket costs by itself.
      const unix = await rawBaseline(rawUnixPeer);
      rows.push(row({ name: "raw unix stream socket round trip p50", value: unix, unit: "ms", baselineName: "raw zmq round trip p50", baseline: raw, lowerIsBetter: true }));
    }
    if (worldSize === 1 || worldSize === 4) {
      // Does the unix-socket default pay? The same runner with ZeroMQ as its
      // control channel (ipc://, then loopback tcp), against the default.
      for (const transport of ["ipc", "tcp"] as const) {
        const other = await measure(worldSize, transport);
        const where = transport === "ipc" ? "ZeroMQ ipc://" : "ZeroMQ tcp://127.0.0.1";
        rows.push(row({ name: `invoke p50, world ${worldSize}, over ${where}`, value: other.invoke.p50, unit: "ms", baselineName: "raw zmq round trip p50", baseline: raw, lowerIsBetter: true, extra: { defaultP50: invoke.p50 } }));
      }
    }
  }
  report("invoke", rows, { requests: N });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
