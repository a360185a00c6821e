/**
 * Tokens per second of the LLM app (workers/llm.ts) through `runner.stream`,
 * one event per token, against node-llama-cpp called directly in this
 * process, in the same run: same model, prompt, seed, maxTokens and threads.
 * The two alternate, several rounds, and each side's median counts, so a
 * busy machine's drift hits both. Target (issue 18): going through a rank
 * costs at most 5% (ratio >= 0.95).
 *
 * The tiny model by default (so the per-token cost of the rank path is as
 * large a share as it gets); MULTIRANK_LLM_MODEL=/path/model.gguf for a real
 * one. Needs the engine: `npx multirank engine install llama`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner, loadLlamaEngine, writeTinyLlamaModel } from "multirank";
import { msSince, now, QUICK, report, row, type BenchRow } from "./lib/index.js";

const WORKER = fileURLToPath(new URL("../workers/llm.ts", import.meta.url));
const MAX_TOKENS = QUICK ? 128 : 512;
const ROUNDS = QUICK ? 3 : 7;
const THREADS = 1;
const INPUT = { prompt: "Once upon a time", maxTokens: MAX_TOKENS, temperature: 0.8, seed: 1 };

export async function main(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), "multirank-bench-llm-"));
  const model = process.env.MULTIRANK_LLM_MODEL || join(scratch, "tiny.gguf");
  if (!process.env.MULTIRANK_LLM_MODEL) writeTinyLlamaModel(model, { seed: 0 });
  const { module } = await loadLlamaEngine({ install: false });
  const llama = await module.getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: THREADS, logLevel: "warn", progressLogs: false });
  const loaded = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
  const context = await loaded.createContext({ contextSize: 2048, threads: THREADS });
  const completion = new module.LlamaCompletion({ contextSequence: context.getSequence() });
  const runner = new DistributedRunner({ worker: WORKER, worldSize: 1, devices: "cpu", logger: pino({ level: "warn" }) });
  await runner.start({ model, threads: THREADS });
  const direct: number[] = [];
  const ranked: number[] = [];
  let tokens = 0;
  try {
    const viaDirect = async (): Promise<number> => {
      let count = 0;
      const t = now();
      await completion.generateCompletion(INPUT.prompt, { ...INPUT, onToken: (generated) => (count += generated.length) });
      tokens = count;
      return count / (msSince(t) / 1000);
    };
    const viaRank = async (): Promise<number> => {
      let events = 0;
      const t = now();
      for await (const _ of runner.stream(INPUT, { asTextEvents: true })) events++;
      // The last event is the result; the others are one per token.
      return (events - 1) / (msSince(t) / 1000);
    };
    await viaDirect(); // warm-up: first decode allocates buffers
    await viaRank();
    for (let round = 0; round < ROUNDS; round++) {
      direct.push(await viaDirect());
      ranked.push(await viaRank());
    }
  } finally {
    await runner.stop();
    completion.dispose();
    await context.dispose();
    await loaded.dispose();
    await llama.dispose();
    rmSync(scratch, { recursive: true, force: true });
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const rows = [
    row({
      name: "tokens/s through runner.stream (median of rounds)",
      value: median(ranked),
      unit: "tokens/s",
      baselineName: "node-llama-cpp in this process",
      baseline: median(direct),
      lowerIsBetter: false,
      target: { min: 0.95 },
      extra: { tokens, rounds: ROUNDS, threads: THREADS, directRange: `${Math.min(...direct).toFixed(0)}-${Math.max(...direct).toFixed(0)}`, rankRange: `${Math.min(...ranked).toFixed(0)}-${Math.max(...ranked).toFixed(0)}` },
    }),
  ];
  report("llm", rows, { model: process.env.MULTIRANK_LLM_MODEL ? model : "tiny (seed 0)", maxTokens: MAX_TOKENS });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
