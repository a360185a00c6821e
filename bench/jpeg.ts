/**
 * 512x512 JPEG frames streamed from a rank (raw pixels encoded with sharp in
 * the rank, quality 60) against sharp encoding the same frames with no
 * transport at all, in the same run.
 * Target (issue 4): at least 80% of sharp's encode-only rate.
 */
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import sharp from "sharp";
import { DistributedRunner } from "multirank";
import { msSince, now, QUICK, report, row, type BenchRow } from "./lib/index.js";

const FRAMES_WORKER = fileURLToPath(new URL("./workers/frames.ts", import.meta.url));
const FRAMES = QUICK ? 40 : 200;
const SIZE = 512;

function frame(seed: number): Uint8Array {
  const pixels = new Uint8Array(SIZE * SIZE * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 31 + seed * 17 + ((i / 1536) | 0)) & 255;
  return pixels;
}

async function streamedRate(transport: "auto" | "ipc"): Promise<number> {
  const runner = new DistributedRunner({ worker: FRAMES_WORKER, worldSize: 1, transport, logger: pino({ level: "warn" }) });
  await runner.start();
  try {
    for await (const _ of runner.stream({ frames: 5, size: SIZE })) {
      /* warm-up */
    }
    let got = 0;
    const t = now();
    for await (const item of runner.stream<{ image?: { content_type: string } }>({ frames: FRAMES, size: SIZE })) if (item.image) got++;
    return got / (msSince(t) / 1000);
  } finally {
    await runner.stop();
  }
}

export async function main(): Promise<BenchRow[]> {
  // Baseline: the same work as the rank's encoder, in this process, nothing sent.
  const pixels = frame(1);
  for (let i = 0; i < 5; i++) await sharp(pixels, { raw: { width: SIZE, height: SIZE, channels: 3 } }).jpeg({ quality: 60 }).toBuffer();
  const t0 = now();
  for (let i = 0; i < FRAMES; i++) await sharp(pixels, { raw: { width: SIZE, height: SIZE, channels: 3 } }).jpeg({ quality: 60 }).toBuffer();
  const encodeRate = FRAMES / (msSince(t0) / 1000);

  const rows: BenchRow[] = [];
  // The default control channel (a unix socket on one host), then ZeroMQ ipc:// for comparison.
  for (const transport of ["auto", "ipc"] as const) {
    const streamRate = await streamedRate(transport);
    const name = transport === "auto" ? "512x512 JPEG frames/s, streamed" : "512x512 JPEG frames/s, streamed over ZeroMQ ipc://";
    rows.push(row({ name, value: streamRate, unit: "frames/s", baselineName: "sharp encode-only frames/s", baseline: encodeRate, lowerIsBetter: false, ...(transport === "auto" ? { target: { min: 0.8 } } : {}) }));
  }
  report("jpeg", rows, { frames: FRAMES, size: SIZE });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
