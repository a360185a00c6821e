import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { waitFor } from "../helpers/processes.js";
import { childPids } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe.each([1, 2, 4])("a world of %i", (worldSize) => {
  it("starts every rank with torchrun's variables, answers from rank 0 and stops clean", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize, env: { PROBE_SECRET: "s3cret" } });
    await runner.start({ model: "tiny", shards: worldSize });
    expect(runner.state).toBe("ready");
    expect(runner.isAlive()).toBe(true);
    expect(childPids().sort()).toEqual([...runner.pids].sort());

    const me = await runner.invoke<{ rank: number; worldSize: number; env: Record<string, string>; setupArgs: unknown }>({ op: "whoami" });
    expect(me.rank).toBe(0);
    expect(me.worldSize).toBe(worldSize);
    expect(me.setupArgs).toEqual({ model: "tiny", shards: worldSize });
    expect(me.env).toMatchObject({ RANK: "0", LOCAL_RANK: "0", WORLD_SIZE: String(worldSize), MASTER_ADDR: "127.0.0.1", SECRET: "s3cret" });
    expect(Number(me.env.MASTER_PORT)).toBeGreaterThan(0);

    await runner.stop();
    expect(runner.state).toBe("stopped");
    expect(childPids()).toEqual([]);
  });
});

describe("payloads and results", () => {
  it("carries Buffers and typed arrays as the same types, without base64", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const value = { buf: Buffer.from([1, 2, 3]), f32: new Float32Array([0.5, -1]), i32: new Int32Array([7]), nested: { list: [1, "two", null] } };
    const echoed = await runner.invoke<typeof value>({ op: "echo", value });
    expect(Buffer.isBuffer(echoed.buf)).toBe(true);
    expect([...echoed.buf]).toEqual([1, 2, 3]);
    expect(echoed.f32).toBeInstanceOf(Float32Array);
    expect([...echoed.f32]).toEqual([0.5, -1]);
    expect(echoed.i32).toBeInstanceOf(Int32Array);
    expect(echoed.nested).toEqual({ list: [1, "two", null] });
    // Both ways (runner to rank, rank to runner) a Map stays a Map, keys of any type kept.
    const map = new Map<unknown, unknown>([["a", 1], [2, { b: new Set([3]) }]]);
    expect(await runner.invoke({ op: "echo", value: { map } })).toStrictEqual({ map });

    const big = await runner.invoke<{ data: Buffer; floats: Float32Array }>({ op: "bytes", size: 4 * 1024 * 1024 });
    expect(big.data.length).toBe(4 * 1024 * 1024);
    expect(big.data[12345]).toBe(7);
    expect(big.floats).toBeInstanceOf(Float32Array);
  });

  it("pipelines concurrent invokes and runs them on every rank in one order", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const results = await Promise.all(Array.from({ length: 20 }, (_, tag) => runner.invoke<number[]>({ op: "order", tag })));
    // Each rank saw the tags in submission order; rank 0's list at the last request is the full order.
    expect(results[19]).toEqual(Array.from({ length: 20 }, (_, i) => i));
    results.forEach((seen, tag) => expect(seen).toEqual(Array.from({ length: tag + 1 }, (_, i) => i)));
  });

  it("runs runInWorker functions and forwards progress and request logs", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    expect(await runner.invoke({ op: "runInWorker" })).toBe(5);

    const progress: unknown[] = [];
    expect(await runner.invoke({ op: "progress", steps: 3 }, { onProgress: (p) => progress.push(p) })).toBe("done");
    expect(progress).toEqual([{ step: 1, of: 3 }, { step: 2, of: 3 }, { step: 3, of: 3 }]);

    const logs: Array<{ msg: string; rank: number }> = [];
    await runner.invoke({ op: "log", message: "loading shard" }, { onLog: (l) => logs.push(l) });
    expect(logs.map((l) => l.msg)).toContain("loading shard");
  });

  it("reports each rank's device", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, devices: "cpu" });
    await runner.start();
    expect(runner.devices).toHaveLength(2);
    for (const device of runner.devices) expect(device.kind).toBe("cpu");
  });
});

describe("worker modules and rank output", () => {
  it("runs a .ts worker from a project without \"type\": \"module\"", async () => {
    const worker = fileURLToPath(new URL("../fixtures/cjs-project/worker.ts", import.meta.url));
    const runner = makeRunner({ worker, worldSize: 2 });
    await runner.start();
    expect(await runner.invoke({ a: 21 })).toEqual({ b: 42 });
  });

  it("relays each rank's stdout and stderr to the runner's logger, tagged with the rank", async () => {
    const records: Array<{ rank?: number; stream?: string; msg: string; level: number }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void records.push(JSON.parse(line)) });
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, logger });
    await runner.start();
    await runner.invoke({ op: "print", text: "hello" });
    // Relayed lines trail the answer; the bound is for a busy machine, not an expectation.
    expect(await waitFor(() => records.filter((r) => r.msg.startsWith("hello")).length === 4, 15_000)).toBe(true);
    const lines = records.filter((r) => r.msg.startsWith("hello"));
    expect(lines).toContainEqual(expect.objectContaining({ rank: 1, stream: "stdout", msg: "hello (stdout of rank 1)", level: 30 }));
    expect(lines).toContainEqual(expect.objectContaining({ rank: 0, stream: "stderr", msg: "hello (stderr of rank 0)", level: 40 }));
  });
});
