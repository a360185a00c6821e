import { describe, expect, it } from "vitest";
import { RankExitError, RankGroupError } from "../../src/index.js";
import { childPids, isRunning, waitFor } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe("a rank that dies", () => {
  it("SIGSEGV mid-stream fails the stream at once with the signal and stderr tail, and stops the other ranks", async () => {
    const runner = makeRunner({ worker: fixture("segfault-mid-stream"), worldSize: 2 });
    await runner.start();
    const [, survivor] = runner.pids;
    const items: unknown[] = [];
    const started = Date.now();
    const error = await (async () => {
      for await (const item of runner.stream({ crashRank: 0, items: 3 })) items.push(item);
    })().catch((e: unknown) => e);
    // Ended by the crash, not by a timeout: the heartbeat's is a minute, the request's a day.
    // (About 100 ms on an idle machine; the bound leaves room for a busy one.)
    expect(Date.now() - started).toBeLessThan(15_000);
    // Items the rank handed to ZeroMQ just before dying may die with it (its I/O
    // thread had not written them yet); what arrives is in order, never mixed up.
    expect([{ i: 0 }, { i: 1 }, { i: 2 }].slice(0, items.length)).toEqual(items);
    expect(error).toBeInstanceOf(RankExitError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT", rank: 0, signal: "SIGSEGV", exitCode: null });
    expect((error as RankExitError).stderrTail).toContain("dereferencing null now");
    expect(await waitFor(() => !isRunning(survivor!), 15_000)).toBe(true);
    expect(runner.state).toBe("failed");
    expect(runner.isAlive()).toBe(false);
    expect(() => runner.ensureAlive()).toThrow(RankGroupError);
  });

  it("an exit with a code fails every in-flight request and names the code; restart() brings the group back", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const dying = runner.invoke({ op: "exit", rank: 1, code: 42 });
    // Queued behind the dying request: in flight, never run; it must fail too, not hang.
    const bystander = runner.invoke({ op: "echo", value: "queued" });
    const outcomes = await Promise.allSettled([dying, bystander]);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe("rejected");
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT", rank: 1, exitCode: 42 });
    }
    expect(((outcomes[0] as PromiseRejectedResult).reason as RankExitError).stderrTail).toContain("probe rank 1 about to die");
    const gathered = runner.gatherErrors();
    expect(gathered.some((e) => e.code === "MULTIRANK_ERR_RANK_EXIT" && e.rank === 1)).toBe(true);
    await expect(runner.invoke({ op: "echo" })).rejects.toMatchObject({ code: "MULTIRANK_ERR_STATE" });

    await runner.restart();
    expect(runner.isAlive()).toBe(true);
    expect(await runner.invoke({ op: "echo", value: "back" })).toBe("back");
  }, 120_000);

  it("an uncaught exception on a rank is reported with its stack, through the error file, as the exit's cause", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const error = (await runner.invoke({ op: "uncaught", rank: 1 }).catch((e: unknown) => e)) as RankExitError;
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT", rank: 1, exitCode: 1 });
    expect(error.cause).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 1, phase: "process", remoteName: "SyntaxError" });
    const gathered = runner.gatherErrors();
    const recorded = gathered.find((e) => e.code === "MULTIRANK_ERR_RANK" && e.phase === "process");
    expect(recorded).toMatchObject({ rank: 1, remoteName: "SyntaxError" });
    expect((recorded as Error).message).toContain("corrupt weights in shard");
    expect(gathered.some((e) => e.code === "MULTIRANK_ERR_RANK_EXIT")).toBe(true);
  });

  it("a rank that exits during setup fails start with the exit", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, nodeArgs: ["--require", "/nonexistent/preload.cjs"] });
    const error = await runner.start({ timeout: 20 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT", exitCode: 1 });
    expect((error as RankExitError).stderrTail).toContain("Cannot find module");
    expect(childPids()).toEqual([]);
  });
});
