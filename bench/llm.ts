/**
 * Tokens per second of the LLM app (workers/llm.ts) through `runner.stream`,
 * one event per token, against node-llama-cpp called directly in this
 * process, in the same run: same model, prompt, seed, maxTokens and threads.
 * The two alternate, several rounds, and each side's median counts, so a
 * busy machine's drift hits both. Target (issue 18): going through a rank
 * costs at most 5% (ratio >= 0.95).
 *
 * Two generated models by default: the tiny one (the rank path's per-token
 * cost at its largest share) and an 8-layer one with real work per token;
 * MULTIRANK_LLM_MODEL=/path/model.gguf for a real one instead. Needs the engine: `npx multirank engine install llama`.
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

/** The models compared: the tiny one (the rank path's per-token cost at its largest share) and one with hundreds of times the work per token. */
const MODELS = [
  { name: "tiny model (2 layers x 64)", options: { seed: 0 }, maxTokens: MAX_TOKENS, rounds: ROUNDS },
  { name: "generated model (8 layers x 512)", options: { seed: 0, layers: 8, embeddingLength: 512, heads: 8, kvHeads: 8, feedForwardLength: 1376 }, maxTokens: QUICK ? 32 : 64, rounds: QUICK ? 3 : 5 },
] as const;

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Tokens per second of one model, direct and through a rank, alternating rounds. */
async function compare(model: string, name: string, maxTokens: number, rounds: number): Promise<BenchRow> {
  const input = { ...INPUT, maxTokens };
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
      await completion.generateCompletion(input.prompt, { ...input, onToken: (generated) => (count += generated.length) });
      tokens = count;
      return count / (msSince(t) / 1000);
    };
    const viaRank = async (): Promise<number> => {
      let events = 0;
      const t = now();
      for await (const _ of runner.stream(input, { asTextEvents: true })) events++;
      // The last event is the result; the others are one per token.
      return (events - 1) / (msSince(t) / 1000);
    };
    await viaDirect(); // warm-up: first decode allocates buffers
    await viaRank();
    for (let round = 0; round < rounds; round++) {
      direct.push(await viaDirect());
      ranked.push(await viaRank());
    }
  } finally {
    await runner.stop();
    completion.dispose();
    await context.dispose();
    await loaded.dispose();
    await llama.dispose();
  }
  return row({
    name: `tokens/s through runner.stream, ${name}`,
    value: median(ranked),
    unit: "tokens/s",
    baselineName: "node-llama-cpp in this process",
    baseline: median(direct),
    lowerIsBetter: false,
    target: { min: 0.95 },
    extra: { tokens, rounds, threads: THREADS, directRange: `${Math.min(...direct).toFixed(0)}-${Math.max(...direct).toFixed(0)}`, rankRange: `${Math.min(...ranked).toFixed(0)}-${Math.max(...ranked).toFixed(0)}` },
  });
}

export async function main(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), "multirank-bench-llm-"));
  const rows: BenchRow[] = [];
  try {
    if (process.env.MULTIRANK_LLM_MODEL) {
      rows.push(await compare(process.env.MULTIRANK_LLM_MODEL, "MULTIRANK_LLM_MODEL", MAX_TOKENS, ROUNDS));
    } else {
      for (const m of MODELS) {
        const path = join(scratch, `${MODELS.indexOf(m)}.gguf`);
        writeTinyLlamaModel(path, m.options);
        rows.push(await compare(path, m.name, m.maxTokens, m.rounds));
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  report("llm", rows, { threads: THREADS });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
