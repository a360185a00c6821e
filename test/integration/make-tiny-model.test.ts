/**
 * scripts/make-tiny-model.mjs: writes the same bytes the library builds for
 * the given flags, and refuses bad flags with exit code 2 and the field named.
 * Runs the script from dist/ (the test run builds it first).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { buildTinyLlamaModel } from "../../src/llm/tiny-model.js";

const run = promisify(execFile);
const script = fileURLToPath(new URL("../../scripts/make-tiny-model.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "multirank-tiny-model-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function attempt(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [script, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("scripts/make-tiny-model.mjs", () => {
  it("writes the model the library builds for the flags", async () => {
    const out = join(dir, "tiny.gguf");
    const result = await attempt([out, "--seed", "5", "--layers", "3"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('"seed":5');
    expect(readFileSync(out).equals(buildTinyLlamaModel({ seed: 5, layers: 3 }))).toBe(true);
  });

  it.each([
    [["--seed", "1"], /give exactly one output path/],
    [[join(dir, "x.gguf"), "--seed=1e3"], /--seed must be a non-negative integer, got "1e3"/],
    [[join(dir, "x.gguf"), "--kv-heads", "3"], /options\.kvHeads \(3\) must divide options\.heads \(4\)/],
    [[join(dir, "x.gguf"), "--colour", "red"], /Unknown option '--colour'/],
  ])("exits 2 for %j, saying why", async (args, message) => {
    const result = await attempt(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain("usage: node scripts/make-tiny-model.mjs OUT.gguf");
  });
});
