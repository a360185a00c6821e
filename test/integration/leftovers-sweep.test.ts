// What a SIGKILLed runner leaves (its run dir in tmpdir, its payload segments
// in /dev/shm) is removed by the next runner's start() and by `multirank
// serve` at startup; a live runner's things, and names of other shapes, stay.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { DistributedRunner } from "../../src/index.js";
import { processStartTime, shmAvailable, SHM_DIR, sweepLeftovers } from "../../src/shm/index.js";
import { isRunning } from "../helpers/processes.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const HOST = path.join(REPO, "test/fixtures/runner-host.ts");
const TMP = os.tmpdir();

const children = new Set<ChildProcess>();
const orphans = new Set<number>();
const made = new Set<string>();

interface Host {
  child: ChildProcess;
  pid: number;
  pids: number[];
  runDir: string;
  segments: string[];
}

/** A runner-host child holding a run dir and two payload segments. */
async function startHost(): Promise<Host> {
  const child = spawn(process.execPath, ["--import", "tsx", HOST, "1", "--hold-payload"], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, "exit").then(() => {
    throw new Error(`runner host exited early: ${stderr.slice(-2000)}`);
  });
  const line = (async () => {
    for await (const l of createInterface({ input: child.stdout! })) if (l.startsWith('{"pids":')) return l;
    return "";
  })();
  const report = JSON.parse(await Promise.race([line, exited])) as Omit<Host, "child">;
  for (const pid of report.pids) orphans.add(pid);
  return { child, ...report };
}

/** Things of `pids` (by the `-p<pid>-`/`-p<pid>.` in their names) still in tmpdir or /dev/shm. */
function leftoversOf(pids: number[]): string[] {
  const ofThem = (n: string): boolean => n.startsWith("multirank-") && pids.some((pid) => n.includes(`-p${pid}-`) || n.includes(`-p${pid}.`));
  return [...fs.readdirSync(TMP).filter(ofThem), ...fs.readdirSync(SHM_DIR).filter(ofThem)];
}

