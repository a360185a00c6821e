/**
 * Attach mode across "hosts" with their own addresses (network namespaces on
 * a private bridge, test/helpers/netns.ts): the runner on host-a, two ranks
 * each on host-b and host-c. Measured in the same run, between the same
 * namespaces:
 * - invoke p50 (runner on host-a, four ranks) against a raw zeromq.js
 *   DEALER/ROUTER round trip of a small message between host-a and host-b;
 * - a 64 MiB float32 all-reduce across the four ranks (rank 0's time, after a
 *   barrier) against one raw 64 MiB tcp transfer from host-b to host-c
 *   (until the receiver's one-byte acknowledgement).
 * The raw baselines use neither CURVE nor multirank; multirank's tcp links
 * are CURVE-encrypted, which costs bandwidth.
 *
 *   node --import tsx bench/multihost.ts [--quick]
 *
 * Needs root (network namespaces): without it, it says why and does nothing.
 * Prints a table and writes bench/out/multihost.json.
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import * as zmq from "zeromq";
import { NetnsHosts, netnsUnavailable } from "../test/helpers/netns.js";
import { launchRanks, RunnerOnHost } from "../test/helpers/netns-cluster.js";
import { QUICK, percentile, report, row } from "./lib/index.js";

const SELF = fileURLToPath(import.meta.url);
const BYTES = 64 * 1024 * 1024;
const SMALL = 64;

// ---- roles run on the hosts (BENCH_ROLE) ---------------------------------------

/** host-a: a ROUTER that times round trips to the DEALER on host-b. */
async function zmqRouter(): Promise<void> {
  const router = new zmq.Router();
  await router.bind(`tcp://${process.env.ADDR}:0`);
  const endpoint = router.lastEndpoint!;
  process.stdout.write(`PORT ${endpoint.slice(endpoint.lastIndexOf(":") + 1)}\n`);
  const [peer] = await router.receive(); // hello
  const body = Buffer.alloc(SMALL, 7);
  const times: number[] = [];
  const count = Number(process.env.COUNT);
  for (let i = -100; i < count; i++) {
    const started = performance.now();
    await router.send([peer!, body]);
    await router.receive();
    if (i >= 0) times.push(performance.now() - started);
  }
  await router.send([peer!, Buffer.from("end")]);
  process.stdout.write(`RESULT ${JSON.stringify(times)}\n`);
  router.close();
}

/** host-b: a DEALER that echoes until "end". */
async function zmqDealer(): Promise<void> {
  const dealer = new zmq.Dealer({ linger: 0 });
  dealer.connect(process.env.ENDPOINT!);
  await dealer.send("hi");
  for await (const [msg] of dealer) {
    if (msg!.length === 3 && msg!.toString() === "end") break;
    await dealer.send(msg!);
  }
  dealer.close();
}

/** host-c: a tcp sink that acknowledges every BYTES it received with one byte. */
function tcpSink(): void {
  const server = net.createServer((socket) => {
    let got = 0;
    socket.on("data", (chunk: Buffer) => {
      got += chunk.length;
      while (got >= BYTES) {
        got -= BYTES;
        socket.write(Buffer.from([1]));
      }
    });
    socket.on("close", () => server.close());
  });
  server.listen(0, process.env.ADDR, () => process.stdout.write(`PORT ${(server.address() as net.AddressInfo).port}\n`));
}

/** host-b: sends BYTES to the sink COUNT times (after one warm-up), timing each until its acknowledgement. */
async function tcpSource(): Promise<void> {
  const socket = net.connect(Number(process.env.PORT), process.env.TARGET);
  await new Promise((resolve) => socket.once("connect", resolve));
  const body = Buffer.alloc(BYTES, 1);
  const times: number[] = [];
  for (let i = -1; i < Number(process.env.COUNT); i++) {
    const started = performance.now();
    const acked = new Promise((resolve) => socket.once("data", resolve));
    socket.write(body);
    await acked;
    if (i >= 0) times.push(performance.now() - started);
  }
  socket.end();
  process.stdout.write(`RESULT ${JSON.stringify(times)}\n`);
}

// ---- the parent ------------------------------------------------------------------

function spawnRole(hosts: NetnsHosts, host: string, role: string, env: Record<string, string>): ChildProcess {
  return hosts.spawn(host, process.execPath, ["--import", "tsx", SELF], { env: { ...process.env, BENCH_ROLE: role, ...env }, stdio: ["ignore", "pipe", "inherit"] });
}

