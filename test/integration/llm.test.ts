/**
 * The LLM app (workers/llm.ts) on the tiny model: the engine's determinism,
 * the app through the gateway with fal's and Runpod's clients, a cancel that
 * stops generation at the rank, and two runners for two concurrent requests.
 * Needs the engine (test/helpers/llama-engine.ts says where it is found).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import runpodSdk from "runpod-sdk";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { loadLlamaEngine, writeTinyLlamaModel } from "../../src/index.js";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, exampleWorker, falClient, startGateway } from "../fixtures/gateway/harness.js";
import { describeWithLlamaEngine, requireLlamaEngine } from "../helpers/llama-engine.js";
import { cleanUpRunners, example, makeRunner } from "../helpers/runners.js";

let scratch: string;
let model: string;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "multirank-llm-"));
  model = join(scratch, "tiny.gguf");
  writeTinyLlamaModel(model, { seed: 0 });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// One thread per rank: two ranks on a busy 2-core machine would otherwise fight over the same cores.
const setupArgs = (): Record<string, unknown> => ({ model, threads: 1 });

describeWithLlamaEngine("llm: the engine on the tiny model", () => {
  beforeAll(() => {
    requireLlamaEngine();
  });

  it("the same seed gives the same tokens, another seed others; a rank makes the same text as the engine called directly", async () => {
    const { module } = await loadLlamaEngine({ install: false });
    const llama = await module.getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: 1, logLevel: "warn", progressLogs: false });
    const loaded = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
    const context = await loaded.createContext({ contextSize: 512, threads: 1 });
    const completion = new module.LlamaCompletion({ contextSequence: context.getSequence() });
    const run = (seed: number): Promise<string> => completion.generateCompletion("hello there", { maxTokens: 24, temperature: 0.8, seed });
    try {
      const first = await run(7);
      expect(first.length).toBeGreaterThan(0);
      expect(await run(7)).toBe(first);
      expect(await run(8)).not.toBe(first);
      const runner = makeRunner({ worker: example("llm"), worldSize: 1, devices: "cpu" });
      await runner.start(setupArgs());
      const viaRank = (await runner.invoke({ prompt: "hello there", maxTokens: 24, temperature: 0.8, seed: 7 })) as { text: string; tokens: number };
      expect(viaRank.text).toBe(first);
      expect(viaRank.tokens).toBe(24);
    } finally {
      completion.dispose();
      await context.dispose();
      await loaded.dispose();
      await llama.dispose();
    }
  });
});

describeWithLlamaEngine("llm: cancelling at the rank", () => {
  cleanUpRunners();
  beforeAll(() => {
    requireLlamaEngine();
  });

  it("breaking out of the stream stops generation in the rank long before maxTokens, and the rank serves the next request", async () => {
    const records: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n")) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const runner = makeRunner({ worker: example("llm"), worldSize: 1, devices: "cpu", logger: pino({ level: "info" }, sink) });
    await runner.start(setupArgs());
    const maxTokens = 30_000;
    let seen = 0;
    for await (const item of runner.stream({ prompt: "a long story", maxTokens, seed: 3 })) {
      expect(item).toMatchObject({ index: seen });
      if (++seen === 5) break;
    }
    // The rank logs where it stopped; waiting on the record, not a sleep.
    await expect.poll(() => records.find((r) => r.msg === "generation stopped: the request was cancelled"), { timeout: 30_000 }).toBeDefined();
    const stopped = records.find((r) => r.msg === "generation stopped: the request was cancelled")!;
    expect(stopped.tokens as number).toBeGreaterThanOrEqual(5);
    expect(stopped.tokens as number).toBeLessThan(maxTokens);
    const next = (await runner.invoke({ prompt: "again", maxTokens: 4 })) as { tokens: number };
    expect(next.tokens).toBe(4);
  });
});

describeWithLlamaEngine("llm: the app through the gateway", () => {
  const KEY = "kid:ksecret";
  const RUNPOD_KEY = "rp-secret-key";
  let url: string;
  cleanUpGateways("all");

  beforeAll(async () => {
    requireLlamaEngine();
    vi.spyOn(console, "log").mockImplementation(() => {}); // runpod-sdk prints each poll
    ({ url } = await startGateway({
      apps: [defineApp({ name: "test/llm", worker: exampleWorker("llm"), machineType: "cpu", isolateDevices: true, maxRunners: 2, keepAlive: 60, setupArgs: setupArgs() })],
      keys: [KEY, RUNPOD_KEY],
      streamHoldMs: 2000,
    }));
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it("fal.stream: one event per token as it is made, then the whole text", async () => {
    const fal = falClient(url, KEY);
    const stream = await fal.stream("test/llm", { input: { prompt: "Once upon a time", maxTokens: 12, seed: 1 } });
    const events: any[] = [];
    for await (const event of stream) events.push(event);
    const output = await stream.done();
    expect(output).toMatchObject({ tokens: 12, seed: 1, device: "cpu" });
    const tokens = events.filter((e) => typeof e.delta === "string");
    expect(tokens.map((e) => e.index)).toEqual([...tokens.keys()]);
    expect(tokens.map((e) => e.delta).join("")).toBe(output.text);
  });

  it("runpod-sdk: run + stream yields the tokens, then the output", async () => {
    const sdk = runpodSdk(RUNPOD_KEY, { baseUrl: `${url}/v2` });
    const llm = sdk.endpoint("test--llm")!;
    const { id } = await llm.run({ input: { prompt: "Once upon a time", maxTokens: 8, seed: 1 } });
    const chunks: any[] = [];
    for await (const chunk of llm.stream(id)) chunks.push(chunk);
    const final = chunks.at(-1).output;
    expect(final).toMatchObject({ tokens: 8 });
    expect(chunks.slice(0, -1).map((c) => c.output.delta).join("")).toBe(final.text);
  });

  it("two concurrent requests on a maxRunners: 2 app run on two runners", async () => {
    const sdk = runpodSdk(RUNPOD_KEY, { baseUrl: `${url}/v2` });
    const llm = sdk.endpoint("test--llm")!;
    const input = { prompt: "two at once", maxTokens: 400, seed: 2 };
    const [a, b] = await Promise.all([llm.run({ input }), llm.run({ input })]);
    const workers = new Set<string>();
    // Both are in progress at once (each holds its runner), so each has its own.
    await expect
      .poll(async () => {
        const [sa, sb] = await Promise.all([llm.status(a.id), llm.status(b.id)]);
        for (const s of [sa, sb] as any[]) if (s.workerId) workers.add(s.workerId);
        return [sa.status, sb.status].every((s) => s === "COMPLETED");
      }, { timeout: 120_000, interval: 50 })
      .toBe(true);
    expect(workers.size).toBe(2);
    const outputs = await Promise.all([llm.status(a.id), llm.status(b.id)]);
    // Same seed and input on two runners: the same text.
    expect((outputs[0] as any).output.text).toBe((outputs[1] as any).output.text);
  });
});
