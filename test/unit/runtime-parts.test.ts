import { describe, expect, it, vi } from "vitest";
import { resolveRunnerOptions } from "../../src/runner/options.js";
import { chooseControlEndpoint, isSameHostEndpoint } from "../../src/runner/endpoints.js";
import { isLoopback } from "../../src/util/loopback.js";
import { HeartbeatMonitor } from "../../src/runner/heartbeat-monitor.js";
import { PendingRequest } from "../../src/runner/pending-request.js";
import { KeepaliveTimer } from "../../src/runner/keepalive-timer.js";
import { RequestScheduler } from "../../src/worker/request-scheduler.js";
import { AsyncQueue } from "../../src/util/async-queue.js";
import { readRankEnv } from "../../src/worker/rank-env.js";

describe("runner options", () => {
  it("fills defaults and freezes the result", () => {
    const options = resolveRunnerOptions({ worker: "w.ts" });
    expect(options).toMatchObject({ worldSize: 1, masterAddr: "127.0.0.1", masterPort: 0, workerPort: 0, timeoutMs: 86_400_000, maxMessageBytes: 512 * 1024 * 1024, devices: "auto", deathPipe: true });
    expect(Object.isFrozen(options)).toBe(true);
  });

  it.each([
    [{ worldSize: 1.5 }, /options.worldSize must be a positive integer, got 1.5/],
    [{ workerPort: -1 }, /options.workerPort/],
    [{ timeout: 0 }, /options.timeout must be a positive number of seconds/],
    [{ transport: "udp" }, /options.transport/],
    [{ maxMessageBytes: 10 }, /options.maxMessageBytes/],
    [{ env: { A: 1 } }, /options.env.A must be a string/],
    [{ devices: [0], worldSize: 2 }, /options.devices lists 1 devices for 2 ranks/],
    [{ launcher: "ssh" }, /options.launcher/],
    [{ joinFile: "/tmp/j" }, /options.joinFile needs options.launcher "external"/],
  ])("rejects %o", (bad, message) => {
    expect(() => resolveRunnerOptions({ worker: "w.ts", ...(bad as object) })).toThrow(message);
  });
});

describe("runner options for attach mode", () => {
  it("default to spawn, with a 10 s heartbeat timeout for an external launcher unless one is given", () => {
    expect(resolveRunnerOptions({ worker: "w.ts" })).toMatchObject({ launcher: "spawn", heartbeatTimeoutMs: 60_000, joinFile: undefined });
    expect(resolveRunnerOptions({ worker: "w.ts", launcher: "external", joinFile: "/tmp/j" })).toMatchObject({ launcher: "external", heartbeatTimeoutMs: 10_000, joinFile: "/tmp/j" });
    expect(resolveRunnerOptions({ worker: "w.ts", launcher: "external", heartbeatTimeout: 3 })).toMatchObject({ heartbeatTimeoutMs: 3000 });
  });
});

describe("control endpoint", () => {
  it("uses a unix socket on loopback with port 0, ZeroMQ ipc when asked, tcp otherwise, always with CURVE", () => {
    expect(chooseControlEndpoint({ transport: "auto", workerAddr: "127.0.0.1", workerPort: 0, runDir: "/tmp/x" })).toEqual({ bind: "unix:/tmp/x/control.sock", secure: false });
    expect(chooseControlEndpoint({ transport: "unix", workerAddr: "127.0.0.1", workerPort: 5555, runDir: "/tmp/x" })).toEqual({ bind: "unix:/tmp/x/control.sock", secure: false });
    expect(chooseControlEndpoint({ transport: "ipc", workerAddr: "127.0.0.1", workerPort: 0, runDir: "/tmp/x" })).toEqual({ bind: "ipc:///tmp/x/control.sock", secure: false });
    expect(chooseControlEndpoint({ transport: "auto", workerAddr: "127.0.0.1", workerPort: 5555, runDir: "/tmp/x" })).toEqual({ bind: "tcp://127.0.0.1:5555", secure: true });
    expect(chooseControlEndpoint({ transport: "tcp", workerAddr: "10.0.0.5", workerPort: 0, runDir: "/tmp/x" })).toEqual({ bind: "tcp://10.0.0.5:*", secure: true });
    expect(chooseControlEndpoint({ transport: "auto", workerAddr: "::1", workerPort: 0, runDir: `/tmp/${"x".repeat(200)}` }).bind).toBe("tcp://[::1]:*");
    expect(isLoopback("127.0.0.2")).toBe(true);
    expect(isLoopback("0.0.0.0")).toBe(false);
    // One rule for every caller (three disagreed): IPv4-mapped and bracketed forms too, never a look-alike name.
    expect(isLoopback("::ffff:127.0.0.1")).toBe(true);
    expect(isLoopback("[::1]")).toBe(true);
    expect(isLoopback("127.example.com")).toBe(false);
    expect([isSameHostEndpoint("unix:/a"), isSameHostEndpoint("ipc:///a"), isSameHostEndpoint("tcp://127.0.0.1:1")]).toEqual([true, true, false]);
  });
});

