/**
 * The project: what `npm run dev`, `npm start`, `npm run build` and
 * `npm run deploy` read. Apps are DistributedWorker modules; functions are
 * what remote() returns, each served as the app fn/<name>. Relative worker
 * paths resolve against this file's folder.
 */
import { defineApp, defineConfig } from "multirank";
import { sumNumbers } from "./functions/math.js";

export default defineConfig({
  apps: [
    defineApp({
      name: "{{name}}/text-stream",
      title: "Text stream: tokens as they are made",
      worker: "./workers/text-stream.ts",
      machineType: "cpu", // one rank on the CPU; "gpu", "gpu-x2", "cpu-x2" ask for more
      keepAlive: 60, // idle seconds before the runner stops (scale to zero)
      exampleInput: { prompt: "once upon a time", maxTokens: 12 },
    }),
  ],
  functions: [sumNumbers],
});
