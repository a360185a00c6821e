/** Gateway parts that need no process: apps, machine types, keys, proxy form, queue, job state machine. */
import { describe, expect, it } from "vitest";
import { KeyChecker, keyFromHeader } from "../../src/gateway/auth.js";
import { defineApp, parseMachineType, resolveApp, MemoryJobQueue } from "../../src/gateway/index.js";
import { formatTextEvent } from "../../src/codec/text-events.js";
import { eventToJson, Job } from "../../src/gateway/job.js";
import { proxyTarget } from "../../src/gateway/proxy.js";

const job = (id: string, priority: "normal" | "low" = "normal"): Job => new Job({ id, app: "a/b", input: {}, priority, streaming: false, timeoutMs: 1000 });

describe("defineApp", () => {
  it("fills defaults and freezes", () => {
    const app = defineApp({ name: "acme/echo", worker: "./w.ts" });
    expect(app).toMatchObject({ keepAlive: 10, minRunners: 0, maxRunners: 1, timeout: 300, retries: { max: 0, on: ["crash"] }, startupTimeout: 1800 });
    expect(Object.isFrozen(app)).toBe(true);
  });

  it.each([
    [{ name: "noslash", worker: "w.ts" }, "options.name"],
    [{ name: "a/b", worker: "" }, "options.worker"],
    [{ name: "a/b", worker: "w.ts", worldSize: 0 }, "options.worldSize"],
    [{ name: "a/b", worker: "w.ts", worldSize: 2, machineType: "cpu" }, "exclusive"],
    [{ name: "a/b", worker: "w.ts", machineType: "tpu" }, "options.machineType"],
    [{ name: "a/b", worker: "w.ts", minRunners: 3, maxRunners: 2 }, "options.minRunners"],
    [{ name: "a/b", worker: "w.ts", retries: { on: ["sometimes"] } }, "options.retries.on"],
    [{ name: "a/b", worker: "w.ts", timeout: -1 }, "options.timeout"],
  ])("refuses %j naming the field", (options, field) => {
    expect(() => defineApp(options as never)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining(field) }));
  });
});

describe("machine types", () => {
  it("resolve to a world size and device kind", () => {
    expect(parseMachineType("cpu")).toEqual({ worldSize: 1, gpu: false });
    expect(parseMachineType("cpu-x4")).toEqual({ worldSize: 4, gpu: false });
    expect(parseMachineType("gpu-x2")).toEqual({ worldSize: 2, gpu: true });
  });

  it("more GPUs than the host has fails at load, with the reason there are none", () => {
    const app = defineApp({ name: "a/b", worker: "w.ts", machineType: "gpu" });
    expect(() => resolveApp(app, { gpuCount: 0, noGpuReason: "libcuda.so.1 not found", baseDir: "/" })).toThrow(/needs 1 GPU per runner but this host has 0 \(libcuda.so.1 not found\)/);
    expect(resolveApp(app, { gpuCount: 1, baseDir: "/srv" })).toMatchObject({ worldSize: 1, gpusPerRunner: 1, workerPath: "/srv/w.ts" });
  });

  it("secrets come from the environment and a missing one fails at load", () => {
    const app = defineApp({ name: "a/b", worker: "w.ts", secrets: ["HF_TOKEN"], env: { A: "1" } });
    expect(resolveApp(app, { gpuCount: 0, baseDir: "/", environment: { HF_TOKEN: "t" } }).rankEnv).toEqual({ A: "1", HF_TOKEN: "t" });
    expect(() => resolveApp(app, { gpuCount: 0, baseDir: "/", environment: {} })).toThrow(/secret HF_TOKEN is not set/);
  });
});

describe("keys and the proxy form", () => {
  it("accepts Key, Bearer and bare keys; auth is off with no keys", () => {
    const keys = new KeyChecker(["id:secret"]);
    expect(keys.check("Key id:secret")).toBe(true);
    expect(keys.check("Bearer id:secret")).toBe(true);
    expect(keys.check("id:secret")).toBe(true);
    expect(keys.check("Key id:other")).toBe(false);
    expect(keys.check(undefined)).toBe(false);
    expect(new KeyChecker([]).check(undefined)).toBe(true);
    expect(keyFromHeader("Key a b")).toBeUndefined();
  });

  it("maps x-fal-target-url onto the gateway's routes", () => {
    expect(proxyTarget("/fal/proxy", "https://fal.run/a/b")).toBe("/fal/run/a/b");
    expect(proxyTarget("/api/fal/proxy", "https://queue.fal.run/a/b/requests/1/status?logs=1")).toBe("/fal/queue/a/b/requests/1/status?logs=1");
    expect(proxyTarget("/fal/proxy", "https://evil.example/a/b")).toBe("/fal/proxy");
    expect(proxyTarget("/fal/run/a/b", "https://queue.fal.run/x")).toBe("/fal/run/a/b");
  });
});

describe("MemoryJobQueue", () => {
  it("serves normal before low, oldest first, retries at the head", () => {
    const queue = new MemoryJobQueue();
    const [a, b, c, d] = [job("a"), job("b", "low"), job("c"), job("d")];
    for (const j of [a, b, c]) queue.push(j);
    expect(queue.position(b)).toBe(2);
    queue.unshift(d);
    expect([queue.shift(), queue.shift(), queue.shift(), queue.shift()].map((j) => j?.id)).toEqual(["d", "a", "c", "b"]);
    expect(queue.shift()).toBeUndefined();
  });

  it("removes and drains", () => {
    const queue = new MemoryJobQueue();
    const [a, b] = [job("a"), job("b", "low")];
    queue.push(a);
    queue.push(b);
    expect(queue.remove(a)).toBe(true);
    expect(queue.remove(a)).toBe(false);
    expect(queue.drain().map((j) => j.id)).toEqual(["b"]);
    expect(queue.length).toBe(0);
  });
});

