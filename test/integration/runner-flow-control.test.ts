import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { RankHungError, type ForwardedLog } from "../../src/index.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

/** Ranks log at info (so `ctx.log` reaches `onLog`), and the runner's own lines go nowhere. */
const infoLogger = pino({ level: "info" }, new Writable({ write: (_chunk, _encoding, done) => done() }));

describe("stream flow control", () => {
  it("a consumer that stops reading makes the rank's addStreamingResult wait, within the stream window", async () => {
    const window = 64 * 1024;
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, streamHighWaterMark: window, logger: infoLogger });
    await runner.start();
    let firstWait: number | undefined;
    let waitedOnce!: () => void;
    const waited = new Promise<void>((resolve) => (waitedOnce = resolve));
    const onLog = (log: ForwardedLog): void => {
      const match = /^waited (\d+)$/.exec(log.msg);
      if (match && firstWait === undefined) {
        firstWait = Number(match[1]);
        waitedOnce();
      }
    };
    const size = 16 * 1024;
    const count = 200;
    const stream = runner.stream<{ i: number; pad: string } | { sent: number }>({ op: "flood", count, size }, { onLog });
    const iterator = stream[Symbol.asyncIterator]();
    // Take one item, then stop reading until the rank reports that it had to wait.
    expect((await iterator.next()).value).toMatchObject({ i: 0 });
    await waited;
    // It waited once about a window's worth (plus an item or two) was unread, not after all 3 MiB.
    expect(firstWait).toBeGreaterThanOrEqual(2);
    expect(firstWait).toBeLessThanOrEqual(Math.ceil(window / size) + 3);
    // Reading again lets it finish, every item in order.
    let next = 1;
    for (;;) {
      const { value, done } = await iterator.next();
      if (done) break;
      if ("sent" in value!) expect(value.sent).toBe(count);
      else expect(value!.i).toBe(next++);
    }
    expect(next).toBe(count);
  });

  it("breaking out while the rank waits for the window cancels the request at the rank", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, streamHighWaterMark: 16 * 1024, logger: infoLogger });
    await runner.start();
    let waitedOnce!: () => void;
    const waited = new Promise<void>((resolve) => (waitedOnce = resolve));
    const stream = runner.stream({ op: "flood", count: 1000, size: 8 * 1024 }, { onLog: (log) => /^waited/.test(log.msg) && waitedOnce() });
    for await (const _ of stream) {
      await waited;
      break;
    }
    // Request 1 was the flood: its signal aborted at the rank, and the rank is free for the next request.
    expect(await runner.invoke({ op: "cancelled", id: 1 })).toMatch(/cancelled by the runner \(aborted\)/);
  });
});

describe("heartbeats", () => {
  it("a rank whose event loop is blocked is declared hung within heartbeatTimeout plus a second; its requests fail and the group stops", async () => {
    const heartbeatTimeout = 1;
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, heartbeatTimeout, logger: infoLogger });
    await runner.start();
    const states: string[] = [];
    runner.on("state", (state) => states.push(state));
    let spinningAt = 0;
    const spinning = runner.invoke({ op: "spin", rank: 1, ms: 60_000 }, { onLog: (log) => log.msg === "spinning" && (spinningAt = performance.now()) });
    // A second request queued behind it fails too, not at its own timeout.
    const queued = runner.invoke({ op: "echo", value: 1 });
    const error = await spinning.catch((e: unknown) => e);
    const detectedAfterMs = performance.now() - spinningAt;
    expect(error).toBeInstanceOf(RankHungError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK_HUNG", rank: 1 });
    expect((error as RankHungError).silentMs).toBeGreaterThan(heartbeatTimeout * 1000);
    expect(spinningAt).toBeGreaterThan(0);
    // heartbeatTimeout plus at most a ping interval (250 ms here) and scheduling: within it plus a second.
    expect(detectedAfterMs).toBeLessThanOrEqual((heartbeatTimeout + 1) * 1000);
    await expect(queued).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANK_HUNG" });
    expect(states).toContain("failed");
    expect(runner.isAlive()).toBe(false);
    expect(runner.gatherErrors().some((e) => e.code === "MULTIRANK_ERR_RANK_HUNG")).toBe(true);
    // The hung rank was killed, so a restart is quick and works.
    await runner.restart();
    expect(await runner.invoke({ op: "echo", value: "back" })).toBe("back");
  });

  it("a rank awaiting long async work is not flagged", async () => {
    // Several timeouts long; 1 s, not less: a busy machine may not schedule an idle rank for half a second.
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, heartbeatTimeout: 1 });
    await runner.start();
    await expect(runner.invoke({ op: "sleep", ms: 3500 })).resolves.toMatchObject({ slept: 3500 });
    expect(runner.isAlive()).toBe(true);
  });

  it("heartbeatTimeout is validated, and 0 turns heartbeats off", () => {
    expect(() => makeRunner({ worker: fixture("probe"), heartbeatTimeout: -1 })).toThrow(/options\.heartbeatTimeout/);
    expect(() => makeRunner({ worker: fixture("probe"), heartbeatTimeout: 0 })).not.toThrow();
  });
});
