import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { childPids, isRunning, waitFor } from "../helpers/processes.js";

type Pipeline = typeof import("../fixtures/functions/pipeline.js");
let fx: Pipeline;
let local: { close(): Promise<void> };
let work: string;
/** Every function process the tests saw, inner ones included: all must be gone after close. */
const seen = new Set<number>();

/** Packs a one-file package with npm pack; returns its file: spec. */
function pack(name: string, code: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", main: "index.js" }));
  writeFileSync(join(dir, "index.js"), code);
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", work], { cwd: dir, encoding: "utf8" }).trim().split("\n").pop()!;
  return `file:${join(work, tgz)}`;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "multirank-fn-pipeline-"));
  process.env.TEST_FN_DEP = pack("fn-fixture-isnum", "module.exports = (x) => typeof x === 'number' || (typeof x === 'string' && x.trim() !== '' && !Number.isNaN(Number(x)));\n");
  process.env.TEST_FN_DEP2 = pack("fn-fixture-scale", "module.exports = (x) => x * 10;\n");
  process.env.MULTIRANK_CACHE_DIR = join(work, "cache");
  process.env.MULTIRANK_DATA_DIR = join(work, "data");
  process.env.npm_config_registry = "http://127.0.0.1:9/";
  process.env.npm_config_fetch_retries = "0";
  fx = await import("../fixtures/functions/pipeline.js");
  ({ local } = await import("multirank"));
}, 60_000);

afterAll(async () => {
  await local?.close();
  expect(await waitFor(() => childPids().length === 0 && [...seen].every((pid) => !isRunning(pid)), 15_000), `left: ${[...seen].filter(isRunning).join(", ")}`).toBe(true);
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("a remote function calling another on the local host", () => {
  it("runs both, each in its own environment that sees only its own dependency", async () => {
    const out = await fx.pipeline([1, "2", "x", 3]);
    seen.add(out.pid).add(out.preprocess.pid);
    expect(out.result).toEqual([10, 20, 30]);
    expect(out.pid).not.toBe(out.preprocess.pid);
    expect(out.sees).toEqual({ own: true, preprocesses: false });
    expect(out.preprocess.sees).toEqual({ own: true, pipelines: false });
  }, 240_000);

  it("cancelling the outer call cancels the inner one", async () => {
    const hang = { started: join(work, "c-started"), aborted: join(work, "c-aborted") };
    const call = fx.pipeline.submit([], hang);
    expect(await waitFor(() => existsSync(hang.started), 120_000)).toBe(true);
    seen.add(Number(readFileSync(hang.started, "utf8")));
    call.cancel();
    await expect(call.result()).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(await waitFor(() => existsSync(hang.aborted), 30_000)).toBe(true);
  }, 240_000);

  it("a timed-out outer call cancels the inner one", async () => {
    // Both environments are warm from the tests above: the inner call starts well within the timeout.
    const hang = { started: join(work, "t-started"), aborted: join(work, "t-aborted") };
    const error = await fx.pipeline.with({ timeout: 5 })([], hang).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
    expect(existsSync(hang.started)).toBe(true);
    expect(await waitFor(() => existsSync(hang.aborted), 30_000)).toBe(true);
  }, 240_000);
});
