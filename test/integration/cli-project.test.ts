/**
 * The project lifecycle from the command line: `multirank init`, the
 * scaffold's own `npm test` and dev server, `multirank run`, `--version` and
 * `help`.
 *
 * The scaffold gets a node_modules of its own, made here rather than by
 * `npm install`: installing this checkout as a tarball needs the registry for
 * its dependencies, and npm would rebuild its native addon (node-gyp, with
 * binding.gyp in the package), neither of which this suite may do. So
 * node_modules is a real folder holding one link per package the scaffold
 * uses (`multirank` -> this repo, `vitest`, `typescript`, `@types/node` ->
 * this repo's, `is-number` -> the stand-in in test/fixtures/readme/registry),
 * scopes as real folders, never a link to a whole shared folder; npm install
 * is never run there. `.bin` holds what npm would link. The functions'
 * own environments are installed by the real npm, from a tiny registry on
 * 127.0.0.1 that knows only that is-number stand-in.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRunning, waitFor } from "../helpers/processes.js";
import { startTinyRegistry, type TinyRegistry } from "../helpers/tiny-registry.js";

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const CLI = join(REPO, "dist/cli/main.js");
const VERSION = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;

let work: string;
let project: string;
let registry: TinyRegistry;
const groups = new Set<number>();

interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** stdout as it arrived, one entry per chunk. */
  chunks: string[];
  exited: Promise<number | null>;
}

function env(): NodeJS.ProcessEnv {
  // The outer vitest's and npm's variables would reach the scaffold's own vitest and npm.
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(VITEST|npm_|NODE_OPTIONS$|TEST$)/i.test(key)));
  return {
    ...base,
    PATH: `${join(work, "bin")}:${process.env.PATH ?? ""}`,
    npm_config_registry: registry.url,
    npm_config_cache: join(work, ".npm-cache"),
    npm_config_fetch_retries: "0",
    npm_config_update_notifier: "false",
    MULTIRANK_CACHE_DIR: join(work, ".multirank-cache"),
    MULTIRANK_DATA_DIR: join(work, ".multirank-data"),
    MULTIRANK_LOG_LEVEL: "warn",
  };
}

/** Spawns a command as its own process group, so that whatever it leaves can be killed at once. */
function start(command: string, args: string[], cwd: string): Proc {
  const child = spawn(command, args, { cwd, env: env(), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  groups.add(child.pid!);
  let out = "";
  let err = "";
  const chunks: string[] = [];
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    chunks.push(d.toString());
  });
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((done) => {
    child.once("close", (code, signal) => done(code ?? (signal ? 128 : null)));
    // A spawn that fails (no such folder) emits no close.
    child.once("error", (error) => {
      err += String(error);
      done(null);
    });
  });
  return { child, stdout: () => out, stderr: () => err, chunks, exited };
}

