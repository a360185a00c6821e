import { describe, expect, it } from "vitest";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

async function cancelledAt(runner: ReturnType<typeof makeRunner>, id: number): Promise<string | null> {
  // The probe remembers, per request id, why ctx.signal aborted on that rank.
  return runner.invoke<string | null>({ op: "cancelled", id });
}

describe("cancellation", () => {
  it("an aborted signal rejects with MULTIRANK_ERR_ABORTED and aborts ctx.signal at the ranks", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const controller = new AbortController();
    const pending = runner.invoke({ op: "sleep", ms: 30_000 }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("user hit stop")), 100);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect((error as Error).cause).toMatchObject({ message: "user hit stop" });
    // Request ids start at 1: the sleep was request 1.
    expect(await cancelledAt(runner, 1)).toMatch(/cancelled by the runner \(aborted\)/);
  });

  it("an already aborted signal sends nothing", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    await expect(runner.invoke({ op: "echo" }, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(await runner.invoke({ op: "echo", value: "after" })).toBe("after");
  });

  it("a timeout rejects with MULTIRANK_ERR_TIMEOUT and cancels at the ranks", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    await expect(runner.invoke({ op: "sleep", ms: 30_000 }, { timeout: 0.2 })).rejects.toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT", timeoutMs: 200 });
    expect(await cancelledAt(runner, 1)).toMatch(/timeout/);
  });

  it("breaking out of a stream cancels it at every rank", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    let seen = 0;
    for await (const _ of runner.stream({ op: "stream", count: 1000, delayMs: 5 })) {
      if (++seen === 3) break;
    }
    expect(seen).toBe(3);
    expect(await cancelledAt(runner, 1)).toMatch(/cancelled by the runner \(aborted\)/);
  });

  it("a streaming timeout fires when items stop coming", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    const iterate = async (): Promise<void> => {
      for await (const _ of runner.stream({ op: "sleep", ms: 30_000 }, { streamingTimeout: 0.2 })) {
        /* nothing arrives */
      }
    };
    await expect(iterate()).rejects.toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
  });

  it("items a finished request's leftover loop adds never reach the next request's caller", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    expect(await runner.invoke({ op: "leaveLoop" })).toBe("left a loop running");
    const seen: unknown[] = [];
    for await (const item of runner.stream({ op: "stream", count: 20, delayMs: 10 })) seen.push(item);
    expect(seen.filter((item) => (item as { stray?: boolean }).stray)).toEqual([]);
    expect(seen).toHaveLength(21);
  });

  it("never hands one request's results to another, also after cancellations", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const work: Array<Promise<unknown>> = [];
    for (let i = 0; i < 30; i++) {
      const controller = new AbortController();
      // Requests whose caller gives up right away, mixed with ones that complete; each value is unique.
      if (i % 3 === 0) {
        const doomed = runner.invoke({ op: "sleep", ms: 20, ignoreSignal: true }, { signal: controller.signal });
        controller.abort();
        work.push(doomed.then(() => "resolved?", (e: { code: string }) => e.code));
      } else if (i % 3 === 1) {
        work.push(runner.invoke({ op: "echo", value: `value-${i}` }));
      } else {
        work.push(
          (async () => {
            const items: unknown[] = [];
            for await (const item of runner.stream({ op: "stream", count: 4, result: `stream-${i}` })) items.push(item);
            return items.at(-1);
          })(),
        );
      }
    }
    const outcomes = await Promise.all(work);
    outcomes.forEach((outcome, i) => {
      if (i % 3 === 0) expect(outcome).toBe("MULTIRANK_ERR_ABORTED");
      else if (i % 3 === 1) expect(outcome).toBe(`value-${i}`);
      else expect(outcome).toBe(`stream-${i}`);
    });
  });
});
