// Dependency environments of remote functions: built with the real npm from
// tarballs this test packs, never from a registry (the registry is a closed
// loopback port, so any registry access fails at once instead of hanging).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DependencyInstallError, ensureEnvironment, environmentKey, ENV_MARKER, type EnvironmentOptions } from "../../src/functions/index.js";
import { defaultNpmCommand } from "../../src/functions/npm-run.js";
import { isRunning } from "../helpers/processes.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const COUNTING_NPM = path.join(REPO, "test/fixtures/functions/counting-npm.mjs");
const ENSURE_ENV = path.join(REPO, "test/fixtures/functions/ensure-env.ts");
const REGISTRY = "http://127.0.0.1:9/";
const run = promisify(execFile);

const made = new Set<string>();
const children = new Set<ChildProcess>();
let packs: string;
let npmCli: string;

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `multirank-test-${prefix}-`));
  made.add(dir);
  return dir;
}

/** Packs a one-file package with `npm pack` and returns the tarball's path. */
async function pack(name: string, version: string, body: string, into: string, extra: Record<string, unknown> = {}): Promise<string> {
  const dir = fs.mkdtempSync(path.join(packs, "src-"));
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version, main: "index.js", ...extra }));
  fs.writeFileSync(path.join(dir, "index.js"), body);
  const cmd = defaultNpmCommand();
  const { stdout } = await run(cmd[0]!, [...cmd.slice(1), "pack", "--pack-destination", into, "--silent"], { cwd: dir, env: { ...process.env, npm_config_cache: path.join(packs, "npm-cache") } });
  return path.join(into, stdout.trim().split("\n").at(-1)!);
}

/** A fresh cache dir, and options whose npm is the counting wrapper and whose npm cache lives inside it. */
function setup(): { cacheDir: string; counter: string; options: (deps: string[], more?: Partial<EnvironmentOptions>) => EnvironmentOptions; npmRuns: () => { pid: number; args: string[] }[] } {
  const cacheDir = tempDir("envcache");
  const counter = path.join(cacheDir, "npm-runs.jsonl");
  fs.writeFileSync(counter, "");
  return {
    cacheDir,
    counter,
    options: (dependencies, more = {}) => ({
      dependencies,
      cacheDir,
      registry: REGISTRY,
      npmCommand: [process.execPath, COUNTING_NPM, counter, npmCli],
      npmEnv: { npm_config_cache: path.join(cacheDir, "npm-cache"), npm_config_fetch_retries: "0", npm_config_fetch_timeout: "2000" },
      ...more,
    }),
    npmRuns: () =>
      fs
        .readFileSync(counter, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { pid: number; args: string[] }),
  };
}

/** What is left in envs/ besides complete environments: temporary build dirs and locks. */
function leftovers(cacheDir: string): string[] {
  const envs = path.join(cacheDir, "envs");
  if (!fs.existsSync(envs)) return [];
  return fs.readdirSync(envs).filter((n) => n.startsWith(".tmp-") || n.includes(".lock"));
}

beforeAll(() => {
  packs = tempDir("packs");
  const cmd = defaultNpmCommand();
  // The counting wrapper runs npm-cli.js with node; find it the same way the module does, or through PATH's npm.
  npmCli = cmd.length > 1 ? cmd[1]! : path.join(path.dirname(fs.realpathSync(path.join(path.dirname(process.execPath), "npm"))), "npm-cli.js");
});

afterEach(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
  for (const dir of made) if (dir !== packs) fs.rmSync(dir, { recursive: true, force: true });
  for (const dir of [...made]) if (dir !== packs) made.delete(dir);
});

afterAll(() => {
  fs.rmSync(packs, { recursive: true, force: true });
});