async function cli(args: string[], cwd = project): Promise<{ code: number | null; stdout: string; stderr: string; chunks: string[] }> {
  const proc = start(process.execPath, [CLI, ...args], cwd);
  const code = await proc.exited;
  return { code, stdout: proc.stdout(), stderr: proc.stderr(), chunks: proc.chunks };
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Processes (other than this one) whose working directory is inside the scratch folder: ranks, environments, servers. */
function processesInWork(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((entry) => {
      try {
        return readlinkSync(`/proc/${entry}/cwd`).startsWith(work) && isRunning(Number(entry));
      } catch {
        return false; // gone, or not ours to read
      }
    })
    .map(Number);
}

function link(target: string, path: string): void {
  symlinkSync(target, path);
}

/** The scaffold's node_modules, as `npm install` would make it (see the top of this file for why by hand). */
function linkNodeModules(dir: string): void {
  const modules = join(dir, "node_modules");
  mkdirSync(join(modules, ".bin"), { recursive: true });
  mkdirSync(join(modules, "@types"));
  link(REPO, join(modules, "multirank"));
  for (const pkg of ["vitest", "typescript"]) link(join(REPO, "node_modules", pkg), join(modules, pkg));
  link(join(REPO, "node_modules/@types/node"), join(modules, "@types/node"));
  link(join(REPO, "test/fixtures/readme/registry/is-number"), join(modules, "is-number"));
  link("../vitest/vitest.mjs", join(modules, ".bin/vitest"));
  link("../typescript/bin/tsc", join(modules, ".bin/tsc"));
  // npm makes a bin executable when it links it; dist/ from tsc is not, so a wrapper stands in.
  writeFileSync(join(modules, ".bin/multirank"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(modules, ".bin/multirank"), 0o755);
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error("build first: npm run build:ts (npm test does)");
  work = mkdtempSync(join(tmpdir(), "multirank-cli-project-"));
  registry = await startTinyRegistry([join(REPO, "test/fixtures/readme/registry/is-number")], work);
  project = join(work, "hello-app");
}, 60_000);

afterAll(async () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const pid of processesInWork()) process.kill(pid, "SIGKILL");
  await registry?.close();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("multirank init", () => {
  it("writes a project, and refuses a folder that is not empty unless --force", async () => {
    const made = await cli(["init", project], work);
    expect(made.code, made.stderr).toBe(0);
    for (const file of ["package.json", "tsconfig.json", "multirank.config.ts", "functions/math.ts", "workers/text-stream.ts", "test/math.test.ts", ".env.example", ".gitignore", "README.md"]) {
      expect(existsSync(join(project, file)), file).toBe(true);
    }
    const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8")) as { name: string; type: string; dependencies: Record<string, string>; scripts: Record<string, string> };
    expect(pkg).toMatchObject({ name: "hello-app", type: "module", dependencies: { multirank: `^${VERSION}` } });
    expect(pkg.scripts).toMatchObject({ dev: "exec multirank dev", start: "exec multirank serve", test: "vitest run", build: "multirank build", deploy: "multirank deploy" });
    expect(readFileSync(join(project, ".gitignore"), "utf8")).toMatch(/node_modules[\s\S]*\.multirank/);
    expect(readFileSync(join(project, "multirank.config.ts"), "utf8")).toContain('"hello-app/text-stream"');

    const again = await cli(["init", project], work);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(project);
    expect(again.stderr).toContain("MULTIRANK_ERR_INVALID_ARGUMENT");
    expect(again.stderr).toContain("--force");
    writeFileSync(join(project, "README.md"), "mine");
    const forced = await cli(["init", project, "--force"], work);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(join(project, "README.md"), "utf8")).toContain("# hello-app");
    linkNodeModules(project);
  }, 60_000);

  it("the scaffold's npm test passes", async () => {
    const test = start("npm", ["test"], project);
    const code = await test.exited;
    expect(code, test.stdout() + test.stderr()).toBe(0);
    expect(test.stdout()).toMatch(/2 passed/);
  }, 120_000);

  it("the scaffold's dev server answers its function and its app; SIGTERM stops it with exit 0 and nothing left", async () => {
    // `multirank dev` is another change's; until it is in, `npm start` (serve) stands in.
    const hasDev = /^\s*dev:/m.test(readFileSync(join(REPO, "src/cli/main.ts"), "utf8"));
    const server = start("npm", ["run", hasDev ? "dev" : "start", "--", "--port", "0"], project);
    const url = await new Promise<string>((resolveUrl, reject) => {
      const look = (): void => {
        const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(server.stdout());
        if (found) resolveUrl(found[1]!);
      };
      server.child.stdout!.on("data", look);
      void server.exited.then((code) => reject(new Error(`the server exited (${code}) before listening:\n${server.stdout()}${server.stderr()}`)));
      look();
    });
    const post = (path: string, body: unknown): Promise<Response> => fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

    const fn = await post("/fal/run/fn/sum-numbers", { values: [1, "2", "x"] });
    expect(fn.status, await fn.clone().text()).toBe(200);
    expect(await fn.json()).toEqual({ sum: 3, counted: 2 });
    const app = await post("/fal/run/hello-app/text-stream", { prompt: "hi", maxTokens: 3, delayMs: 0 });
    expect(app.status, await app.clone().text()).toBe(200);
    expect(await app.json()).toMatchObject({ tokens: 3 });
    const stream = await post("/fal/run/hello-app/text-stream/stream", { prompt: "hi", maxTokens: 3, delayMs: 0 });
    expect(stream.status).toBe(200);
    expect((await stream.text()).match(/"token"/g)).toHaveLength(3);

    const running = processesInWork();
    expect(running.length).toBeGreaterThan(1); // npm, the CLI, warm ranks
    // To npm alone, as a process manager would: the script's `exec` makes npm's child the server itself
    // (without it, npm's shell died and left the server running).
    server.child.kill("SIGTERM");
    const code = await server.exited;
    expect(code, server.stdout() + server.stderr()).toBe(0);
    expect(await waitFor(() => running.every((pid) => !isRunning(pid)) && processesInWork().length === 0, 30_000), `left: ${processesInWork().join(", ")}`).toBe(true);
  }, 240_000);
});

