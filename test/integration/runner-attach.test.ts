/**
 * Attach mode (`launcher: "external"`): the runner spawns nothing; the test
 * plays the launcher, starting `multirank rank` processes itself with
 * torchrun's variables and the join string in MULTIRANK_JOIN, or through
 * Open MPI's `mpirun`. Everything stays on 127.0.0.1.
 *
 * The mpirun test skips (saying so) where mpirun is missing, except in CI
 * (CI set), where it fails instead: .ci/run installs openmpi-bin.
 */
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { DistributedRunner } from "../../src/index.js";
import { decodeJoinInfo, encodeJoinInfo } from "../../src/transport/join-info.js";
import { isRunning, ownChildPids, waitFor } from "../helpers/processes.js";
import { killLaunchedRanks, launchRank as launchJoinedRank, trackLaunched, type Launched } from "../helpers/joined-ranks.js";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";

const WORKER = "test/fixtures/workers/attach-sum.ts";
const runners: DistributedRunner[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await killLaunchedRanks();
  await Promise.all(runners.map((r) => r.terminate()));
  runners.length = 0;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A logger whose records the test reads back. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

function attachRunner(worldSize: number, extra: Partial<ConstructorParameters<typeof DistributedRunner>[0]> = {}): DistributedRunner {
  const runner = new DistributedRunner({ worker: WORKER, worldSize, launcher: "external", workerAddr: "127.0.0.1", workerPort: 0, ...extra });
  runners.push(runner);
  return runner;
}

/** Starts one `multirank rank` as torchrun would, with the join string in its environment. */
function launchRank(join: string, rank: number, worldSize: number, env: Record<string, string> = {}): Launched {
  return launchJoinedRank(WORKER, rank, worldSize, { MULTIRANK_JOIN: join, ...env });
}

/** Starts the runner and, once it listens, `worldSize` ranks. */
async function startWithRanks(runner: DistributedRunner, timeout = 120): Promise<Launched[]> {
  const ranks: Launched[] = [];
  runner.once("listening", () => {
    for (let rank = 0; rank < runner.worldSize; rank++) ranks.push(launchRank(runner.joinInfo, rank, runner.worldSize));
  });
  await runner.start({ timeout });
  return ranks;
}

describe("attach mode: ranks started by another launcher", () => {
  it("serves invoke, stream and an allReduce across joined ranks; stop() ends them all with exit code 0", async () => {
    const runner = attachRunner(3);
    const ranks = await startWithRanks(runner);
    expect(runner.state).toBe("ready");
    expect(runner.pids).toEqual(ranks.map((r) => r.child.pid));
    // allReduce of (value + rank) over 3 ranks: 3 * 1 + (0 + 1 + 2).
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [6], worldSize: 3, pid: ranks[0]!.child.pid });
    const items: unknown[] = [];
    for await (const item of runner.stream({ stream: 3 })) items.push(item);
    expect(items).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }, { streamed: 3 }]);
    await runner.stop();
    expect(await Promise.all(ranks.map((r) => r.exited))).toEqual([0, 0, 0]);
    expect(ownChildPids()).toEqual([]);
  });

  it("refuses and logs impostors (wrong secret, wrong world size, a rank taken) while the real ranks keep working", async () => {
    const { logger, lines } = capturingLogger();
    const runner = attachRunner(2, { logger });
    await startWithRanks(runner);
    const info = decodeJoinInfo(runner.joinInfo);
    const wrongSecret = launchRank(encodeJoinInfo({ ...info, secret: "0f".repeat(32) }), 1, 2);
    const wrongSize = launchRank(encodeJoinInfo({ ...info, worldSize: 3 }), 1, 3);
    const taken = launchRank(runner.joinInfo, 1, 2);
    expect(await wrongSecret.exited).toBe(2);
    expect(await wrongSize.exited).toBe(2);
    expect(await taken.exited).toBe(2);
    expect(wrongSecret.stderr()).toMatch(/the runner refused rank 1: rank 1's hello has a wrong token/);
    expect(wrongSize.stderr()).toMatch(/the runner refused rank 1: rank 1 says the world size is 3, but the runner's is 2/);
    expect(taken.stderr()).toMatch(/rank 1 has already joined/);
    for (const impostor of [wrongSecret, wrongSize, taken]) expect(impostor.stderr()).not.toContain(info.secret);
    const refusals = lines.filter((line) => line.includes("refused a rank's hello"));
    expect(refusals).toHaveLength(3);
    expect(lines.join("\n")).not.toContain(info.secret);
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [3] });
    expect(runner.state).toBe("ready");
  });

  it("a rank whose launcher placement disagrees with the join string exits 2, naming both numbers and not the join string", async () => {
    const runner = attachRunner(2);
    const listening = once(runner, "listening");
    const starting = runner.start({ timeout: 1 }).catch((error: unknown) => error);
    await listening;
    const stray = launchRank(runner.joinInfo, 0, 3);
    expect(await stray.exited).toBe(2);
    expect(stray.stderr()).toMatch(/world size is 3, but the runner's is 2/);
    expect(stray.stderr()).not.toContain(runner.joinInfo);
    await starting;
  });

  it("fails a request within the heartbeat bound when a joined rank is SIGKILLed, naming the rank and its host", async () => {
    const runner = attachRunner(2, { heartbeatTimeout: 1 });
    const ranks = await startWithRanks(runner);
    const failures: Error[] = [];
    runner.on("failure", (error) => failures.push(error));
    const request = runner.invoke({ sleep: 60_000 }).catch((error: unknown) => error as Error & { code?: string; rank?: number; host?: string });
    // The request reached the ranks once rank 1 answers the next heartbeat after it: wait for no sleep, just kill.
    const killedAt = performance.now();
    ranks[1]!.child.kill("SIGKILL");
    const error = await request;
    const elapsed = performance.now() - killedAt;
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_HUNG", rank: 1, host: hostname() });
    expect((error as Error).message).toContain(`rank 1 on host ${hostname()}`);
    // The documented bound: heartbeatTimeout plus one ping interval (a quarter of it), with room for a busy machine.
    expect(elapsed).toBeLessThan(1000 + 250 + 3000);
    expect(runner.state).toBe("failed");
    expect(failures.map((f) => (f as { code?: string }).code)).toEqual(["MULTIRANK_ERR_RANK_HUNG"]);
    // The survivor leaves: told to drop the request and tear down (0), or on
    // its own when its link to the dead peer broke first (71, group broken).
    expect([0, 71]).toContain(await ranks[0]!.exited);
  });

  it("a joined rank's fatal error fails the group at once, not after the heartbeat bound", async () => {
    // Heartbeats long enough that only the fatal report can explain a quick failure.
    const runner = attachRunner(2, { heartbeatTimeout: 120 });
    await startWithRanks(runner);
    const started = Date.now();
    const error = await runner.invoke({ crashRank: 1 }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string; rank?: number },
    );
    expect(error).toMatchObject({ rank: 1 });
    expect(error!.message).toMatch(/rank 1 crashed on purpose/);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(runner.state).toBe("failed");
  });

  it("joined ranks take the runner's maxMessageBytes from setup: an answer over it fails clearly instead of being dropped", async () => {
    const runner = attachRunner(2, { maxMessageBytes: 64 * 1024, timeout: 60 });
    await startWithRanks(runner);
    expect(await runner.invoke({ bytes: 1000 })).toHaveLength(1000);
    await expect(runner.invoke({ bytes: 200 * 1024 })).rejects.toThrow(/rank 0 failed in call: .*65536/);
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [3] });
  });

  it("writes joinFile with mode 0600, which a rank can join with (MULTIRANK_JOIN_FILE)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mr-attach-"));
    dirs.push(dir);
    const joinFile = join(dir, "run", "join");
    const runner = attachRunner(1, { joinFile });
    runner.once("listening", () => launchRank("", 0, 1, { MULTIRANK_JOIN: "", MULTIRANK_JOIN_FILE: joinFile }));
    await runner.start({ timeout: 120 });
    expect(statSync(joinFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(joinFile, "utf8").trim()).toBe(runner.joinInfo);
    expect(await runner.invoke({ value: 2 })).toMatchObject({ sum: [2] });
  });

  it("start() times out naming the ranks that never joined", async () => {
    const runner = attachRunner(3);
    let came: Launched | undefined;
    runner.once("listening", () => (came = launchRank(runner.joinInfo, 1, 3)));
    const error = await runner.start({ timeout: 3 }).catch((e: unknown) => e as Error & { code?: string });
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
    expect((error as Error).message).toMatch(/ranks that never joined: 0, 2 \(of 3/);
    expect(runner.state).toBe("failed");
    // The rank that came was told to leave.
    expect(await came!.exited).toBe(0);
  });

  it("restart() waits for the launcher to bring the ranks back, or says it did not", async () => {
    const runner = attachRunner(2);
    // restart() waits as long as start() did: long enough for a busy machine to start ranks, short enough to see it give up.
    const first = await startWithRanks(runner, 15);
    const join = runner.joinInfo;
    // A launcher with a restart policy, as torchrun's and a Job's OnFailure: a
    // rank that exits non-zero comes back with the same join string (once here).
    const second: Launched[] = [];
    const firstExits: Array<number | null> = [];
    for (const [rank, launched] of first.entries()) {
      void launched.exited.then((code) => {
        firstExits.push(code);
        if (code !== 0) second.push(launchRank(join, rank, 2));
      });
    }
    await runner.restart();
    // restart() tells the ranks it is one: they exit 75, not 0, so the policy applies.
    expect(firstExits).toEqual([75, 75]);
    expect(second).toHaveLength(2);
    expect(runner.joinInfo).toBe(join);
    expect(await runner.invoke({ value: 0 })).toMatchObject({ sum: [1] });
    // And one without: the ranks stay gone.
    const error = await runner.restart().then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
    expect((error as Error).message).toMatch(/the launcher did not restart the ranks: .*ranks that never joined: 0, 1/);
    expect(await Promise.all(second.map((r) => r.exited))).toEqual([75, 75]);
  }, 90_000);

  it("stop() ends joined ranks with exit code 0, so a restart policy leaves them ended", async () => {
    const runner = attachRunner(2);
    const ranks = await startWithRanks(runner);
    await runner.stop();
    expect(await Promise.all(ranks.map((r) => r.exited))).toEqual([0, 0]);
  });

  it("a joined rank leaves once its runner has been silent for heartbeatTimeout (the runner is gone or cut off)", async () => {
    const runner = attachRunner(2, { heartbeatTimeout: 2 });
    const ranks = await startWithRanks(runner);
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [3] });
    // The runner stops talking without a teardown, as a SIGKILLed runner or a cut link would.
    runner.closeZmqSocket();
    expect(await Promise.all(ranks.map((r) => r.exited))).toEqual([70, 70]);
    for (const rank of ranks) expect(rank.stderr()).toMatch(/the runner has been silent for \d+\.\d s \(it is gone or cut off\); the rank exits/);
  });
});

