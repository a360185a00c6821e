/**
 * The example apps `multirank serve` runs when no config is given: the
 * workers in `workers/`, two CPU ranks each. `sharded-mlp` joins when its
 * worker exists (on GPUs when the host has two, else on the CPU). `llm` is
 * one rank per runner: one runner per GPU on a GPU host (each sees only its
 * own GPU), else one runner on the CPU.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineApp, type AppDefinition } from "./app.js";

// src/gateway and dist/gateway are both two levels below the package root.
const workerPath = (name: string): string => fileURLToPath(new URL(`../../workers/${name}.ts`, import.meta.url));

/**
 * The example apps.
 * @param options.gpuCount GPUs on this host (sharded-mlp uses two when there are, llm one per runner). @default 0
 */
export function exampleApps(options: { gpuCount?: number } = {}): AppDefinition[] {
  const gpuCount = options.gpuCount ?? 0;
  const apps = [
    defineApp({
      name: "multirank/echo",
      title: "Echo: returns its input",
      worker: workerPath("echo"),
      machineType: "cpu-x2",
      keepAlive: 300,
      maxRunners: 1,
      concurrency: 8,
      exampleInput: { text: "hello from two ranks" },
    }),
    defineApp({
      name: "multirank/text-stream",
      title: "Text stream: tokens as they are made",
      worker: workerPath("text-stream"),
      machineType: "cpu-x2",
      keepAlive: 60,
      maxRunners: 2,
      exampleInput: { prompt: "once upon a time", maxTokens: 40, delayMs: 40 },
    }),
    defineApp({
      name: "multirank/image-stream",
      title: "Image stream: JPEG frames refined step by step",
      worker: workerPath("image-stream"),
      machineType: "cpu-x2",
      keepAlive: 60,
      maxRunners: 1,
      exampleInput: { steps: 8, size: 384, seed: 1 },
    }),
    defineApp({
      name: "multirank/llm",
      title: "LLM: llama.cpp tokens as they are made (a tiny model unless MULTIRANK_LLM_MODEL names one)",
      worker: workerPath("llm"),
      // One model per runner and one runner per GPU; CUDA_VISIBLE_DEVICES keeps llama.cpp on the runner's GPU.
      machineType: gpuCount > 0 ? "gpu" : "cpu",
      isolateDevices: true,
      keepAlive: 120,
      // On the CPU one runner uses every core: a second would only split them.
      maxRunners: Math.max(1, gpuCount),
      exampleInput: { prompt: "Once upon a time", maxTokens: 64, temperature: 0.8, seed: 1 },
    }),
  ];
  if (existsSync(workerPath("sharded-mlp"))) {
    apps.push(
      defineApp({
        name: "multirank/sharded-mlp",
        title: "Sharded MLP: one model split across ranks",
        worker: workerPath("sharded-mlp"),
        machineType: (options.gpuCount ?? 0) >= 2 ? "gpu-x2" : "cpu-x2",
        keepAlive: 60,
        maxRunners: 1,
        setupArgs: { seed: 7, dims: { model: 8, hidden: 32, blocks: 2 } },
        exampleInput: { x: [1, 0, 0, 0, 0, 0, 0, 1] },
      }),
    );
  }
  return apps;
}