describe("PendingRequest", () => {
  const hooks = () => ({ cancelAtRanks: vi.fn(), finished: vi.fn(), grantCredit: vi.fn(), creditThreshold: 100 });

  it("resolves with rank 0's result once every rank is done", async () => {
    const h = hooks();
    const request = new PendingRequest(1, false, [0, 1], h);
    request.rankDone(1, { ok: true, hasResult: false });
    request.rankDone(0, { ok: true, result: "r0", hasResult: true });
    await expect(request.result).resolves.toBe("r0");
    expect(h.finished).toHaveBeenCalledOnce();
  });

  it("on the first rank error cancels the others and reports every rank's error", async () => {
    const h = hooks();
    const request = new PendingRequest(1, false, [0, 1, 2], h);
    request.rankDone(1, { ok: false, error: { name: "E", message: "one" }, cancelled: false });
    expect(h.cancelAtRanks).toHaveBeenCalledWith("failed");
    request.rankDone(2, { ok: false, error: { name: "E", message: "two" }, cancelled: false });
    request.rankDone(0, { ok: false, error: { name: "AbortError", message: "cancelled" }, cancelled: true });
    await expect(request.result).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANKS_FAILED" });
  });

  it("absorbs everything after it settled", async () => {
    const h = hooks();
    const request = new PendingRequest(1, true, [0], h);
    request.items([{ data: { a: 1 } }], 10);
    request.fail(new Error("aborted"));
    request.items([{ data: { a: 2 } }], 10);
    request.rankDone(0, { ok: true, result: "late", hasResult: true });
    expect(await request.events!.next()).toEqual({ value: { kind: "item", data: { a: 1 }, bytes: 10 }, done: false });
    await expect(request.events!.next()).rejects.toThrow("aborted");
    expect(h.finished).toHaveBeenCalledOnce();
  });

  it("hands consumed stream bytes back as credit, in steps of the threshold", async () => {
    const h = hooks();
    const request = new PendingRequest(1, true, [0], h);
    request.items([{ data: 1 }, { data: 2 }], 120); // 60 bytes each
    request.items([{ data: 3 }], 60);
    await request.nextEvent();
    expect(h.grantCredit).not.toHaveBeenCalled();
    await request.nextEvent();
    expect(h.grantCredit).toHaveBeenCalledWith(120);
    await request.nextEvent();
    expect(h.grantCredit).toHaveBeenCalledOnce();
  });
});