/** Whether `mpirun` runs here. */
function hasMpirun(): boolean {
  return spawnSync("mpirun", ["--version"], { stdio: "ignore" }).status === 0;
}

const mpirunMissing = !hasMpirun();
if (mpirunMissing && !process.env.CI) process.stderr.write("runner-attach: mpirun is not installed (apt-get install openmpi-bin); the Open MPI test is skipped\n");

describe("attach mode under Open MPI", () => {
  it.skipIf(mpirunMissing && !process.env.CI)("mpirun -np 4 joins a runner: invoke, stream, allReduce; stop() leaves nothing running", async () => {
    expect(hasMpirun(), "mpirun must be installed in CI (.ci/run installs openmpi-bin)").toBe(true);
    const runner = attachRunner(4);
    let mpirun: Launched | undefined;
    runner.once("listening", () => {
      const child = spawn(
        "mpirun",
        ["--allow-run-as-root", "--oversubscribe", "-np", "4", "--mca", "btl", "self,tcp", "-x", "MULTIRANK_JOIN", "-x", "MULTIRANK_LOG_LEVEL", process.execPath, "dist/cli/main.js", "rank", "--worker", WORKER],
        { env: { ...process.env, MULTIRANK_JOIN: runner.joinInfo, MULTIRANK_LOG_LEVEL: "warn" }, stdio: ["ignore", "ignore", "pipe"] },
      );
      mpirun = trackLaunched(child);
    });
    await runner.start({ timeout: 120 });
    const pids = [...runner.pids];
    expect(pids).toHaveLength(4);
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [4 + 6], worldSize: 4 });
    const items: unknown[] = [];
    for await (const item of runner.stream({ stream: 2 })) items.push(item);
    expect(items).toEqual([{ i: 0 }, { i: 1 }, { streamed: 2 }]);
    await runner.stop();
    expect(await mpirun!.exited, mpirun!.stderr()).toBe(0);
    expect(await waitFor(() => pids.every((pid) => !isRunning(pid)), 10_000)).toBe(true);
    expect(ownChildPids()).toEqual([]);
  }, 120_000);
});