/** A pid that was a process and now is none: a child that exited and was reaped. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
  await once(child, "exit");
  return child.pid!;
}

beforeAll(() => {
  if (!shmAvailable()) throw new Error("shared memory is unavailable: build the addon (npm run build:native) on Linux");
});

afterEach(async () => {
  await Promise.all(
    [...children].map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const gone = once(c, "exit");
      c.kill("SIGKILL");
      return gone;
    }),
  );
  children.clear();
  // Ranks of a host the test failed to see die are orphans of ours.
  for (const pid of orphans) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone, as it should be
    }
  }
  orphans.clear();
  for (const p of made) fs.rmSync(p, { recursive: true, force: true });
  made.clear();
});

describe("leftovers of a killed runner", () => {
  it("start() removes a SIGKILLed runner's run dir and payload segments, and leaves a live runner's alone", async () => {
    const [dead, live] = await Promise.all([startHost(), startHost()]);
    for (const host of [dead, live]) {
      expect(path.basename(host.runDir)).toMatch(new RegExp(`^multirank-run-p${host.pid}-s\\d+-[A-Za-z0-9]{6}$`));
      expect(fs.existsSync(path.join(host.runDir, "control.sock"))).toBe(true);
      expect(host.segments).toHaveLength(2); // allocSharedBuffer + the request in flight
    }
    dead.child.kill("SIGKILL");
    await once(dead.child, "exit");
    // Its ranks follow it through the death pipe.
    await expect.poll(() => dead.pids.some(isRunning), { timeout: 10_000 }).toBe(false);
    const deadPids = [dead.pid, ...dead.pids];
    expect(leftoversOf(deadPids)).toEqual(expect.arrayContaining([path.basename(dead.runDir), ...dead.segments]));

    const runner = new DistributedRunner({ worker: path.join(REPO, "test/fixtures/workers/probe.ts"), worldSize: 1, logger: pino({ level: "silent" }) });
    try {
      await runner.start();
      expect(leftoversOf(deadPids)).toEqual([]);
      // The live host's run dir (socket bound) and segments are untouched, and it still answers.
      expect(fs.existsSync(path.join(live.runDir, "control.sock"))).toBe(true);
      for (const name of live.segments) expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(true);
      expect(live.child.exitCode).toBe(null);
    } finally {
      await runner.stop();
    }
  }, 180_000);

  it("multirank serve sweeps at startup", async () => {
    const pid = await deadPid();
    const runDir = path.join(TMP, `multirank-run-p${pid}-s1-Ab3xYz`);
    const segment = path.join(SHM_DIR, `multirank-payload-p${pid}-0123456789ab`);
    made.add(runDir).add(segment);
    fs.mkdirSync(runDir);
    fs.writeFileSync(path.join(runDir, "rank-0.errors.jsonl"), "");
    fs.writeFileSync(segment, "");
    const script = fileURLToPath(new URL("../fixtures/gateway/serve-main.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", script, "--port", "0", "--config", path.join(REPO, "gateway.config.ts")], {
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.resume();
    // Ready (it sweeps before it builds the gateway); no app has minRunners, so no runner started.
    // An upper bound: loading the config through tsx takes seconds on a busy machine.
    await expect.poll(() => stdout.includes("Ctrl-C") || child.exitCode !== null, { timeout: 60_000 }).toBe(true);
    expect(fs.existsSync(runDir)).toBe(false);
    expect(fs.existsSync(segment)).toBe(false);
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    expect((await exited)[0]).toBe(0);
  }, 180_000);
});

describe("sweepLeftovers", () => {
  it("removes only what owners that are gone left: dead, reused pid, unbound old-style socket", async () => {
    const dead = await deadPid();
    // A live process that is not the owner named: same pid, other start time (pid reuse).
    const sleeper = spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore" });
    children.add(sleeper);
    await once(sleeper, "spawn");
    const livePid = sleeper.pid!;
    const liveStart = processStartTime(livePid)!;
    expect(liveStart).toMatch(/^\d+$/);
    const tmp = (name: string): string => {
      const p = path.join(TMP, name);
      made.add(p);
      fs.mkdirSync(p);
      return p;
    };
    const shm = (name: string): string => {
      const p = path.join(SHM_DIR, name);
      made.add(p);
      fs.writeFileSync(p, "");
      return p;
    };
    const gone = [
      tmp(`multirank-run-p${dead}-s5-aaaaaa`),
      tmp(`multirank-run-p${dead}-bbbbbb`),
      tmp(`multirank-run-p${livePid}-s${BigInt(liveStart) + 1n}-cccccc`), // pid reused by the sleeper
      shm(`multirank-payload-p${dead}-0123456789ab`),
      shm(`multirank-coll-0123456789ab-r1-p${dead}-0123456789ab`),
      shm(`multirank-0123456789ab-r1-p${dead}-b0`),
    ];
    const linkSocket = path.join(TMP, `multirank-0123456789ab-r0-p${dead}.sock`);
    made.add(linkSocket);
    fs.writeFileSync(linkSocket, "");
    gone.push(linkSocket);
    const kept = [
      tmp(`multirank-run-p${livePid}-s${liveStart}-dddddd`), // the live owner itself
      tmp(`multirank-run-p${livePid}-eeeeee`), // live, start time unknown
      tmp(`multirank-run-x${dead}-s5-ffffff`), // another shape
      shm(`multirank-payload-p${livePid}-0123456789ab`),
      shm(`someoneelse-p${dead}-0123456789ab`),
    ];

    // Old-style run dirs (no pid in the name): one whose socket died with its process, one bound here.
    const deadOld = tmp("multirank-DeAd01");
    const listener = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(path.join(deadOld, "control.sock"))}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "ignore"] });
    children.add(listener);
    await once(listener.stdout!, "data");
    listener.kill("SIGKILL");
    await once(listener, "exit");
    fs.writeFileSync(path.join(deadOld, "rank-0.errors.jsonl"), "");
    gone.push(deadOld);
    const liveOld = tmp("multirank-LiVe01");
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(liveOld, "control.sock"), resolve));
    kept.push(liveOld);
    const tcpOld = tmp("multirank-NoSock"); // a tcp runner's: nothing tells whether it is alive
    fs.writeFileSync(path.join(tcpOld, "rank-0.errors.jsonl"), "");
    kept.push(tcpOld);

    try {
      const swept = sweepLeftovers();
      for (const p of gone) expect(fs.existsSync(p), p).toBe(false);
      for (const p of kept) expect(fs.existsSync(p), p).toBe(true);
      expect([...swept.tmp, ...swept.shm]).toEqual(expect.arrayContaining(gone.map((p) => path.basename(p))));
      // A second sweep finds nothing more of these.
      const again = sweepLeftovers();
      expect([...again.tmp, ...again.shm].filter((n) => kept.some((p) => path.basename(p) === n))).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