describe("HeartbeatMonitor", () => {
  it("pings, and reports a rank silent past the timeout once; one that answers is never reported", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "Date"] });
    try {
      const hung: Array<[number, number]> = [];
      let pings = 0;
      const monitor = new HeartbeatMonitor(2, 1000, { ping: () => void pings++, hung: (rank, silent) => void hung.push([rank, silent]) }, () => Date.now());
      monitor.start();
      for (let i = 0; i < 3; i++) {
        await vi.advanceTimersByTimeAsync(250);
        monitor.heard(0);
        monitor.heard(1);
      }
      expect(pings).toBeGreaterThanOrEqual(2);
      expect(hung).toEqual([]);
      for (let i = 0; i < 6; i++) {
        await vi.advanceTimersByTimeAsync(250);
        monitor.heard(0);
      }
      expect(hung).toHaveLength(1);
      expect(hung[0]![0]).toBe(1);
      expect(hung[0]![1]).toBeGreaterThan(1000);
      expect(hung[0]![1]).toBeLessThanOrEqual(1500);
    } finally {
      vi.useRealTimers();
    }
  });

  it("judges joined ranks from their join only, and names the rank silent longest", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "Date"] });
    try {
      const hung: number[] = [];
      const monitor = new HeartbeatMonitor(3, 1000, { ping: () => {}, hung: (rank) => void hung.push(rank) }, () => Date.now());
      monitor.watch(2);
      // Rank 2 answers; ranks 0 and 1 have not joined: never judged.
      for (let i = 0; i < 8; i++) {
        await vi.advanceTimersByTimeAsync(250);
        monitor.heard(2);
      }
      expect(hung).toEqual([]);
      monitor.watch(0);
      monitor.watch(1);
      // Rank 1 dies first; ranks 0 and 2 follow it a little later.
      await vi.advanceTimersByTimeAsync(250);
      monitor.heard(0);
      monitor.heard(2);
      for (let i = 0; i < 8 && hung.length === 0; i++) await vi.advanceTimersByTimeAsync(250);
      expect(hung).toEqual([1]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("RequestScheduler", () => {
  it("starts jobs in order, one at a time by default, and exclusive jobs alone", async () => {
    const log: string[] = [];
    const scheduler = new RequestScheduler(2);
    const job = (name: string, ms: number, exclusive = false) => ({
      exclusive,
      run: async () => {
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${name}`);
      },
      dropped: () => log.push(`dropped ${name}`),
    });
    scheduler.enqueue(job("a", 30));
    scheduler.enqueue(job("b", 10));
    scheduler.enqueue(job("x", 10, true));
    scheduler.enqueue({ ...job("c", 1), id: 7 });
    expect(scheduler.dropQueued(7, "cancel")).toBe(true);
    scheduler.enqueue(job("d", 1));
    await scheduler.idle();
    expect(log).toEqual(["start a", "start b", "dropped c", "end b", "end a", "start x", "end x", "start d", "end d"]);
  });
});

describe("AsyncQueue", () => {
  it("hands out pushed items, then ends or fails after the buffer drains", async () => {
    const queue = new AsyncQueue<number>();
    const waiting = queue.next();
    queue.push(1);
    queue.push(2);
    queue.fail(new Error("x"));
    expect(await waiting).toEqual({ value: 1, done: false });
    expect(await queue.next()).toEqual({ value: 2, done: false });
    await expect(queue.next()).rejects.toThrow("x");
  });
});

describe("KeepaliveTimer", () => {
  it("fires after the interval and reset() pushes it back", async () => {
    vi.useFakeTimers();
    try {
      const fired = vi.fn();
      const timer = new KeepaliveTimer(1000, fired);
      timer.start();
      vi.advanceTimersByTime(900);
      timer.reset();
      vi.advanceTimersByTime(900);
      expect(fired).not.toHaveBeenCalled();
      vi.advanceTimersByTime(200);
      expect(fired).toHaveBeenCalledOnce();
      timer.start();
      timer.cancel();
      vi.advanceTimersByTime(5000);
      expect(fired).toHaveBeenCalledOnce();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("rank environment", () => {
  it("names the variable that is missing or wrong", () => {
    expect(() => readRankEnv({})).toThrow(/WORLD_SIZE is not set/);
    expect(() => readRankEnv({ WORLD_SIZE: "2", RANK: "2", MASTER_PORT: "1" })).toThrow(/RANK \(2\) must be below WORLD_SIZE \(2\)/);
  });
});
