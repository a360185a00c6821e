import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { runBenchCommand } from "../../src/cli/bench.js";

/** Runs the command on arguments that fail before any rank could start. */
async function run(...argv: string[]): Promise<{ code: number; text: string }> {
  const out = new PassThrough();
  let text = "";
  out.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const code = await runBenchCommand(argv, out, { progress: { write: () => true } });
  return { code, text };
}

describe("multirank bench arguments", () => {
  it("prints the usage for --help and exits 0", async () => {
    const { code, text } = await run("--help");
    expect(code).toBe(0);
    expect(text).toMatch(/^Usage: multirank bench <worker-module>/);
    expect(text).toContain("--world-sizes LIST");
  });

  it.each([
    [[], "missing <worker-module>"],
    [["no/such/worker.ts"], "worker module not found: no/such/worker.ts"],
    [["workers/echo.ts", "workers/echo.ts"], "expected one worker module"],
    [["workers/echo.ts", "--bogus"], 'unknown option "--bogus"'],
    [["workers/echo.ts", "--requests"], "--requests needs a value"],
    [["workers/echo.ts", "--requests", "--quick"], "--requests needs a value"],
    [["workers/echo.ts", "--requests", "0"], "--requests must be a positive integer, got 0"],
    [["workers/echo.ts", "--concurrency=2.5"], '--concurrency must be a positive integer, got "2.5"'],
    [["workers/echo.ts", "--warmup=-1"], '--warmup must be a non-negative integer, got "-1"'],
    [["workers/echo.ts", "--warmup", "-1"], '--warmup needs a value (write --warmup=VALUE for one that starts with "-")'],
    [["workers/echo.ts", "-x"], 'unknown option "-x"'],
    [["workers/echo.ts", "--payload-bytes", "1k"], '--payload-bytes must be a non-negative integer, got "1k"'],
    [["workers/echo.ts", "--world-sizes", "1,,4"], '--world-sizes must be a positive integer, got ""'],
    [["workers/echo.ts", "--world-sizes", "0"], "--world-sizes must be a positive integer, got 0"],
    [["workers/echo.ts", "--stream=yes"], "--stream takes no value"],
    [["workers/echo.ts", "--chart", "-"], "--chart needs a file name"],
    [["workers/echo.ts", "--devices", "0,,1"], "--devices must be auto, cpu or a comma-separated list"],
    [["workers/echo.ts", "--world-sizes", "2000"], "options.worldSizes[0] must be a positive integer up to 1024"],
    [["workers/echo.ts", "--payload", "{prompt:1}"], "--payload must be JSON (quote it for the shell: --payload '{\"prompt\":\"hi\"}');"],
    [["workers/echo.ts", "--payload"], "--payload needs a value"],
    [["workers/echo.ts", "--payload-file", "no/such/payload.json"], "--payload-file: cannot read no/such/payload.json"],
    [["workers/echo.ts", "--payload-file", "README.md"], "--payload-file: README.md is not JSON"],
    [["workers/echo.ts", "--payload", "{}", "--payload-file", "package.json"], "give one of --payload and --payload-file, once"],
    [["workers/echo.ts", "--payload", "{}", "--payload-bytes", "8"], "--payload and --payload-bytes cannot both be set"],
  ])("exits 2 on %j with a clear message", async (argv, message) => {
    const { code, text } = await run(...argv);
    expect(code).toBe(2);
    expect(text.split("\n")[0]).toContain(`multirank bench: ${message}`);
    expect(text.split("\n")[0]).toMatch(/ \[MULTIRANK_ERR_INVALID_ARGUMENT\]$/);
    expect(text).toContain("Usage: multirank bench");
  });

  it("documents --payload and --payload-file", async () => {
    const { text } = await run("--help");
    expect(text).toContain("--payload JSON");
    expect(text).toContain("--payload-file FILE");
  });
});
