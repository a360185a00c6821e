/**
 * A stream of 100,000 small text events end to end (rank 0 formats them as
 * Server-Sent Events, the runner yields ready bytes), against raw zeromq.js
 * messages of the same size from one process to another, in the same run.
 * Target (issue 4): at least 100,000 events/s end to end.
 */
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner } from "multirank";
import { msSince, now, QUICK, rawPeer, report, row, type BenchRow } from "./lib/index.js";

const MANY = fileURLToPath(new URL("../test/fixtures/workers/many-events.ts", import.meta.url));
const COUNT = QUICK ? 20_000 : 100_000;
const EVENT_BYTES = Buffer.byteLength('data: {"i":12345}\n\n');

export async function main(): Promise<BenchRow[]> {
  const peer = await rawPeer();
  let rawRate: number;
  try {
    await peer.streamFrom(1000, EVENT_BYTES);
    const t = now();
    const got = await peer.streamFrom(COUNT, EVENT_BYTES);
    rawRate = got / (msSince(t) / 1000);
  } finally {
    await peer.close();
  }
  const rows: BenchRow[] = [];
  const runner = new DistributedRunner({ worker: MANY, worldSize: 1, logger: pino({ level: "warn" }) });
  await runner.start();
  try {
    for (const text of [true, false]) {
      for await (const _ of runner.stream({ count: 1000, text }, { asTextEvents: true })) {
        /* warm-up */
      }
      let events = 0;
      const t = now();
      for await (const _ of runner.stream({ count: COUNT, text }, { asTextEvents: true })) events++;
      const rate = events / (msSince(t) / 1000);
      rows.push(
        row({
          name: `text events/s (${text ? "formatted in the rank" : "formatted in the runner"})`,
          value: rate,
          unit: "events/s",
          baselineName: "raw zmq messages/s",
          baseline: rawRate,
          lowerIsBetter: false,
          extra: { events, absoluteTarget: 100_000, absoluteTargetMet: rate >= 100_000 ? "yes" : "no" },
        }),
      );
    }
  } finally {
    await runner.stop();
  }
  report("stream", rows, { events: COUNT, eventBytes: EVENT_BYTES });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
