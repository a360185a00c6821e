#!/usr/bin/env node
// Writes the tiny llama GGUF model (src/llm/tiny-model.ts) to a file, for the
// demo and for trying llama.cpp tools against it. Needs `npm run build:ts`.
//
//   node scripts/make-tiny-model.mjs OUT.gguf [--seed N] [--layers N]
//     [--embedding-length N] [--heads N] [--kv-heads N]
//     [--feed-forward-length N] [--context-length N]
import { parseArgs } from "node:util";

const flags = {
  seed: "seed",
  layers: "layers",
  "embedding-length": "embeddingLength",
  heads: "heads",
  "kv-heads": "kvHeads",
  "feed-forward-length": "feedForwardLength",
  "context-length": "contextLength",
};

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: Object.fromEntries(Object.keys(flags).map((flag) => [flag, { type: "string" }])),
  });
} catch (error) {
  usage(error.message);
}
if (parsed.positionals.length !== 1) usage("give exactly one output path");

const options = {};
for (const [flag, field] of Object.entries(flags)) {
  const text = parsed.values[flag];
  if (text === undefined) continue;
  // Number("") is 0 and Number("1e3") is 1000: accept plain decimal integers only.
  if (!/^\d+$/.test(text)) usage(`--${flag} must be a non-negative integer, got ${JSON.stringify(text)}`);
  options[field] = Number(text);
}

const { writeTinyLlamaModel } = await import("../dist/llm/tiny-model.js");
try {
  const used = writeTinyLlamaModel(parsed.positionals[0], options);
  process.stdout.write(`${parsed.positionals[0]}: ${JSON.stringify(used)}\n`);
} catch (error) {
  if (error?.code !== "MULTIRANK_ERR_INVALID_ARGUMENT") throw error;
  usage(error.message);
}

function usage(problem) {
  process.stderr.write(`make-tiny-model: ${problem}\nusage: node scripts/make-tiny-model.mjs OUT.gguf [--seed N] [--layers N] [--embedding-length N] [--heads N] [--kv-heads N] [--feed-forward-length N] [--context-length N]\n`);
  process.exit(2);
}
