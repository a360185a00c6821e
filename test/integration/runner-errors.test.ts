import net from "node:net";
import { Dealer, Router } from "zeromq";
import { describe, expect, it } from "vitest";
import { MessageTooLargeError, RankError, RankGroupError, SerializationError } from "../../src/index.js";
import { encodeMessage } from "../../src/transport/stream-framing.js";
import { childPids, waitFor } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe("errors from ranks", () => {
  it("an exception in call on rank 1 rejects that request, naming rank, phase and the original error", async () => {
    const runner = makeRunner({ worker: fixture("throws-in-call"), worldSize: 2 });
    await runner.start();
    const error = await runner.invoke({ n: 7 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RankError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 1, phase: "call", remoteName: "RangeError" });
    expect((error as Error).message).toContain("rank 1 rejects n=7");
    expect((error as RankError).remoteStack).toContain("throws-in-call.ts");
    // The runner stays usable, and gatherErrors has it (once).
    expect(runner.isAlive()).toBe(true);
    const gathered = runner.gatherErrors();
    expect(gathered).toHaveLength(1);
    expect(gathered[0]).toMatchObject({ rank: 1, phase: "call", remoteName: "RangeError" });
    expect(runner.gatherErrors()).toEqual([]);
  });

  it("names every failing rank when several fail the same request", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 4 });
    await runner.start();
    const error = await runner.invoke({ op: "throw", ranks: [1, 3] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RankGroupError);
    expect((error as RankGroupError).errors.map((e) => e.rank).sort()).toEqual([1, 3]);
    expect((error as RankGroupError).errors[0]).toMatchObject({ remoteCode: "E_PROBE", remoteName: "TypeError" });
  });

  it("start rejects with the setup error and leaves no process", async () => {
    const runner = makeRunner({ worker: fixture("throws-in-setup"), worldSize: 2 });
    const error = await runner.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 1, phase: "setup", remoteName: "ShardLoadError" });
    expect((error as RankError).remoteStack).toContain("throws-in-setup.ts");
    expect(runner.state).toBe("failed");
    expect(childPids()).toEqual([]);
  });

  it("start gathers setup errors of several ranks", async () => {
    const runner = makeRunner({ worker: fixture("throws-in-setup"), worldSize: 4 });
    const error = await runner.start({ failRanks: [0, 2] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RankGroupError);
    expect((error as RankGroupError).errors.map((e) => e.rank).sort()).toEqual([0, 2]);
    expect(childPids()).toEqual([]);
  });

  it("a module that is not a worker fails start with a clear message", async () => {
    const runner = makeRunner({ worker: fixture("not-a-worker"), worldSize: 1 });
    const error = await runner.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ rank: 0, phase: "setup", remoteCode: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    expect((error as Error).message).toMatch(/must default-export a class that extends DistributedWorker/);
  });

  it("a start timeout rejects with MULTIRANK_ERR_TIMEOUT and kills the ranks", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await expect(runner.start({ timeout: 0.001 })).rejects.toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
    expect(childPids()).toEqual([]);
  });
});

