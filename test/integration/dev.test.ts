/**
 * multirank dev: a project served with reload. After an edit, the next
 * request runs the new code; what did not change keeps its warm runners; an
 * edit that does not load leaves the previous code serving.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packIsNumberFixture, refuseRegistry } from "../helpers/fixture-package.js";
import { makeFixtureProject, writeFixtureFunction, writeFixtureWorker } from "../helpers/fixture-project.js";
import { waitFor } from "../helpers/processes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let work: string;
let project: string;
let child: ChildProcessWithoutNullStreams | undefined;
let stdout = "";
let url: string;

async function call(path: string, body: unknown): Promise<any> {
  const response = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  return response.json();
}

/** Waits until dev reports its next reload (or failure) after `from` characters of output. */
async function nextReload(from: number): Promise<string> {
  expect(await waitFor(() => /reload(ed|\s+failed)[^\n]*\n/.test(stdout.slice(from)), 90_000, 25), stdout.slice(from)).toBe(true);
  return /reload(ed|\s+failed)[^\n]*\n/.exec(stdout.slice(from))![0];
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "multirank-dev-"));
  process.env.TEST_FN_DEP = packIsNumberFixture(work);
  refuseRegistry();
  project = join(work, "proj");
  makeFixtureProject(project);
  child = spawn(process.execPath, [join(ROOT, "dist/cli/main.js"), "dev", "--port", "0"], {
    cwd: project,
    env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent", MULTIRANK_CACHE_DIR: join(work, "cache") },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.resume();
  expect(await waitFor(() => stdout.includes("watching"), 90_000), stdout).toBe(true);
  url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("multirank dev", () => {
  it("serves the project's app and function, with the routes printed", async () => {
    expect(stdout).toContain(`${url}/fal/run/d/echo`);
    expect(stdout).toContain(`${url}/fal/run/fn/d-greet`);
    expect(await call("/fal/run/d/echo", { text: "a" })).toMatchObject({ echo: "a", mode: "echo" });
    expect(await call("/fal/run/fn/d-greet", { who: "1" })).toMatchObject({ version: "v1", numberish: true });
  }, 120_000);

  it("an edited function runs its new code at the next request; the app stays warm", async () => {
    const appPid = (await call("/fal/run/d/echo", { text: "a" })).pid as number;
    const from = stdout.length;
    writeFixtureFunction(project, "v2");
    expect(await nextReload(from)).toMatch(/function d-greet updated/);
    expect(await call("/fal/run/fn/d-greet", { who: "x" })).toMatchObject({ version: "v2" });
    expect((await call("/fal/run/d/echo", { text: "b" })).pid).toBe(appPid);
  }, 120_000);

  it("an edited worker restarts its app", async () => {
    const before = (await call("/fal/run/d/echo", { text: "a" })).pid as number;
    const from = stdout.length;
    writeFixtureWorker(project, "shout");
    expect(await nextReload(from)).toMatch(/app d\/echo updated/);
    const after = await call("/fal/run/d/echo", { text: "c" });
    expect(after).toMatchObject({ mode: "shout" });
    expect(after.pid).not.toBe(before);
  }, 120_000);

  it("an edit that does not load is reported and the previous code keeps serving", async () => {
    const from = stdout.length;
    writeFileSync(join(project, "functions", "greet.ts"), "export const greet = (;\n");
    expect(await nextReload(from)).toMatch(/reload failed/);
    expect(await call("/fal/run/fn/d-greet", { who: "x" })).toMatchObject({ version: "v2" });
    const fixed = stdout.length;
    writeFixtureFunction(project, "v3");
    expect(await nextReload(fixed)).toMatch(/function d-greet updated/);
    expect(await call("/fal/run/fn/d-greet", { who: "x" })).toMatchObject({ version: "v3" });
  }, 120_000);
});
