/**
 * Where the tests find the llama.cpp engine: `MULTIRANK_LLAMA_ENGINE`, else
 * the cache's CPU install (`npx multirank engine install llama` puts it
 * there; `.ci/run` does). Tests never install it: without it they skip
 * locally, saying why, and fail in CI.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe } from "vitest";
import { LLAMA_ENGINE_MARKER, llamaEngineDir } from "../../src/functions/llama-engine.js";

/** The engine's install directory, or undefined when there is none. */
export function findLlamaEngine(): string | undefined {
  const named = process.env.MULTIRANK_LLAMA_ENGINE;
  if (named) return existsSync(join(named, "node_modules", "node-llama-cpp")) ? named : undefined;
  const dir = llamaEngineDir("cpu");
  return existsSync(join(dir, LLAMA_ENGINE_MARKER)) ? dir : undefined;
}

export const LLAMA_ENGINE_DIR = findLlamaEngine();
const MISSING = "the llama.cpp engine is not installed: run `npx multirank engine install llama` (or set MULTIRANK_LLAMA_ENGINE)";

/**
 * `describe` when the engine is there or in CI (where its absence fails the
 * suite with {@link requireLlamaEngine}), else `describe.skip` with the reason in the title.
 */
export function describeWithLlamaEngine(title: string, body: () => void): void {
  if (LLAMA_ENGINE_DIR !== undefined || process.env.CI) describe(title, body);
  else describe.skip(`${title} (skipped: ${MISSING})`, body);
}

/**
 * Points this process and the ranks it starts at the engine, so nothing
 * installs during a test.
 * @throws when it is missing (only reached in CI).
 */
export function requireLlamaEngine(): string {
  if (LLAMA_ENGINE_DIR === undefined) throw new Error(`${MISSING}; CI installs it in .ci/run`);
  process.env.MULTIRANK_LLAMA_ENGINE = LLAMA_ENGINE_DIR;
  return LLAMA_ENGINE_DIR;
}
