/**
 * Collectives benchmark: a 4-rank all-reduce of 64 MiB of Float32 against ONE
 * raw zeromq.js transfer of 64 MiB between two processes, and a 4-rank barrier
 * against a raw zeromq.js round trip, all measured in the same run (these
 * machines are shared and noisy, so only ratios mean much; the baselines run
 * before and after the group and their samples are pooled).
 *
 *   node --import tsx bench/collectives.ts [--quick]
 *
 * Prints a table and writes bench/out/collectives.json.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as zmq from "zeromq";
import { pino } from "pino";
import { createProcessGroup, processGroupOptionsFromEnv } from "../src/collectives/index.js";

const SELF = fileURLToPath(import.meta.url);
const OUT_DIR = path.join(path.dirname(SELF), "out");
const BYTES = 64 * 1024 * 1024;
const WORLD = 4;
const quick = process.argv.includes("--quick");
const role = process.env.BENCH_ROLE;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function spawnSelf(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", SELF, ...process.argv.slice(2)], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let buf = "";
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// ---- child: the far end of the raw baselines -------------------------------
async function rawPeer(): Promise<void> {
  const pull = new zmq.Pull();
  await pull.bind(process.env.DATA_EP!);
  const push = new zmq.Push();
  push.connect(process.env.ACK_EP!);
  process.stdout.write("READY\n");
  for await (const [msg] of pull) {
    if (msg.length === 1 && msg[0] === 0) break;
    await push.send(msg.length > 64 ? "ok" : msg); // big: ack; small: echo
  }
  pull.close();
  push.close();
}

// ---- child: one rank of the group -------------------------------------------
async function rank(): Promise<void> {
  const logger = pino({ level: "warn" }, pino.destination(2));
  const group = await createProcessGroup(processGroupOptionsFromEnv(process.env, { logger }));
  const iters = Number(process.env.ITERS);
  // The barrier first: measured after the all-reduces it would also measure
  // the collection of their 64 MiB results on some rank.
  const barrier: number[] = [];
  // Warm until the JIT has compiled the hot path (a few hundred calls): a
  // barrier is short enough that the first ones measure the compiler.
  for (let i = 0; i < 1000; i++) await group.barrier();
  for (let i = 0; i < iters * 50; i++) {
    const t = performance.now();
    await group.barrier();
    barrier.push(performance.now() - t);
  }
  const data = new Float32Array(BYTES / 4);
  for (let i = 0; i < data.length; i++) data[i] = (i % 97) + group.rank;
  const reduce: number[] = [];
  await group.allReduce(data); // warm-up: page faults, JIT
  for (let i = 0; i < iters; i++) {
    await group.barrier();
    const t = performance.now();
    const out = await group.allReduce(data, "sum");
    reduce.push(performance.now() - t);
    if (i === 0 && out[1] !== (1 % 97) * WORLD + 6) throw new Error(`wrong all-reduce result ${out[1]}`);
  }
  // Every rank's time counts: the slowest rank is when the all-reduce is done everywhere.
  const all = await group.allGather({ reduce, barrier });
  if (group.rank === 0) process.stdout.write(`RESULT ${JSON.stringify(all)}\n`);
  await group.close();
}

// ---- parent -------------------------------------------------------------------
async function rawBaselines(iters: number): Promise<{ transfer: number[]; roundTrip: number[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mr-bench-"));
  const dataEp = `ipc://${dir}/data`;
  const ackEp = `ipc://${dir}/ack`;
  const ack = new zmq.Pull();
  await ack.bind(ackEp);
  const child = spawnSelf({ BENCH_ROLE: "raw", DATA_EP: dataEp, ACK_EP: ackEp });
  await new Promise<void>((resolve) => lines(child, (l) => l === "READY" && resolve()));
  const push = new zmq.Push();
  push.connect(dataEp);
  const big = Buffer.alloc(BYTES, 1);
  const transfer: number[] = [];
  const roundTrip: number[] = [];
  for (let i = -1; i < iters; i++) {
    const t = performance.now();
    await push.send(big);
    await ack.receive();
    if (i >= 0) transfer.push(performance.now() - t);
  }
  const small = Buffer.from("ping");
  for (let i = -1000; i < iters * 50; i++) {
    const t = performance.now();
    await push.send(small);
    await ack.receive();
    if (i >= 0) roundTrip.push(performance.now() - t);
  }
  await push.send(Buffer.from([0]));
  await new Promise((r) => child.once("exit", r));
  push.close();
  ack.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { transfer, roundTrip };
}

async function groupRun(iters: number): Promise<{ reduce: number[]; barrier: number[]; barrierPerRank: number[][] }> {
  const port = await freePort();
  const children = Array.from({ length: WORLD }, (_, r) =>
    spawnSelf({ BENCH_ROLE: "rank", RANK: String(r), WORLD_SIZE: String(WORLD), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port), ITERS: String(iters) }),
  );
  try {
    const result = await new Promise<{ reduce: number[]; barrier: number[] }[]>((resolve, reject) => {
      lines(children[0], (l) => l.startsWith("RESULT ") && resolve(JSON.parse(l.slice(7))));
      for (const c of children) c.once("exit", (code) => code !== 0 && reject(new Error(`a rank exited with ${code}`)));
    });
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    // Per iteration, the slowest rank's time.
    const slowest = (key: "reduce" | "barrier"): number[] => result[0][key].map((_, i) => Math.max(...result.map((r) => r[key][i])));
    return { reduce: slowest("reduce"), barrier: slowest("barrier"), barrierPerRank: result.map((r) => r.barrier) };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  }
}

async function main(): Promise<void> {
  const iters = quick ? 3 : 10;
  // Baselines before and after the group, so a load change between the two
  // phases shifts both sides of the ratio alike.
  const before = await rawBaselines(iters);
  const grp = await groupRun(iters);
  const after = await rawBaselines(iters);
  const raw = { transfer: [...before.transfer, ...after.transfer], roundTrip: [...before.roundTrip, ...after.roundTrip] };
  // A barrier's time: the median duration of a call on the slowest rank (each
  // rank's call includes waiting for the others), as OSU's osu_barrier reports
  // per-rank loop averages. The median over iterations of the slowest rank in
  // each iteration, which adds four processes' scheduling jitter to every
  // sample, is kept in the JSON as barrierWorstPerIteration.
  const barrierMs = Math.max(...grp.barrierPerRank.map(median));
  const rows = [
    { name: "raw zmq transfer 64 MiB (2 procs)", ms: median(raw.transfer), baseline: "" },
    { name: `all-reduce 64 MiB f32 (${WORLD} ranks)`, ms: median(grp.reduce), baseline: "raw transfer", ratio: median(grp.reduce) / median(raw.transfer), target: 3 },
    { name: "raw zmq round trip (2 procs)", ms: median(raw.roundTrip), baseline: "" },
    { name: `barrier (${WORLD} ranks)`, ms: barrierMs, baseline: "raw round trip", ratio: barrierMs / median(raw.roundTrip), target: 3, barrierWorstPerIteration: median(grp.barrier) },
  ];
  const pad = (s: string, n: number): string => s.padEnd(n);
  process.stdout.write(`${pad("benchmark", 38)}${pad("median ms", 12)}${pad("ratio", 16)}target\n`);
  for (const r of rows) {
    const ratio = r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}x ${r.baseline}`;
    process.stdout.write(`${pad(r.name, 38)}${pad(r.ms.toFixed(3), 12)}${pad(ratio, 16)}${r.target ? `<= ${r.target}x ${r.ratio! <= r.target ? "ok" : "MISSED"}` : ""}\n`);
  }
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const json = { date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, node: process.version, quick, iters, rows, samples: { raw, group: grp } };
  fs.writeFileSync(path.join(OUT_DIR, "collectives.json"), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`wrote ${path.join(OUT_DIR, "collectives.json")}\n`);
}

const entry = role === "raw" ? rawPeer() : role === "rank" ? rank() : main();
entry.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