/** The first stdout line of `child` starting with `tag`, without the tag. */
function line(child: ChildProcess, tag: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (text) => {
      if (text.startsWith(`${tag} `)) {
        lines.close();
        resolve(text.slice(tag.length + 1));
      }
    });
    child.once("exit", (code) => reject(new Error(`${tag}: the process exited (${code})`)));
  });
}

async function rawRoundTrips(hosts: NetnsHosts, count: number): Promise<number[]> {
  const router = spawnRole(hosts, "host-a", "zmq-router", { ADDR: hosts.host("host-a").address, COUNT: String(count) });
  const port = await line(router, "PORT");
  const result = line(router, "RESULT");
  spawnRole(hosts, "host-b", "zmq-dealer", { ENDPOINT: `tcp://${hosts.host("host-a").address}:${port}` });
  return JSON.parse(await result) as number[];
}

async function rawTransfers(hosts: NetnsHosts, count: number): Promise<number[]> {
  const target = hosts.host("host-c").address;
  const sink = spawnRole(hosts, "host-c", "tcp-sink", { ADDR: target });
  const port = await line(sink, "PORT");
  const source = spawnRole(hosts, "host-b", "tcp-source", { TARGET: target, PORT: port, COUNT: String(count) });
  return JSON.parse(await line(source, "RESULT")) as number[];
}

export async function main(): Promise<void> {
  const unavailable = netnsUnavailable();
  if (unavailable) {
    process.stdout.write(`\n## multihost\nskipped: ${unavailable}\n`);
    return;
  }
  const invokes = QUICK ? 100 : 500;
  const reduces = QUICK ? 2 : 5;
  const hosts = NetnsHosts.create(["host-a", "host-b", "host-c"]);
  const dir = mkdtempSync(join(tmpdir(), "mr-bench-netns-"));
  try {
    const joinFile = join(dir, "join");
    const runner = new RunnerOnHost(hosts, "host-a", { worldSize: 4, joinFile });
    const listening = new Promise((resolve) => runner.once("listening", resolve));
    const started = runner.call("start", undefined, 300);
    await Promise.race([listening, started]);
    const ranks = launchRanks(hosts, ["host-b", "host-c"], 2, joinFile);
    await started.catch((error: Error) => {
      throw new Error(`${error.message}\n${ranks.map((r) => r.stderr()).join("\n")}`);
    });

    const roundTrips = await rawRoundTrips(hosts, invokes);
    await runner.call("invokeTimes", { count: 100, payload: { op: "echo" } }); // warm-up
    const invokeTimes = await runner.call<number[]>("invokeTimes", { count: invokes, payload: { op: "echo" } });

    const transfers = await rawTransfers(hosts, reduces);
    const { times: reduceTimes, first } = await runner.call<{ times: number[]; first: number }>("invoke", { op: "allReduce", bytes: BYTES, iterations: reduces + 1 });
    if (first !== 1 + 2 + 3 + 4) throw new Error(`wrong all-reduce result ${first}`);
    await runner.call("stop");

    const p50 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
    const allReduce = p50(reduceTimes.slice(1)); // the first is the warm-up
    const transfer = p50(transfers);
    report(
      "multihost",
      [
        row({ name: "invoke p50 (runner host-a, ranks host-b x2 + host-c x2)", value: p50(invokeTimes), unit: "ms", baselineName: "raw zmq round trip host-a to host-b", baseline: p50(roundTrips), lowerIsBetter: true }),
        row({
          name: "allReduce 64 MiB float32, 4 ranks on 2 hosts",
          value: allReduce,
          unit: "ms",
          baselineName: "raw 64 MiB tcp transfer host-b to host-c",
          baseline: transfer,
          lowerIsBetter: true,
          extra: { allReduceMiBps: Math.round(64 / (allReduce / 1000)), transferMiBps: Math.round(64 / (transfer / 1000)) },
        }),
      ],
      { invokes, reduces, subnet: hosts.subnet },
    );
  } finally {
    hosts.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.env.BENCH_ROLE;
if (role === "zmq-router") await zmqRouter();
else if (role === "zmq-dealer") await zmqDealer();
else if (role === "tcp-sink") tcpSink();
else if (role === "tcp-source") await tcpSource();
else if (import.meta.url === `file://${process.argv[1]}`) await main();