describe("ensureEnvironment", () => {
  it("builds once, then answers from the cache without running npm; the caller cannot see the package", async () => {
    const tgz = await pack("is-number-ish", "1.0.0", "module.exports = (x) => typeof x === 'number' || (typeof x === 'string' && x.trim() !== '' && !Number.isNaN(Number(x)));", packs);
    const { cacheDir, options, npmRuns } = setup();
    const first = await ensureEnvironment(options([`file:${tgz}`]));
    expect(first.built).toBe(true);
    expect(first.dir).toBe(path.join(cacheDir, "envs", first.key));
    expect(first.key).toBe(environmentKey([`file:${tgz}`], REGISTRY));
    expect(npmRuns().map((r) => r.args[0])).toEqual(["install"]);
    for (const file of ["package.json", "package-lock.json", ENV_MARKER]) expect(fs.existsSync(path.join(first.dir, file))).toBe(true);
    expect(fs.existsSync(path.join(cacheDir, "locks", `${first.key}.json`))).toBe(true);

    const isNumberish = createRequire(path.join(first.dir, "noop.js"))("is-number-ish") as (x: unknown) => boolean;
    expect([isNumberish(1), isNumberish("2"), isNumberish("x")]).toEqual([true, true, false]);
    expect(() => createRequire(path.join(REPO, "noop.js")).resolve("is-number-ish")).toThrow(/Cannot find module/);
    expect(fs.existsSync(path.join(REPO, "node_modules", "is-number-ish"))).toBe(false);

    const second = await ensureEnvironment(options([`file:${tgz}`]));
    expect(second).toEqual({ ...first, built: false });
    expect(npmRuns()).toHaveLength(1);
    expect(leftovers(cacheDir)).toEqual([]);
  });

  it("an empty list is an environment with no packages and no npm run", async () => {
    const { options, npmRuns } = setup();
    const env = await ensureEnvironment(options([]));
    expect(env.built).toBe(true);
    expect(fs.readdirSync(env.nodeModules)).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(env.dir, "package.json"), "utf8"))).toMatchObject({ name: "multirank-env", dependencies: {} });
    expect(npmRuns()).toHaveLength(0);
    expect((await ensureEnvironment(options([]))).built).toBe(false);
  });

  it("defaults: the cache dir from MULTIRANK_CACHE_DIR, the registry npm is configured with", async () => {
    const cacheDir = tempDir("envdefault");
    const cmd = defaultNpmCommand();
    const configured = process.env.npm_config_registry || (await run(cmd[0]!, [...cmd.slice(1), "config", "get", "registry"])).stdout.trim();
    const saved = process.env.MULTIRANK_CACHE_DIR;
    process.env.MULTIRANK_CACHE_DIR = cacheDir;
    try {
      const env = await ensureEnvironment({ dependencies: [] });
      expect(env.dir).toBe(path.join(cacheDir, "envs", env.key));
      expect(env.key).toBe(environmentKey([], configured));
    } finally {
      if (saved === undefined) delete process.env.MULTIRANK_CACHE_DIR;
      else process.env.MULTIRANK_CACHE_DIR = saved;
    }
  });

  it("a changed tarball at the same path makes a new environment with the new code", async () => {
    const dir = tempDir("changing");
    const tgz = await pack("answer-ish", "1.0.0", "module.exports = 41;", dir);
    const { options } = setup();
    const before = await ensureEnvironment(options([`file:${tgz}`]));
    await pack("answer-ish", "1.0.0", "module.exports = 42;", dir);
    const after = await ensureEnvironment(options([`file:${tgz}`]));
    expect(after.key).not.toBe(before.key);
    expect(after.built).toBe(true);
    expect(createRequire(path.join(before.dir, "noop.js"))("answer-ish")).toBe(41);
    expect(createRequire(path.join(after.dir, "noop.js"))("answer-ish")).toBe(42);
  });

  it("two concurrent calls for one key in one process run npm once", async () => {
    const tgz = await pack("twice-ish", "1.0.0", "module.exports = 2;", packs);
    const { options, npmRuns, cacheDir } = setup();
    const [a, b] = await Promise.all([ensureEnvironment(options([`file:${tgz}`])), ensureEnvironment(options([`file:${tgz}`]))]);
    expect(a.key).toBe(b.key);
    expect([a.built, b.built].sort()).toEqual([false, true]);
    expect(npmRuns()).toHaveLength(1);
    expect(leftovers(cacheDir)).toEqual([]);
  });

  it("a joined call that aborts leaves the build running for the other", async () => {
    const tgz = await pack("joined-ish", "1.0.0", "module.exports = 'j';", packs);
    const { options, npmRuns } = setup();
    const controller = new AbortController();
    const staying = ensureEnvironment(options([`file:${tgz}`]));
    const leaving = ensureEnvironment(options([`file:${tgz}`], { signal: controller.signal }));
    controller.abort();
    await expect(leaving).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect((await staying).built).toBe(true);
    expect(npmRuns()).toHaveLength(1);
  });

  it("two processes building one key run npm once: the second waits on the lock", async () => {
    const tgz = await pack("shared-ish", "1.0.0", "module.exports = 'shared';", packs);
    const { options, npmRuns, cacheDir } = setup();
    const start = async (): Promise<{ key: string; built: boolean }> => {
      const child = spawn(process.execPath, ["--import", "tsx", ENSURE_ENV, JSON.stringify(options([`file:${tgz}`]))], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
      children.add(child);
      let out = "";
      let err = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      const [code] = (await once(child, "exit")) as [number | null];
      if (code !== 0) throw new Error(`ensure-env exited with ${code}: ${err}`);
      return JSON.parse(out.trim()) as { key: string; built: boolean };
    };
    const [a, b] = await Promise.all([start(), start()]);
    expect(a.key).toBe(b.key);
    expect([a.built, b.built].sort()).toEqual([false, true]);
    expect(npmRuns()).toHaveLength(1);
    expect(leftovers(cacheDir)).toEqual([]);
  });

  it("a lock left by a dead process is taken over", async () => {
    const tgz = await pack("stale-ish", "1.0.0", "module.exports = 's';", packs);
    const { options, cacheDir } = setup();
    const key = environmentKey([`file:${tgz}`], REGISTRY);
    const dead = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    await once(dead, "exit");
    fs.mkdirSync(path.join(cacheDir, "envs"), { recursive: true });
    fs.writeFileSync(path.join(cacheDir, "envs", `${key}.lock`), JSON.stringify({ pid: dead.pid, host: os.hostname(), token: "gone", created: Date.now() }));
    fs.mkdirSync(path.join(cacheDir, "envs", `.tmp-${key}-${dead.pid}-dead`));
    const env = await ensureEnvironment(options([`file:${tgz}`]));
    expect(env.built).toBe(true);
    expect(leftovers(cacheDir)).toEqual([]);
  });

  it("a lock held by a live process is waited on, not broken, and the wait honours the signal", async () => {
    const tgz = await pack("live-ish", "1.0.0", "module.exports = 'l';", packs);
    const { options, cacheDir, npmRuns } = setup();
    const key = environmentKey([`file:${tgz}`], REGISTRY);
    const owner = spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore" });
    children.add(owner);
    const lock = path.join(cacheDir, "envs", `${key}.lock`);
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, JSON.stringify({ pid: owner.pid, host: os.hostname(), token: "alive", created: Date.now() }));
    const controller = new AbortController();
    const waiting = ensureEnvironment(options([`file:${tgz}`], { signal: controller.signal }));
    // Let it poll the lock a few times (its first pauses are 25 and 38 ms), then give up.
    setTimeout(() => controller.abort(), 300);
    await expect(waiting).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(JSON.parse(fs.readFileSync(lock, "utf8"))).toMatchObject({ token: "alive" });
    expect(npmRuns()).toHaveLength(0);
    // Its owner dies: the next call takes the lock over and builds.
    owner.kill("SIGKILL");
    await once(owner, "exit");
    expect((await ensureEnvironment(options([`file:${tgz}`]))).built).toBe(true);
  });

  it("rebuilds a deleted environment with npm ci from the kept lockfile", async () => {
    const tgz = await pack("locked-ish", "1.0.0", "module.exports = 'locked';", packs);
    const { options, npmRuns } = setup();
    const first = await ensureEnvironment(options([`file:${tgz}`]));
    fs.rmSync(first.dir, { recursive: true });
    const again = await ensureEnvironment(options([`file:${tgz}`]));
    expect(again).toEqual(first);
    expect(npmRuns().map((r) => r.args[0])).toEqual(["install", "ci"]);
    expect(createRequire(path.join(again.dir, "noop.js"))("locked-ish")).toBe("locked");
    expect(JSON.parse(fs.readFileSync(path.join(again.dir, ENV_MARKER), "utf8"))).toMatchObject({ key: first.key, npm: "ci" });
  });

  it("a package npm cannot fetch fails with DependencyInstallError naming it, npm's last lines, and nothing left", async () => {
    const tgz = await pack("fine-ish", "1.0.0", "module.exports = 1;", packs);
    const { options, cacheDir, npmRuns } = setup();
    const bad = "no-such-package-multirank-test@1.0.0";
    const error = await ensureEnvironment(options([`file:${tgz}`, bad])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DependencyInstallError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_DEPENDENCY_INSTALL", specs: [bad] });
    const { message, output } = error as DependencyInstallError;
    expect(message).toContain(bad);
    expect(message).not.toContain("fine-ish@");
    expect(output).toMatch(/ECONNREFUSED/);
    expect(output.split("\n").length).toBeLessThanOrEqual(40);
    expect(npmRuns()).toHaveLength(1);
    expect(leftovers(cacheDir)).toEqual([]);
    expect(fs.readdirSync(path.join(cacheDir, "envs"))).toEqual([]);
  });

  it("a missing or broken file: tarball fails with DependencyInstallError before npm runs", async () => {
    const { options, npmRuns } = setup();
    const missing = `file:${path.join(packs, "nope-1.0.0.tgz")}`;
    await expect(ensureEnvironment(options([missing]))).rejects.toMatchObject({ code: "MULTIRANK_ERR_DEPENDENCY_INSTALL", specs: [missing], message: expect.stringContaining("ENOENT") });
    const junk = path.join(packs, "junk-1.0.0.tgz");
    fs.writeFileSync(junk, "not a tarball");
    await expect(ensureEnvironment(options([`file:${junk}`]))).rejects.toMatchObject({ code: "MULTIRANK_ERR_DEPENDENCY_INSTALL", specs: [`file:${junk}`] });
    expect(npmRuns()).toHaveLength(0);
  });

  it("an aborted build kills npm and leaves nothing behind", async () => {
    const tgz = await pack("slow-ish", "1.0.0", "module.exports = 1;", packs);
    const { options, cacheDir, npmRuns } = setup();
    const controller = new AbortController();
    const held = options([`file:${tgz}`], { signal: controller.signal });
    const pending = ensureEnvironment({ ...held, npmEnv: { ...held.npmEnv, MULTIRANK_TEST_NPM_HOLD: "1" } });
    await expect.poll(() => npmRuns().length).toBe(1);
    expect(fs.readdirSync(path.join(cacheDir, "envs")).some((n) => n.startsWith(".tmp-"))).toBe(true);
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(isRunning(npmRuns()[0]!.pid)).toBe(false);
    expect(fs.readdirSync(path.join(cacheDir, "envs"))).toEqual([]);
    // An aborted call leaves no state that blocks the next one.
    expect((await ensureEnvironment(options([`file:${tgz}`]))).built).toBe(true);
  });

  it("a call made while an abandoned build tears down builds afresh instead of sharing its abort", async () => {
    const tgz = await pack("again-ish", "1.0.0", "module.exports = 1;", packs);
    const { options, npmRuns } = setup();
    const controller = new AbortController();
    const held = options([`file:${tgz}`], { signal: controller.signal });
    const abandoned = ensureEnvironment({ ...held, npmEnv: { ...held.npmEnv, MULTIRANK_TEST_NPM_HOLD: "1" } });
    await expect.poll(() => npmRuns().length).toBe(1);
    controller.abort();
    const fresh = ensureEnvironment(options([`file:${tgz}`]));
    await expect(abandoned).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect((await fresh).built).toBe(true);
    expect(npmRuns()).toHaveLength(2);
  });

  it("refuses bad specs and options with a ValidationError naming the field", async () => {
    const { options, npmRuns } = setup();
    const bad: [unknown, RegExp][] = [
      ["", /dependencies\[0\]/],
      [42, /dependencies\[0\]/],
      ["left-pad@1 ; rm -rf /", /dependencies\[0\].*whitespace/],
      ["left-pad@$(id)", /shell metacharacter/],
      ["left-pad@`id`", /shell metacharacter/],
      ["left-pad\n@1", /whitespace/],
      ["Not A Name", /whitespace/],
      ["..@1", /not an npm spec/],
      ["left-pad@", /empty version/],
    ];
    for (const [spec, message] of bad) {
      await expect(ensureEnvironment(options([spec as string]))).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(message) });
    }
    await expect(ensureEnvironment(options(["a@1", "a@2"]))).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/dependencies\[1\].*again/) });
    await expect(ensureEnvironment(options([], { registry: "ftp://x" }))).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/options\.registry/) });
    await expect(ensureEnvironment({ ...options([]), dependencies: "a@1" as unknown as string[] })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(/options\.dependencies/) });
    expect(npmRuns()).toHaveLength(0);
  });
});
