/**
 * Attach mode under Slurm: the test runs its own single-node cluster (munged,
 * slurmctld and slurmd in the foreground, on a private munge socket, free
 * ports and a scratch state directory), then `srun -n 2` starts
 * `multirank rank` joining a runner through its join file, as the README's
 * sbatch recipe does. The daemons and everything srun started are stopped
 * afterwards, by their pids.
 *
 * It skips (saying so) where Slurm is not installed or the test is not root
 * (slurmd runs jobs as their user), except in CI (CI set), where it fails
 * instead: .ci/run installs slurmctld, slurmd, slurm-client and munge.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DistributedRunner } from "../../src/index.js";
import { isRunning, waitFor } from "../helpers/processes.js";

const WORKER = "test/fixtures/workers/attach-sum.ts";
const CLI = "dist/cli/main.js";
const SBIN = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

interface Launched {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** The absolute path of `name` in PATH or the sbin folders, or undefined. */
function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SBIN];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (spawnSync("test", ["-x", candidate]).status === 0) return candidate;
  }
  return undefined;
}

const tools = { munged: which("munged"), slurmctld: which("slurmctld"), slurmd: which("slurmd"), srun: which("srun"), sinfo: which("sinfo") };
const missing = Object.entries(tools)
  .filter(([, path]) => path === undefined)
  .map(([name]) => name);
const isRoot = process.getuid?.() === 0;
const skip = (missing.length > 0 || !isRoot) && !process.env.CI;
if (skip) {
  const why = missing.length > 0 ? `${missing.join(", ")} not installed (apt-get install slurmctld slurmd slurm-client munge)` : "not root (slurmd runs as root)";
  process.stderr.write(`slurm: ${why}; the Slurm test is skipped\n`);
}

let dir = "";
let conf = "";
const daemons: Launched[] = [];
const children: Launched[] = [];
const runners: DistributedRunner[] = [];

function launch(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Launched {
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : null)));
    child.once("error", (error) => {
      out += String(error);
      resolve(null);
    });
  });
  return { child, output: () => out, exited };
}

/** A port free now on 127.0.0.1 (the daemons bind it right after). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function stop(launched: Launched): Promise<void> {
  if (launched.child.exitCode === null && launched.child.signalCode === null) launched.child.kill("SIGTERM");
  const killer = setTimeout(() => launched.child.kill("SIGKILL"), 10_000);
  await launched.exited;
  clearTimeout(killer);
}

describe.skipIf(skip)("attach mode under Slurm", () => {
  beforeAll(async () => {
    expect(missing, "Slurm must be installed in CI (.ci/run installs slurmctld, slurmd, slurm-client and munge)").toEqual([]);
    dir = mkdtempSync(join(tmpdir(), "multirank-slurm-"));
    for (const sub of ["munge", "state", "spool", "log"]) mkdirSync(join(dir, sub), { mode: 0o700 });
    const key = join(dir, "munge.key");
    writeFileSync(key, randomBytes(1024), { mode: 0o600 });
    const socket = join(dir, "munge", "munge.sock");
    // --force: munged refuses to run as root without it.
    const munged = launch(tools.munged!, [
      "--foreground",
      "--force",
      `--key-file=${key}`,
      `--socket=${socket}`,
      `--pid-file=${join(dir, "munge", "munged.pid")}`,
      `--log-file=${join(dir, "munge", "munged.log")}`,
      `--seed-file=${join(dir, "munge", "seed")}`,
    ]);
    daemons.push(munged);
    const node = hostname().split(".")[0]!;
    const [ctldPort, dPort] = [await freePort(), await freePort()];
    conf = join(dir, "slurm.conf");
    // Linux process tracking and no task plugin: no cgroups needed, so it runs in a container too.
    writeFileSync(
      conf,
      [
        "ClusterName=multirank-test",
        `SlurmctldHost=${node}`,
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        `AuthInfo=socket=${socket}`,
        "CredType=cred/munge",
        `SlurmctldPort=${ctldPort}`,
        `SlurmdPort=${dPort}`,
        `StateSaveLocation=${join(dir, "state")}`,
        `SlurmdSpoolDir=${join(dir, "spool")}`,
        `SlurmctldPidFile=${join(dir, "slurmctld.pid")}`,
        `SlurmdPidFile=${join(dir, "slurmd.pid")}`,
        `SlurmctldLogFile=${join(dir, "log", "slurmctld.log")}`,
        `SlurmdLogFile=${join(dir, "log", "slurmd.log")}`,
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        // Two tasks on any machine, however few cores it has.
        `NodeName=${node} CPUs=2 State=UNKNOWN`,
        `PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE`,
        "",
      ].join("\n"),
    );
    chmodSync(conf, 0o644);
    expect(await waitFor(() => spawnSync("test", ["-S", socket]).status === 0, 20_000), `munged did not start: ${munged.output()}`).toBe(true);
    const env = { ...process.env, SLURM_CONF: conf };
    daemons.push(launch(tools.slurmctld!, ["-D", "-f", conf], env));
    daemons.push(launch(tools.slurmd!, ["-D", "-f", conf], env));
    const idle = (): boolean => spawnSync(tools.sinfo!, ["-h", "-o", "%t"], { env, encoding: "utf8" }).stdout?.trim() === "idle";
    expect(await waitFor(idle, 60_000, 200), `the Slurm node never became idle: ${daemons.map((d) => d.output()).join("\n")}`).toBe(true);
  }, 90_000);

  afterEach(async () => {
    await Promise.all(children.splice(0).map(stop));
    await Promise.all(runners.splice(0).map((r) => r.terminate()));
  });

  afterAll(async () => {
    // slurmd before slurmctld before munged: each needs the next while it shuts down.
    for (const daemon of daemons.splice(0).reverse()) await stop(daemon);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("srun -n 2 starts ranks that join a runner through its join file: invoke, stream, allReduce; stop() ends the step", async () => {
    const joinFile = join(dir, "join");
    const runner = new DistributedRunner({ worker: WORKER, worldSize: 2, launcher: "external", workerAddr: "127.0.0.1", workerPort: 0, joinFile });
    runners.push(runner);
    let srun: Launched | undefined;
    runner.once("listening", () => {
      // As the README's sbatch script: the join string from a file, srun passing the environment on.
      srun = launch(tools.srun!, ["-n", "2", "--export=ALL", process.execPath, CLI, "rank", "--worker", WORKER], {
        ...process.env,
        SLURM_CONF: conf,
        MULTIRANK_JOIN_FILE: joinFile,
        MULTIRANK_LOG_LEVEL: "warn",
      });
      children.push(srun);
    });
    await runner.start({ timeout: 120 });
    const pids = [...runner.pids];
    expect(pids).toHaveLength(2);
    // allReduce of (value + rank) over 2 ranks: 2 * 1 + (0 + 1).
    expect(await runner.invoke({ value: 1 })).toMatchObject({ sum: [3], worldSize: 2 });
    const items: unknown[] = [];
    for await (const item of runner.stream({ stream: 2 })) items.push(item);
    expect(items).toEqual([{ i: 0 }, { i: 1 }, { streamed: 2 }]);
    await runner.stop();
    expect(await srun!.exited, srun!.output()).toBe(0);
    expect(await waitFor(() => pids.every((pid) => !isRunning(pid)), 10_000)).toBe(true);
  }, 150_000);
});