describe("attach mode: each joined rank pins itself by its local rank", () => {
  let fake: FakeDriver | undefined;
  afterEach(() => {
    fake?.remove();
    fake = undefined;
  });

  it("takes its host's device for its local rank, through the fake CUDA driver", async () => {
    fake = buildFakeDriver();
    // Four fake GPUs on every "host"; devices 0 and 1 are local to core 0, 2 and 3 to core 1.
    const hostEnv = { MULTIRANK_FAKE_DRIVER: fake.path, FAKE_CUDA_DEVICE_CPUS: "0;0;1;1" };
    const runner = attachRunner(4);
    runner.once("listening", () => {
      // Two hosts of two ranks each, as `torchrun --nnodes 2 --nproc-per-node 2` would start them.
      for (let rank = 0; rank < 4; rank++) {
        launchRank(runner.joinInfo, rank, 4, { ...hostEnv, LOCAL_RANK: String(rank % 2), LOCAL_WORLD_SIZE: "2", MULTIRANK_HOST_ID: rank < 2 ? "host-a" : "host-b" });
      }
    });
    await runner.start({ timeout: 120 });
    expect(runner.devices.map((d) => (d.kind === "cuda" ? d.index : -1))).toEqual([0, 1, 0, 1]);
    expect(runner.devices.map((d) => d.cpus)).toEqual([[0], [0], [0], [0]]);
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [10] });
  });
});