describe("multirank run", () => {
  beforeAll(() => {
    writeFileSync(
      join(project, "functions/more.ts"),
      `import { remote } from "multirank";
export const countTo = remote({ name: "run-count" }, async function* (input: { n: number; delayMs?: number }) {
  for (let i = 1; i <= input.n; i++) {
    yield { i };
    await new Promise((r) => setTimeout(r, input.delayMs ?? 0));
  }
});
export const boom = remote({ name: "run-boom" }, async (input: { why: string }) => {
  throw new RangeError("boom: " + input.why);
});
`,
    );
    writeFileSync(
      join(project, "workers/plain.ts"),
      `import { DistributedWorker } from "multirank";
export default class Plain extends DistributedWorker<{ x: number }, { doubled: number; worldSize: number }> {
  override async call(input: { x: number }) {
    return { doubled: input.x * 2, worldSize: this.worldSize };
  }
}
`,
    );
    writeFileSync(join(project, "input.json"), JSON.stringify({ values: [5, "6", null] }));
    writeFileSync(join(project, "bad.json"), "{ values: [1, 2 }");
  });

  const lines = (text: string): unknown[] => text.trim().split("\n").map((line) => JSON.parse(line) as unknown);

  it("calls a function, with --input and with --input-file, and stops its environment", async () => {
    const first = await cli(["run", "functions/math.ts:sumNumbers", "--input", '{"values":[1,"2","x"]}']);
    expect(first.code, first.stderr).toBe(0);
    expect(lines(first.stdout)).toEqual([{ sum: 3, counted: 2 }]);
    // The module's only function needs no name.
    const second = await cli(["run", "functions/math.ts", "--input-file", "input.json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(lines(second.stdout)).toEqual([{ sum: 11, counted: 2 }]);
    expect(processesInWork()).toEqual([]);
  }, 180_000);

  it("streams a generator function's items as JSON lines as they come", async () => {
    const result = await cli(["run", "functions/more.ts:countTo", "--input", '{"n":3,"delayMs":400}']);
    expect(result.code, result.stderr).toBe(0);
    expect(lines(result.stdout)).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    // Printed as they came: the first item arrived on its own, 800 ms of sleeps before the last.
    expect(result.chunks[0]!.trim()).toBe('{"i":1}');
  }, 120_000);

  it("runs a worker module: a plain one at --world-size 2, and a streaming one", async () => {
    const plain = await cli(["run", "workers/plain.ts", "--world-size", "2", "--input", '{"x":21}']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(lines(plain.stdout)).toEqual([{ doubled: 42, worldSize: 2 }]);
    const streamed = await cli(["run", "workers/text-stream.ts", "--input", '{"prompt":"hi","maxTokens":3,"delayMs":400}']);
    expect(streamed.code, streamed.stderr).toBe(0);
    const items = lines(streamed.stdout) as Array<{ token?: string; index?: number; text?: string; tokens?: number }>;
    expect(items.map((item) => item.index)).toEqual([0, 1, 2, undefined]);
    expect(items.at(-1)).toMatchObject({ tokens: 3, text: items.slice(0, 3).map((item) => item.token).join(" ") });
    expect(JSON.parse(streamed.chunks[0]!.trim())).toMatchObject({ index: 0 });
    expect(processesInWork()).toEqual([]);
  }, 120_000);

  it("exits 1 with the error on stderr when the call fails, and 2 on bad usage", async () => {
    const failed = await cli(["run", "functions/more.ts:boom", "--input", '{"why":"because"}']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("boom: because");
    expect(failed.stderr).toContain("MULTIRANK_ERR_REMOTE");

    const bad = await cli(["run", "functions/math.ts", "--input-file", "bad.json"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--input-file bad\.json is not JSON/);
    const missing = await cli(["run", "functions/math.ts", "--input-file", "nope.json"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--input-file nope\.json cannot be read: ENOENT/);
    const several = await cli(["run", "functions/more.ts"]);
    expect(several.code).toBe(2);
    expect(several.stderr).toContain("functions/more.ts:countTo");
    const noExport = await cli(["run", "functions/math.ts:nope"]);
    expect(noExport.code).toBe(2);
    expect(noExport.stderr).toContain('no export "nope"');
    const noFile = await cli(["run", "functions/absent.ts"]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain("no such file");
    expect(processesInWork()).toEqual([]);
  }, 120_000);
});

describe("--version and help", () => {
  it("prints the version from multirank and from every subcommand", async () => {
    for (const args of [["--version"], ["-v"], ["serve", "--version"], ["run", "-v"], ["init", "--version"]]) {
      const result = await cli(args, work);
      expect(result.code, args.join(" ")).toBe(0);
      expect(result.stdout).toBe(`multirank ${VERSION}\n`);
    }
  }, 60_000);

  it("help <command> prints that command's usage; an unknown one exits 2", async () => {
    const serve = await cli(["help", "serve"], work);
    expect(serve.code).toBe(0);
    expect(serve.stdout).toMatch(/^usage: multirank serve/);
    const run = await cli(["help", "run"], work);
    expect(run.stdout).toMatch(/^usage: multirank run <file>\[:export\]/);
    const unknown = await cli(["help", "nope"], work);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "nope"');
  }, 60_000);
});