describe("bad input", () => {
  it("refuses an unpackable payload before sending anything", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    await expect(runner.invoke({ op: "echo", value: () => 1 })).rejects.toBeInstanceOf(SerializationError);
    await expect(runner.invoke({ op: "echo", value: Symbol("s") })).rejects.toMatchObject({ code: "MULTIRANK_ERR_SERIALIZATION" });
    // Nothing was sent, so the next request is request number... whatever: it just works, and rank order is intact.
    expect(await runner.invoke({ op: "echo", value: "fine" })).toBe("fine");
  });

  it("a result that cannot be packed fails the request on the rank, not the runner", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    await expect(runner.invoke({ op: "unpackable" })).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANK", remoteCode: "MULTIRANK_ERR_SERIALIZATION" });
    expect(runner.isAlive()).toBe(true);
  });

  it("refuses a message over maxMessageBytes with its size and the limit, both ways", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, maxMessageBytes: 64 * 1024 });
    await runner.start();
    const error = await runner.invoke({ op: "echo", value: Buffer.alloc(100_000) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MessageTooLargeError);
    expect(error).toMatchObject({ limit: 64 * 1024 });
    expect((error as MessageTooLargeError).size).toBeGreaterThan(100_000);
    await expect(runner.invoke({ op: "bytes", size: 100_000 })).rejects.toMatchObject({ remoteCode: "MULTIRANK_ERR_MESSAGE_TOO_LARGE" });
    expect(await runner.invoke({ op: "echo", value: 1 })).toBe(1);
  });

  it("ignores a foreign ZeroMQ peer sending garbage to the control socket; in-flight requests are unaffected", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, transport: "ipc" });
    await runner.start();
    expect(runner.endpoint).toMatch(/^ipc:\/\//);
    expect(runner.getZmqSocket()).toBeInstanceOf(Router);
    const inFlight = runner.invoke({ op: "sleep", ms: 300 });
    const intruder = new Dealer({ linger: 0 });
    try {
      intruder.connect(runner.endpoint!);
      for (const garbage of [Buffer.from("not msgpack \xff\xfe"), Buffer.alloc(0), Buffer.from([0xc1]), Buffer.from([0x81, 0xa1, 0x74, 0xa4, 0x64, 0x6f, 0x6e, 0x65])]) {
        await intruder.send(garbage);
      }
      // A peer pretending to be a rank by its message shape still has the wrong identity.
      await intruder.send([Buffer.from("r0-deadbeef"), Buffer.from("x")]);
    } finally {
      intruder.close();
    }
    expect(await inFlight).toEqual({ slept: 300, rank: 0 });
    expect(await runner.invoke({ op: "echo", value: "still fine" })).toBe("still fine");
  });

  it("ignores foreign connections to the unix control socket, framed or not; in-flight requests are unaffected", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    expect(runner.endpoint).toMatch(/^unix:\//);
    expect(() => runner.getZmqSocket()).toThrow(/unix stream socket.*transport: "ipc"/);
    const path = runner.endpoint!.slice("unix:".length);
    const inFlight = runner.invoke({ op: "sleep", ms: 300 });
    const frame = (...frames: Buffer[]): Buffer => encodeMessage(frames);
    const attempts = [
      // Not framed at all: the length it implies is over the limit.
      Buffer.from("not msgpack \xff\xfe".repeat(4)),
      // Framed, but the first message is no identity.
      Buffer.concat([frame(), frame(Buffer.from("x"))]),
      // A made-up rank identity, then garbage and a message shaped like a rank's.
      Buffer.concat([frame(Buffer.from("r0-deadbeef")), frame(Buffer.from([0xc1])), frame(Buffer.alloc(0)), frame(Buffer.from([0x81, 0xa1, 0x74, 0xa4, 0x64, 0x6f, 0x6e, 0x65]))]),
      // A frame table that does not add up.
      Buffer.from([6, 0, 0, 0, 1, 0, 99, 0, 0, 0]),
    ];
    for (const bytes of attempts) {
      const socket = net.connect(path);
      socket.on("error", () => {});
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      // Flushed into the runner's receive queue (or refused by it) before the next attempt.
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.end(bytes, () => resolve());
      });
      socket.destroy();
    }
    expect(await inFlight).toEqual({ slept: 300, rank: 0 });
    expect(await runner.invoke({ op: "echo", value: "still fine" })).toBe("still fine");
  });

  it("a caller's onProgress that throws breaks neither that request nor the runner", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    const onProgress = (): void => {
      throw new Error("caller bug");
    };
    const warned = new Promise((resolve) => process.once("warning", resolve));
    expect(await runner.invoke({ op: "progress", steps: 2 }, { onProgress })).toBe("done");
    expect(String(await warned)).toContain("caller bug");
    expect(await runner.invoke({ op: "echo", value: "next" })).toBe("next");
  });

  it("setup arguments that cannot be packed fail start at once, before any process exists", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await expect(runner.start({ callback: () => 1 })).rejects.toMatchObject({ code: "MULTIRANK_ERR_SERIALIZATION" });
    expect(childPids()).toEqual([]);
    await runner.start({ model: "fine" });
    expect(runner.isAlive()).toBe(true);
  });

  it("stop() still cleans up after the control socket was closed by hand", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    runner.closeZmqSocket();
    await runner.stop({ timeout: 0.5 });
    expect(runner.state).toBe("stopped");
    expect(childPids()).toEqual([]);
  });

  it("ranks exit by themselves once the unix control socket is closed, and an in-flight request fails", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const inFlight = runner.invoke({ op: "sleep", ms: 10_000 }).catch((e: unknown) => e);
    runner.closeZmqSocket();
    expect(await waitFor(() => childPids().length === 0, 15_000)).toBe(true);
    expect(await inFlight).toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT" });
    await runner.stop({ timeout: 0.5 });
    expect(runner.state).toBe("stopped");
  });

  it("rejects invalid options naming the field", async () => {
    const { DistributedRunner } = await import("../../src/index.js");
    expect(() => new DistributedRunner({ worker: fixture("probe"), worldSize: 0 })).toThrow(/options.worldSize must be a positive integer/);
    expect(() => new DistributedRunner({ worker: "", worldSize: 1 })).toThrow(/options.worker/);
    expect(() => new DistributedRunner({ worker: "x.ts", masterPort: 70000 })).toThrow(/options.masterPort/);
    expect(() => new DistributedRunner({ worker: "x.ts", keepaliveInterval: -1 })).toThrow(/options.keepaliveInterval/);
    const runner = makeRunner({ worker: fixture("probe") });
    await expect(runner.invoke({})).rejects.toMatchObject({ code: "MULTIRANK_ERR_STATE" });
  });
});
