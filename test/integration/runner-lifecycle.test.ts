import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { childPids, isRunning, openFds, waitFor } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe("stopping", () => {
  it("stop() lets requests in flight finish, runs teardown, and leaves nothing", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const inFlight = runner.invoke({ op: "sleep", ms: 200 });
    await runner.stop();
    expect(await inFlight).toEqual({ slept: 200, rank: 0 });
    expect(childPids()).toEqual([]);
    await runner.stop(); // idempotent
    await expect(runner.invoke({})).rejects.toMatchObject({ code: "MULTIRANK_ERR_STATE" });
  });

  it("escalates to SIGKILL for a rank that ignores SIGTERM and never finishes teardown", async () => {
    const runner = makeRunner({ worker: fixture("ignores-sigterm"), worldSize: 2 });
    await runner.start();
    const exits: Array<NodeJS.Signals | null> = [];
    runner.on("rankExit", (exit) => exits.push(exit.signal));
    const started = Date.now();
    await runner.stop({ timeout: 0.3 });
    expect(exits).toEqual(["SIGKILL", "SIGKILL"]);
    // The 0.3 s was honoured: the default stop timeout alone is 10 s. (Expected
    // about 2.3 s with the SIGTERM grace; the bound leaves room for a busy machine.)
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(childPids()).toEqual([]);
  });

  it("terminate() is immediate and fails what is in flight", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const inFlight = runner.invoke({ op: "sleep", ms: 10_000 });
    await runner.terminate();
    await expect(inFlight).rejects.toMatchObject({ code: "MULTIRANK_ERR_STATE" });
    expect(childPids()).toEqual([]);
  });

  it("await using stops the runner at the end of the scope", async () => {
    {
      await using runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
      await runner.start();
      expect(childPids()).toHaveLength(1);
    }
    expect(childPids()).toEqual([]);
  });

  it("starts and stops 50 times without leaking processes, sockets or file descriptors", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    // The first start loads zeromq's context and lazy modules; measure after it.
    await runner.start();
    await runner.stop();
    const baseline = openFds();
    for (let i = 0; i < 50; i++) {
      await runner.start();
      expect(await runner.invoke({ op: "echo", value: i })).toBe(i);
      await runner.stop();
    }
    expect(childPids()).toEqual([]);
    // ZeroMQ's reaper closes sockets asynchronously; allow it a moment (an upper bound) and a little slack.
    expect(await waitFor(() => openFds() <= baseline + 2, 15_000)).toBe(true);
    // 51 cold starts of two ranks: a few seconds each on a busy 2-core machine.
  }, 600_000);
});

describe("when the runner itself dies", () => {
  it.each([
    ["the death pipe and the parent-death signal", []],
    ["the parent-death signal alone (death pipe off)", ["--no-death-pipe"]],
  ])("every rank exits within a second of the runner being SIGKILLed, through %s", async (_, flags) => {
    const host = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("../fixtures/runner-host.ts", import.meta.url)), "2", ...flags], {
      // A piped stdin: the host exits when this process does, even if the run is killed.
      stdio: ["pipe", "pipe", "inherit"],
    });
    let pids: number[] = [];
    try {
      const lines = createInterface({ input: host.stdout! });
      for await (const line of lines) {
        if (line.startsWith('{"pids":')) {
          pids = (JSON.parse(line) as { pids: number[] }).pids;
          break;
        }
      }
      expect(pids).toHaveLength(2);
      expect(pids.every(isRunning)).toBe(true);
      host.kill("SIGKILL");
      await once(host, "exit");
      expect(await waitFor(() => !pids.some(isRunning), 1000)).toBe(true);
    } finally {
      host.kill("SIGKILL");
      // If the test failed, the ranks are orphans of ours to clean up.
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone, as it should be.
        }
      }
    }
  });
});

describe("keepalive", () => {
  it("sends the keepalive payload after the idle interval, and requests reset the wait", async () => {
    // The interval is far above one request's round trip on a busy machine (a
    // request in flight longer than it would let the timer fire), and the
    // busy phase lasts longer than it, so only the resets keep it quiet.
    const interval = 2;
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, keepaliveInterval: interval, keepalivePayload: { op: "order", tag: -1 } });
    await runner.start();
    const sent = vi.spyOn(runner, "keepalive");
    const busySince = Date.now();
    for (let i = 0; Date.now() - busySince <= interval * 1500; i++) {
      await runner.invoke({ op: "order", tag: i });
      await new Promise((r) => setTimeout(r, 200));
    }
    const busy = await runner.invoke<number[]>({ op: "order", tag: 100 });
    expect(busy.filter((tag) => tag === -1)).toEqual([]);
    expect(sent).not.toHaveBeenCalled();
    // Idle now: wait for the timer's own keepalive (an upper bound, not an expectation).
    await expect.poll(() => sent.mock.calls.length, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    await sent.mock.results[0]!.value;
    const idle = await runner.invoke<number[]>({ op: "order", tag: 101 });
    expect(idle.filter((tag) => tag === -1).length).toBeGreaterThanOrEqual(1);
    runner.maybeCancelKeepalive();
    await runner.keepalive();
  });
});
