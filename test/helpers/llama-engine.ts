/**
 * Where the tests find the llama.cpp engine: `MULTIRANK_LLAMA_ENGINE`, else
 * the cache's CPU install (`npx multirank engine install llama` puts it
 * there; `.ci/run` does). Tests never install it: without it they skip
 * locally, saying why, and fail in CI.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describeNeeding, type ToolCheck } from "./needs-tool.js";
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

/** The engine as a tool tests need (see test/helpers/needs-tool.ts). */
export const LLAMA_ENGINE: ToolCheck = { what: "the llama.cpp engine's tests", available: LLAMA_ENGINE_DIR !== undefined, reason: MISSING, installedInCi: ".ci/run installs it" };

/** `describe` for suites that need the engine (see {@link describeNeeding}). */
export function describeWithLlamaEngine(title: string, body: () => void): void {
  describeNeeding(LLAMA_ENGINE, title, body);
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
