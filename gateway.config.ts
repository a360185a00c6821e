/**
 * The apps `npm start` (`multirank serve`) serves. Copy an entry to add your
 * own worker; relative worker paths resolve against this file's folder.
 * Machine types: cpu, cpu-x<N> (N ranks on the CPU), gpu, gpu-x<N> (one GPU
 * per rank; loading fails with a clear message when the host has fewer).
 */
import { existsSync } from "node:fs";
import { defineApp, defineGatewayConfig } from "multirank";

const apps = [
  defineApp({
    name: "multirank/echo",
    title: "Echo: returns its input",
    worker: "./workers/echo.ts",
    machineType: "cpu-x2",
    keepAlive: 300, // idle seconds before the runner stops (scale to zero)
    concurrency: 8,
    exampleInput: { text: "hello from two ranks" },
  }),
  defineApp({
    name: "multirank/text-stream",
    title: "Text stream: tokens as they are made",
    worker: "./workers/text-stream.ts",
    machineType: "cpu-x2",
    keepAlive: 60,
    maxRunners: 2, // a second runner starts when the first is busy
    timeout: 120, // seconds per request; ctx.progress() extends it
    exampleInput: { prompt: "once upon a time", maxTokens: 40, delayMs: 40 },
  }),
  defineApp({
    name: "multirank/image-stream",
    title: "Image stream: JPEG frames refined step by step",
    worker: "./workers/image-stream.ts",
    machineType: "cpu-x2",
    keepAlive: 60,
    exampleInput: { steps: 8, size: 384, seed: 1 },
  }),
];

if (existsSync(new URL("./workers/sharded-mlp.ts", import.meta.url))) {
  apps.push(
    defineApp({
      name: "multirank/sharded-mlp",
      title: "Sharded MLP: one model split across ranks",
      worker: "./workers/sharded-mlp.ts",
      machineType: process.env.MULTIRANK_MLP_MACHINE === "gpu-x2" ? "gpu-x2" : "cpu-x2",
      keepAlive: 60,
      setupArgs: { seed: 7, dims: { model: 8, hidden: 32, blocks: 2 } },
      exampleInput: { x: [1, 0, 0, 0, 0, 0, 0, 1] },
    }),
  );
}

export default defineGatewayConfig({
  apps,
  // keys: [process.env.GATEWAY_KEY!],   // then send Authorization: Key <id>:<secret>
});