describe("Job", () => {
  it("moves IN_QUEUE → IN_PROGRESS → COMPLETED and keeps JSON once", async () => {
    const j = job("x");
    const statuses: string[] = [];
    j.on("status", (s) => statuses.push(s));
    j.start("w-1");
    j.pushChunk(Buffer.from('data: {"token":"a"}\n\n'));
    j.complete({ text: "a", image: { content_type: "image/jpeg", data: new Uint8Array([1, 2]) } });
    expect(statuses).toEqual(["IN_PROGRESS", "COMPLETED"]);
    expect(JSON.parse(j.outputJson!)).toEqual({ text: "a", image: { content_type: "image/jpeg", url: "data:image/jpeg;base64,AQI=" } });
    expect(await j.takeChunks()).toEqual(['{"token":"a"}']);
    expect(await j.takeChunks()).toEqual([]);
    expect(await j.done).toBe(j);
    expect(j.cancel()).toBe(false);
  });

  it("holds at most chunkHighWaterMark bytes of unread chunks: past it the producer waits for a reader", async () => {
    const j = new Job({ id: "hwm", app: "a", input: {}, priority: "normal", streaming: true, timeoutMs: 1000, chunkHighWaterMark: 1024 });
    j.start("w-1");
    const chunk = JSON.stringify("x".repeat(600));
    expect(j.pushChunk(chunk)).toBeUndefined();
    const wait = j.pushChunk(chunk);
    expect(wait).toBeInstanceOf(Promise);
    let resumed = false;
    void wait!.then(() => (resumed = true));
    await Promise.resolve();
    expect(resumed).toBe(false);
    expect((await j.takeFrame())?.toString()).toBe(`data: ${chunk}\n\n`); // one taken: back under the mark
    await wait;
    expect(await j.takeChunks()).toEqual([chunk]);
    // A cancel drops what nobody will read and never leaves the producer waiting.
    j.pushChunk(chunk);
    const parked = j.pushChunk(chunk)!;
    j.cancel();
    await parked;
    expect(await j.unreadChunks()).toBe(0);
    expect(j.pushChunk(chunk)).toBeUndefined();
    expect(await j.unreadChunks()).toBe(0);
  });

  it("cancelling a queued job ends it at once; a failed one can be reset for a retry", () => {
    const j = job("y");
    expect(j.cancel()).toBe(true);
    expect(j.status).toBe("CANCELLED");
    expect(j.reset()).toBe(true);
    expect(j.status).toBe("IN_QUEUE");
    j.start("w");
    j.fail("FAILED", { type: "worker_error", message: "boom" });
    expect(j.error).toEqual({ type: "worker_error", message: "boom" });
    expect(j.logs.at(-1)).toMatchObject({ level: "ERROR", message: "boom", source: "gateway" });
  });

  it("a job read back from a shared queue takes on another gateway's states, and a final one queued again gets a new done", async () => {
    const running = job("shared");
    const mirror = job("shared");
    const seen: string[] = [];
    mirror.on("status", (status) => seen.push(status));
    running.start("w-9");
    mirror.restore(running.state);
    running.complete({ n: 1 });
    mirror.restore(running.state);
    expect(await mirror.done).toBe(mirror);
    expect(mirror).toMatchObject({ status: "COMPLETED", outputJson: '{"n":1}', workerId: "w-9", attempts: 1 });
    mirror.restore({ status: "IN_QUEUE", attempts: 0, cancelRequested: false });
    expect(mirror.finished).toBe(false);
    let settled = false;
    void mirror.done.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    mirror.restore({ status: "FAILED", attempts: 1, cancelRequested: false, error: { type: "worker_error", message: "boom" } });
    await mirror.done;
    expect(seen).toEqual(["IN_PROGRESS", "COMPLETED", "IN_QUEUE", "FAILED"]);
    mirror.restoreLogs([{ message: "x", level: "INFO", source: "user", timestamp: new Date(0).toISOString() }]);
    expect(mirror.logs.map((l) => l.message)).toEqual(["x"]);
  });

  it("passes a rank's SSE frame to its reader untouched, and frames JSON text once", async () => {
    const j = new Job({ id: "frames", app: "a", input: {}, priority: "normal", streaming: true, timeoutMs: 1000 });
    j.start("w-1");
    const frame = formatTextEvent({ token: "é" });
    let seen = 0;
    j.on("chunk", () => seen++);
    j.pushChunk(frame);
    j.pushChunk('{"token":"b"}');
    expect(seen).toBe(2);
    expect(await j.takeFrame()).toBe(frame); // the very bytes the rank made
    expect((await j.takeFrame())?.toString()).toBe('data: {"token":"b"}\n\n');
    expect(await j.takeFrame()).toBeUndefined();
  });

  it.each([[{ a: 1, s: "x\ny" }], [undefined], [null], ["text"], [[1, 2]], [{ image: { content_type: "image/png", data: new Uint8Array([0]) } }]])(
    "complete(%s) keeps the JSON a text event of the output carries",
    (output) => {
      const j = job("json");
      j.complete(output);
      expect(j.outputJson).toBe(eventToJson(formatTextEvent(output === undefined ? null : output)));
    },
  );

  it("eventToJson strips the SSE framing", () => {
    expect(eventToJson(Buffer.from('data: {"a":1}\n\n'))).toBe('{"a":1}');
    expect(eventToJson(Buffer.from('data:[1]\n'))).toBe("[1]");
  });
});
