/**
 * multirank build and deploy: a project made here, built twice (same bytes),
 * deployed to a gateway started here, changed and redeployed under load,
 * rolled back, deleted, brought back after a restart; bad artifacts refused.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { falClient } from "../fixtures/gateway/harness.js";
import { makeFixtureProject, writeFixtureFunction } from "../helpers/fixture-project.js";
import { packIsNumberFixture, refuseRegistry } from "../helpers/fixture-package.js";
import { ownChildPids, waitFor } from "../helpers/processes.js";

type Multirank = typeof import("multirank");
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ADMIN = "deploy-admin-key-123";

let mr: Multirank;
let work: string;
let project: string;
let dataDir: string;
let gateway: Awaited<ReturnType<Multirank["createGateway"]>> | undefined;
let url: string;

async function startGateway(): Promise<void> {
  gateway = await mr.createGateway({
    apps: [],
    page: false,
    logger: (await import("pino")).pino({ level: "silent" }),
    functionServer: { adminKeys: [ADMIN], dataDir, cacheDir: join(work, "server-cache") },
  });
  url = await gateway.listen({ port: 0 });
}

async function post(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "multirank-deploy-"));
  process.env.TEST_FN_DEP = packIsNumberFixture(work);
  process.env.MULTIRANK_CACHE_DIR = join(work, "client-cache");
  refuseRegistry();
  project = join(work, "proj");
  makeFixtureProject(project);
  dataDir = join(work, "data");
  mr = await import("multirank");
  await startGateway();
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  expect(await waitFor(() => ownChildPids().length === 0, 20_000), `left: ${ownChildPids().join(", ")}`).toBe(true);
  rmSync(work, { recursive: true, force: true });
}, 120_000);

describe("multirank build and deploy", () => {
  it("build writes a manifest without secrets and the same artifact bytes twice", async () => {
    const first = await mr.buildProject({ dir: project });
    const second = await mr.buildProject({ dir: project });
    expect(second.hash).toBe(first.hash);
    expect(first.manifest.project).toBe("deploy-fixture");
    const entries = first.manifest.entries.map((e) => [e.kind, e.name, e.module, e.export]);
    expect(entries).toEqual([
      ["app", "d/echo", "workers/echo.ts", "default"],
      ["function", "d-greet", "functions/greet.ts", "greet"],
    ]);
    const fn = first.manifest.entries.find((e) => e.kind === "function")!;
    expect(fn.dependencies[0]).toMatch(/^file:tarballs\/[0-9a-f]{64}\.tgz$/);
    expect(fn.routes).toContain("/fal/queue/fn/d-greet");
    expect(JSON.parse(readFileSync(join(project, ".multirank", "manifest.json"), "utf8"))).toEqual(first.manifest);
  }, 120_000);

  it("deploys: the app and the function answer; no admin key is refused", async () => {
    const { artifact } = await mr.buildProject({ dir: project });
    const refused = await mr.deployArtifact(artifact, { url }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 401 });
    const logs: string[] = [];
    const result = await mr.deployArtifact(artifact, { url, key: ADMIN }, (line) => logs.push(line.msg));
    expect(result).toMatchObject({ project: "deploy-fixture", revision: 1 });
    expect(logs.join("\n")).toMatch(/d-greet/);
    expect((await post("/fal/run/d/echo", { text: "hi" })).body).toMatchObject({ echo: "hi" });
    // Through fal's real client, queue and all.
    const { data } = await falClient(url).subscribe("fn/d-greet", { input: { who: "7" }, pollInterval: 25 });
    expect(data).toMatchObject({ text: "hello 7", version: "v1", numberish: true });
  }, 180_000);

  it("a changed function is redeployed under load: every request succeeds, only it restarts", async () => {
    const before = (await post("/fal/run/d/echo", { text: "a" })).body.pid as number;
    writeFixtureFunction(project, "v2");
    const { artifact } = await mr.buildProject({ dir: project });
    let stop = false;
    const load = (async () => {
      const statuses: number[] = [];
      // The app, and the function being replaced: calls in flight finish on the old revision, later ones on the new.
      while (!stop) {
        const [app, fn] = await Promise.all([post("/fal/run/d/echo", { text: "load" }), post("/fal/run/fn/d-greet", { who: "1" })]);
        statuses.push(app.status, fn.status);
      }
      return statuses;
    })();
    const result = await mr.deployArtifact(artifact, { url, key: ADMIN });
    stop = true;
    const statuses = await load;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(result.revision).toBe(2);
    expect(result.changes).toEqual(
      expect.arrayContaining([
        { kind: "app", name: "d/echo", change: "unchanged" },
        { kind: "function", name: "d-greet", change: "updated" },
      ]),
    );
    // The app kept its warm runner.
    expect((await post("/fal/run/d/echo", { text: "b" })).body.pid).toBe(before);
    const answer = await fetch(`${url}/v2/fn--d-greet/runsync`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: { who: "5" } }) });
    expect(await answer.json()).toMatchObject({ status: "COMPLETED", output: { version: "v2", numberish: true } });
  }, 180_000);

  it("apps list and info show the revisions; rollback serves the previous one", async () => {
    const list = await mr.listDeployments({ url, key: ADMIN });
    expect(list.map((d) => [d.project, d.current])).toEqual([["deploy-fixture", 2]]);
    expect((await mr.deploymentInfo("d/echo", { url, key: ADMIN })).project).toBe("deploy-fixture");
    const rolled = await mr.rollbackDeployment("deploy-fixture", undefined, { url, key: ADMIN });
    expect(rolled.revision).toBe(1);
    const answer = await fetch(`${url}/v2/fn--d-greet/runsync`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: { who: "x" } }) });
    expect(await answer.json()).toMatchObject({ output: { version: "v1" } });
  }, 180_000);

  it("a restarted server brings its deployments back", async () => {
    await gateway!.close();
    await startGateway();
    expect((await post("/fal/run/d/echo", { text: "back" })).body).toMatchObject({ echo: "back" });
    const answer = await fetch(`${url}/v2/fn--d-greet/runsync`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: { who: "x" } }) });
    expect(await answer.json()).toMatchObject({ output: { version: "v1" } });
  }, 180_000);

  it("refuses bad artifacts with 4xx naming the problem, and changes nothing", async () => {
    const before = await mr.deploymentInfo("deploy-fixture", { url, key: ADMIN });
    const bad = join(work, "bad");
    const tarOf = (dir: string, ...extra: string[]): Buffer => {
      const out = join(work, `a-${Math.random().toString(36).slice(2)}.tgz`);
      execFileSync("tar", ["-czf", out, ...extra, "-C", dir, "."]);
      return readFileSync(out);
    };
    const expectRefused = async (artifact: Buffer, pattern: RegExp, status = 422): Promise<void> => {
      const error = await mr.deployArtifact(artifact, { url, key: ADMIN }).catch((e: unknown) => e);
      expect(error).toMatchObject({ status });
      expect((error as Error).message).toMatch(pattern);
    };
    // A symlink pointing out.
    mkdirSync(bad);
    writeFileSync(join(bad, "manifest.json"), "{}");
    symlinkSync("/etc/passwd", join(bad, "passwd"));
    await expectRefused(tarOf(bad), /symlink/);
    // An entry that escapes the root.
    rmSync(join(bad, "passwd"));
    await expectRefused(tarOf(bad, "--transform", "s,^\\./manifest.json,../escape.json,", "-P"), /escapes|manifest/);
    // A manifest missing a field, and one naming a file the archive lacks.
    const good = (await mr.buildProject({ dir: project })).manifest;
    writeFileSync(join(bad, "manifest.json"), JSON.stringify({ ...good, entries: good.entries.map(({ hash: _h, ...rest }) => rest) }));
    await expectRefused(tarOf(bad), /entries\[0\]\.hash is missing/);
    writeFileSync(join(bad, "manifest.json"), JSON.stringify(good));
    await expectRefused(tarOf(bad), /bundles\/[0-9a-f]{64}\.mjs, which the artifact does not hold/);
    // Not an archive at all.
    await expectRefused(Buffer.from("not a tarball"), /not a gzipped tar/);
    expect(await mr.deploymentInfo("deploy-fixture", { url, key: ADMIN })).toEqual(before);
  }, 120_000);

  it("the CLI: multirank deploy prints the build log, apps list and info show it", async () => {
    // Asynchronous: the server answering it runs in this process.
    const cli = async (args: string[]): Promise<{ status: number; stdout: string }> => {
      try {
        const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, "dist/cli/main.js"), ...args], { cwd: project, encoding: "utf8", env: { ...process.env, MULTIRANK_HOST: url, MULTIRANK_KEY: ADMIN } });
        return { status: 0, stdout };
      } catch (error) {
        return { status: (error as { code: number }).code, stdout: String((error as { stdout: unknown }).stdout) };
      }
    };
    const deployed = await cli(["deploy"]);
    expect(deployed.status).toBe(0);
    expect(deployed.stdout).toMatch(/deploy-fixture revision 3 is live/);
    const list = JSON.parse((await cli(["apps", "list", "--json"])).stdout) as Array<{ project: string; current: number }>;
    expect(list).toEqual([expect.objectContaining({ project: "deploy-fixture", current: 3 })]);
    expect((await cli(["apps", "info", "fn/d-greet"])).stdout).toMatch(/deploy-fixture: revision 3 is live/);
    expect((await cli(["apps", "info", "nothing-here"])).status).toBe(1);
  }, 180_000);

  it("multirank serve in the project serves its config's apps and functions", async () => {
    // The installed CLI (dist), run in the project: its config is found there.
    const child = spawn(process.execPath, [join(ROOT, "dist/cli/main.js"), "serve", "--port", "0"], {
      cwd: project,
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent", MULTIRANK_CACHE_DIR: join(work, "serve-cache") },
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      expect(await waitFor(() => stdout.includes("Ctrl-C"), 90_000), stdout).toBe(true);
      const served = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
      expect(stdout).toContain("fn/d-greet");
      const answer = await fetch(`${served}/fal/run/fn/d-greet`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ who: "3" }) });
      expect(await answer.json()).toMatchObject({ text: "hello 3", numberish: true });
      const echo = await fetch(`${served}/fal/run/d/echo`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text: "local" }) });
      expect(await echo.json()).toMatchObject({ echo: "local" });
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 180_000);

  it("multirank serve stops on SIGTERM while its functions' environments still install", async () => {
    // A registry that takes requests and never answers: npm waits on it.
    const held: import("node:http").ServerResponse[] = [];
    let asked = 0;
    const registry = createServer((_request, response) => {
      asked++;
      held.push(response);
    });
    await new Promise<void>((resolve) => registry.listen(0, "127.0.0.1", resolve));
    const hanging = join(work, "hanging");
    makeFixtureProject(hanging);
    writeFileSync(join(hanging, "functions", "greet.ts"), `import { remote } from "multirank";\nexport const greet = remote({ name: "d-greet", dependencies: ["never-answered@1.0.0"] }, async () => 1);\n`);
    const child = spawn(process.execPath, [join(ROOT, "dist/cli/main.js"), "serve", "--port", "0"], {
      cwd: hanging,
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent", MULTIRANK_CACHE_DIR: join(work, "hanging-cache"), MULTIRANK_DATA_DIR: join(work, "hanging-data"), npm_config_registry: `http://127.0.0.1:${(registry.address() as { port: number }).port}/` },
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      expect(await waitFor(() => asked > 0, 60_000)).toBe(true);
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(stdout).toContain("stopped during start-up");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      for (const response of held) response.destroy();
      registry.close();
    }
  }, 120_000);

  it("delete stops serving it: 404 after", async () => {
    await mr.deleteDeployment("deploy-fixture", { url, key: ADMIN });
    expect((await post("/fal/run/d/echo", { text: "gone" })).status).toBe(404);
    await expect(mr.deploymentInfo("deploy-fixture", { url, key: ADMIN })).rejects.toMatchObject({ status: 404 });
  }, 120_000);
});
