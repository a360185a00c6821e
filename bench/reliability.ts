/**
 * How fast failures are found and how much a slow reader costs, each against
 * a same-run baseline:
 * - a rank SIGKILLed mid-request: time until the request rejects, against the
 *   time until Node reports the exit of a bare child killed the same way;
 * - a rank whose event loop blocks: time until the request rejects with
 *   RankHungError, against the heartbeatTimeout it was given;
 * - 1 GiB of streamed events towards an SSE client that never reads: growth
 *   of the gateway process (which holds the runner), against the bytes sent.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner } from "multirank";
import { msSince, now, QUICK, report, row, summarize, type BenchRow } from "./lib/index.js";

const FAULTS = fileURLToPath(new URL("./workers/faults.ts", import.meta.url));
const FLOOD_GATEWAY = fileURLToPath(new URL("../test/fixtures/gateway/flood-gateway.ts", import.meta.url));
const REPS = QUICK ? 2 : 5;
const MiB = 1024 * 1024;
/** Ranks log at info so `ctx.log` reaches `onLog`; the runner's own lines go nowhere. */
const logger = pino({ level: "info" }, new Writable({ write: (_chunk, _encoding, done) => done() }));

async function bareKill(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "process.stdout.write('up'); setInterval(() => {}, 1000)"], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((resolve) => child.stdout!.once("data", resolve));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const t = now();
  child.kill("SIGKILL");
  await exited;
  return msSince(t);
}

async function crashDetection(runner: DistributedRunner): Promise<number> {
  await runner.start();
  let inPlace!: () => void;
  const ready = new Promise<void>((resolve) => (inPlace = resolve));
  const request = runner.invoke({ op: "wait", ms: 60_000 }, { onProgress: () => inPlace() });
  await ready;
  const t = now();
  process.kill(runner.pids[1]!, "SIGKILL");
  await request.catch(() => {});
  const ms = msSince(t);
  await runner.stop();
  return ms;
}

async function hangDetection(runner: DistributedRunner): Promise<number> {
  await runner.start();
  let t = now();
  const request = runner.invoke({ op: "spin", rank: 1, ms: 30_000 }, { onLog: (log) => log.msg === "spinning" && (t = now()) });
  const error = await request.catch((e: unknown) => e);
  const ms = msSince(t);
  if ((error as { code?: string }).code !== "MULTIRANK_ERR_RANK_HUNG") throw new Error(`expected RankHungError, got ${String(error)}`);
  await runner.stop();
  return ms;
}

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

/** Bytes the gateway process grew by while 1 GiB of events waited for a client that never reads. */
async function slowConsumerGrowth(): Promise<{ growth: number; sentItems: number }> {
  const dir = mkdtempSync(join(tmpdir(), "multirank-bench-flood-"));
  const child = spawn(process.execPath, ["--import", "tsx", FLOOD_GATEWAY], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    let stdout = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    while (!stdout.includes("url ")) await new Promise((resolve) => setTimeout(resolve, 20));
    const url = /url (\S+)/.exec(stdout)![1]!;
    const lines = (file: string): string[] => {
      try {
        return readFileSync(file, "utf8").split("\n").filter(Boolean);
      } catch {
        return [];
      }
    };
    const warm = await fetch(`${url}/fal/run/t/flood/stream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ count: 8, size: 64 * 1024, progressFile: join(dir, "warm") }) });
    await warm.text();
    const before = rss(child.pid!);
    const file = join(dir, "flood");
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    socket.on("error", () => {});
    const body = JSON.stringify({ count: 1024, size: MiB, progressFile: file });
    socket.write(`POST /fal/run/t/flood/stream HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    socket.pause();
    while (!lines(file).some((line) => line.startsWith("waited"))) await new Promise((resolve) => setTimeout(resolve, 20));
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, rss(child.pid!));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const sentItems = lines(file).filter((line) => line.startsWith("sent")).length;
    socket.destroy();
    return { growth: peak - before, sentItems };
  } finally {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function main(): Promise<BenchRow[]> {
  const crash: number[] = [];
  const bare: number[] = [];
  const hang: number[] = [];
  const crashRunner = new DistributedRunner({ worker: FAULTS, worldSize: 2, logger });
  const heartbeatTimeout = 1;
  const hangRunner = new DistributedRunner({ worker: FAULTS, worldSize: 2, heartbeatTimeout, logger });
  for (let i = 0; i < REPS; i++) {
    bare.push(await bareKill());
    crash.push(await crashDetection(crashRunner));
    hang.push(await hangDetection(hangRunner));
  }
  const flood = await slowConsumerGrowth();
  const rows = [
    row({ name: "rank SIGKILLed mid-request: request rejected after", value: summarize(crash).p50, unit: "ms", baselineName: "bare child SIGKILL to exit event", baseline: summarize(bare).p50, lowerIsBetter: true }),
    row({ name: "rank event loop blocked: RankHungError after", value: summarize(hang).p50, unit: "ms", baselineName: "heartbeatTimeout", baseline: heartbeatTimeout * 1000, lowerIsBetter: true }),
    row({ name: "1 GiB of events, SSE client never reads: gateway growth", value: flood.growth / MiB, unit: "MiB", baselineName: "bytes the worker streamed at", baseline: 1024, lowerIsBetter: true, extra: { itemsSentBeforeWaiting: flood.sentItems } }),
  ];
  report("reliability", rows, { reps: REPS, crashMs: crash, hangMs: hang, flood });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
