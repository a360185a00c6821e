/**
 * Runs every fenced code block of README.md as written, in document order, in
 * one scratch directory, and fails with the block's line and its output.
 *
 * Conventions (also in an HTML comment at the top of the README):
 * - ts/js blocks are programs: run with `node --import tsx` in the scratch
 *   directory, whose package.json says `"type": "module"` and whose
 *   node_modules holds `multirank` (a link to this repo; build it first:
 *   `npm run build:ts`, which `npm test` does) and links to this repo's
 *   dependencies (`@fal-ai/client`, `runpod-sdk`, ...). A first-column comment
 *   holding only a relative path (`// functions/math.ts`) starts a file of that
 *   name, written into the directory and kept for the later blocks; the block's
 *   last file runs (unnamed code runs as `readme-L<line>.ts`). So a worker block
 *   (`// workers/my-model.ts`) is imported once, then used by the blocks after it.
 *   The directory starts with a copy of the repo's example workers (workers/).
 * - sh/bash blocks run with `bash -eo pipefail` there, with `multirank` on PATH
 *   (this repo's CLI), `curl` made strict (`--fail-with-body`, so an HTTP
 *   error fails the block) and `npm install`/`ci` refused (no registry here,
 *   and an install in the scratch directory would prune its links).
 * - `127.0.0.1:8000` is the gateway this test starts with `npm start` (the
 *   quick start): on port 8000 when it is free, else on another port, which is
 *   then written into the blocks in place of 8000.
 * - Remote functions' npm installs go to a tiny registry on 127.0.0.1 that this
 *   test serves (`npm_config_registry`, which multirank and npm both read): it
 *   knows the packages in test/fixtures/readme/registry/ (today `is-number@7.0.0`,
 *   a stand-in with the same behaviour; add a folder for a new example's
 *   dependency) and answers 404 to anything else. The real npm does the
 *   install; only the registry is local, so no test reaches the network.
 * - json blocks must parse. A block that cannot run by nature carries a marker
 *   comment on the line above it: `<!-- readme-test: sample -->` (an output or
 *   value sample; json samples must still parse), `<!-- readme-test: fragment -->`
 *   (part of a program, e.g. a method: it must parse as a module, a function
 *   body or a class body), `<!-- readme-test: covered REASON -->` (a block that
 *   installs or runs until stopped, which the test named in REASON runs: here it
 *   must parse with `bash -n`, and each `multirank` command and `npm` script it
 *   names must exist). A block with no runnable language and no marker fails.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockKind, extractBlocks, splitFiles, type CodeBlock } from "../helpers/readme-blocks.js";
import { startTinyRegistry, type TinyRegistry } from "../helpers/tiny-registry.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const README = path.join(REPO, "README.md");
const blocks = extractBlocks(fs.readFileSync(README, "utf8"));
// Upper bound per block on a busy 2-core machine; the slowest (bench runs) take about 20 s idle.
const BLOCK_TIMEOUT_MS = 120_000;

let work: string;
let port = 8000;
let registry: TinyRegistry | undefined;
let registryUrl = "";
let gateway: { child: ChildProcess; output: () => string; exited: Promise<number | null> } | undefined;
const groups = new Set<number>();

/** Spawns a command as its own process group, so that it and everything it starts can be killed at once. */
function start(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  groups.add(child.pid!);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.once("close", (code, signal) => {
      groups.delete(child.pid!);
      resolve(code ?? (signal ? 128 : null));
    });
    child.once("error", (error) => {
      out += String(error);
      groups.delete(child.pid!);
      resolve(null);
    });
  });
  return { child, output: () => out, exited };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** The environment every block runs in. */
function blockEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${path.join(work, "bin")}${path.delimiter}${process.env.PATH ?? ""}`,
    npm_config_registry: registryUrl,
    npm_config_cache: path.join(work, ".npm-cache"),
    npm_config_fetch_retries: "0",
    npm_config_update_notifier: "false",
    MULTIRANK_CACHE_DIR: path.join(work, ".multirank-cache"),
    MULTIRANK_DATA_DIR: path.join(work, ".multirank-data"),
    MULTIRANK_LOG_LEVEL: "warn",
    // The config block reads it (`keys: [process.env.GATEWAY_KEY!]`), as a user's shell would have it.
    GATEWAY_KEY: "readme-id:readme-secret",
    NODE_OPTIONS: "",
  };
}

function tail(text: string, chars = 4000): string {
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

/** Runs one command to its end (bounded), and fails with the README line and the output when it exits non-zero. */
async function runToEnd(block: CodeBlock, command: string, args: string[], shown: string): Promise<string> {
  const proc = start(command, args, { cwd: work, env: blockEnv() });
  const timer = setTimeout(() => killGroup(proc.child.pid!, "SIGKILL"), BLOCK_TIMEOUT_MS);
  const code = await proc.exited.finally(() => clearTimeout(timer));
  // Whatever the block started and left behind goes with it.
  killGroup(proc.child.pid!, "SIGKILL");
  fs.writeFileSync(path.join(work, `.readme-L${block.line}.out`), proc.output());
  if (code !== 0) {
    throw new Error(`README.md line ${block.line} (${block.lang || "no language"}) failed with exit code ${code}: ${shown}\n--- its output:\n${tail(proc.output())}\n--- the block:\n${block.code}`);
  }
  return proc.output();
}

function withPort(code: string): string {
  return port === 8000 ? code : code.replaceAll("127.0.0.1:8000", `127.0.0.1:${port}`);
}

async function runProgram(block: CodeBlock): Promise<void> {
  const files = splitFiles(withPort(block.code));
  let last = "";
  for (const file of files) {
    const name = file.path ?? `readme-L${block.line}.${block.lang.startsWith("t") ? "ts" : "mjs"}`;
    const target = path.join(work, name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, file.code);
    last = name;
  }
  if (!/\.[cm]?[jt]sx?$/.test(last)) return; // a block whose last file is data (a .json) only writes it
  await runToEnd(block, process.execPath, ["--import", "tsx", last], `node --import tsx ${last}`);
}

async function runShell(block: CodeBlock): Promise<void> {
  const prelude = [
    'curl() { command curl --fail-with-body --max-time 60 "$@"; }',
    // No registry here, and an install in this directory would prune the links to the shared node_modules.
    'npm() { case "$1" in install|i|ci|add|uninstall|update) echo "readme test: npm $1 needs the registry; mark the block <!-- readme-test: covered REASON -->" >&2; return 1;; esac; command npm "$@"; }',
    "",
  ].join("\n");
  await runToEnd(block, "bash", ["-eo", "pipefail", "-c", prelude + withPort(block.code)], "bash -eo pipefail");
}

/** A fragment must parse as a module, as a function body, or as a class body. */
async function parses(code: string): Promise<string | undefined> {
  const privates = [...new Set(code.match(/#\w+/g) ?? [])].map((p) => `${p}: any;`).join(" ");
  const forms = [code, `async function __readme(this: any) {\n${code}\n}`, `class __Readme { ${privates}\n${code}\n}`];
  let first: string | undefined;
  for (const form of forms) {
    try {
      await transform(form, { loader: "ts", format: "esm" });
      return undefined;
    } catch (error) {
      first ??= (error as Error).message;
    }
  }
  return first;
}

async function freePort(preferred: number): Promise<number> {
  const tryListen = (p: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      const server = net.createServer();
      server.once("error", () => resolve(undefined));
      server.listen(p, "127.0.0.1", () => {
        const got = (server.address() as net.AddressInfo).port;
        server.close(() => resolve(got));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}

/**
 * A registry that knows the packages in test/fixtures/readme/registry/ (one
 * folder each, packed here with npm pack) and answers 404 to anything else.
 */
async function startRegistry(): Promise<void> {
  const fixtures = path.join(REPO, "test/fixtures/readme/registry");
  registry = await startTinyRegistry(fs.readdirSync(fixtures).map((folder) => path.join(fixtures, folder)), work);
  registryUrl = registry.url;
}

/** The scratch directory: an ESM package with multirank and this repo's dependencies installed (as links). */
function makeWorkDir(): void {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "multirank-readme-"));
  fs.writeFileSync(path.join(work, "package.json"), JSON.stringify({ name: "readme-examples", private: true, type: "module" }));
  const modules = path.join(work, "node_modules");
  fs.mkdirSync(modules);
  // One link per package, and real directories for scopes: npm, run here, must
  // only ever unlink a link, never reach into the shared node_modules through a
  // linked scope folder (an `npm install` here once emptied every @scope there).
  const repoModules = path.join(REPO, "node_modules");
  for (const entry of fs.readdirSync(repoModules)) {
    if (entry.startsWith(".")) continue;
    if (entry.startsWith("@")) {
      fs.mkdirSync(path.join(modules, entry));
      for (const pkg of fs.readdirSync(path.join(repoModules, entry))) fs.symlinkSync(path.join(repoModules, entry, pkg), path.join(modules, entry, pkg));
    } else {
      fs.symlinkSync(path.join(repoModules, entry), path.join(modules, entry));
    }
  }
  fs.symlinkSync(REPO, path.join(modules, "multirank"));
  // The example workers, as a clone of the repo has them (the README's gateway config and bench CLI name them).
  fs.cpSync(path.join(REPO, "workers"), path.join(work, "workers"), { recursive: true });
  fs.mkdirSync(path.join(work, "bin"));
  const cli = path.join(work, "bin", "multirank");
  fs.writeFileSync(cli, `#!/bin/sh\nexec "${process.execPath}" "${path.join(REPO, "dist/cli/main.js")}" "$@"\n`);
  fs.chmodSync(cli, 0o755);
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(REPO, "dist/index.js"))) throw new Error("build first: npm run build:ts (npm test does)");
  makeWorkDir();
  await startRegistry();
  // The quick start: `npm start`'s own command (multirank serve) in the repo, as a
  // user runs it; run without npm in between so that SIGTERM reaches the CLI
  // alone and its exit code is the CLI's.
  port = await freePort(8000);
  const startScript = (JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
  const [bin, ...args] = startScript.split(" ");
  if (bin !== "node") throw new Error(`npm start is no longer "node ...": ${startScript}; update this test`);
  // Its own data and cache dirs: a server brings back the deployments kept in its data dir, and an
  // earlier run's must not be there (nor this run's left in the user's home).
  const env = {
    ...process.env,
    MULTIRANK_LOG_LEVEL: "warn",
    NODE_OPTIONS: "",
    MULTIRANK_DATA_DIR: path.join(work, ".gateway-data"),
    MULTIRANK_CACHE_DIR: path.join(work, ".gateway-cache"),
  };
  gateway = start(process.execPath, [...args, "--port", String(port), "--host", "127.0.0.1"], { cwd: REPO, env });
  const banner = `multirank gateway listening on http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (!gateway.output().includes(banner)) {
    if (Date.now() > deadline || gateway.child.exitCode !== null) throw new Error(`npm start printed no banner:\n${tail(gateway.output())}`);
    await Promise.race([once(gateway.child.stdout!, "data"), gateway.exited, new Promise((r) => setTimeout(r, 1000))]);
  }
}, 90_000);

afterAll(async () => {
  for (const pid of groups) killGroup(pid, "SIGKILL");
  await registry?.close();
  // MULTIRANK_README_KEEP=1 keeps the scratch directory (each block's output is in .readme-L<line>.out).
  if (work && process.env.MULTIRANK_README_KEEP === "1") console.error(`readme test: kept ${work}`);
  else if (work) fs.rmSync(work, { recursive: true, force: true });
}, 30_000);

/** npm scripts a covered block may name: this repo's, and the ones `multirank init` writes. */
const KNOWN_SCRIPTS = new Set(
  ["package.json", "templates/project/package.json"].flatMap((file) => {
    const { scripts = {} } = JSON.parse(fs.readFileSync(path.join(REPO, file), "utf8")) as { scripts?: Record<string, string> };
    // npm's own lifecycle commands need no script entry.
    return [...Object.keys(scripts), "install", "ci"];
  }),
);

/** What `bash -n` says is wrong with `code`, if anything. */
function shellSyntaxProblem(code: string): string | undefined {
  try {
    execFileSync("bash", ["-n"], { input: code, stdio: ["pipe", "pipe", "pipe"] });
    return undefined;
  } catch (error) {
    return String((error as { stderr?: unknown }).stderr ?? error);
  }
}

/** The subcommands of `multirank` (or `npx multirank`) a block calls. */
function multirankCommands(code: string): string[] {
  return [...code.matchAll(/(?:^|[\s;&|])(?:npx\s+)?multirank\s+([a-z][a-z-]*)/gm)].map((match) => match[1]!);
}

/** The npm scripts a block runs: `npm run X`, `npm start`, `npm test`, `npm install`. */
function npmScripts(code: string): string[] {
  return [...code.matchAll(/(?:^|[\s;&|])npm\s+(?:run\s+)?([a-z][a-z:-]*)/gm)].map((match) => match[1]!);
}

/** Whether the CLI knows `command` (its help answers). */
function isMultirankCommand(command: string): boolean {
  try {
    execFileSync(process.execPath, [path.join(REPO, "dist/cli/main.js"), "help", command], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("README.md", () => {
  it("quick start: npm start prints its banner and a curl, and serves the echo app", async () => {
    const out = gateway!.output();
    expect(out).toContain("curl -s");
    const res = await fetch(`http://127.0.0.1:${port}/fal/run/multirank/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "hello from two ranks" }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(JSON.stringify(await res.json())).toContain("hello from two ranks");
  }, 120_000);

  for (const block of blocks) {
    const title = `line ${block.line}: ${block.lang || "no language"}${block.marker ? ` (${block.marker.kind}${block.marker.reason ? `: ${block.marker.reason}` : ""})` : ""}`;
    if (block.marker?.kind === "covered") {
      // Not run here (it installs, or runs until stopped; the reason says which test runs it), but checked:
      // it parses, and every multirank command and npm script it names exists.
      it(title, () => {
        expect(shellSyntaxProblem(block.code), `README.md line ${block.line}: the block does not parse`).toBeUndefined();
        for (const command of multirankCommands(block.code)) {
          expect(isMultirankCommand(command), `README.md line ${block.line}: multirank ${command} is not a command`).toBe(true);
        }
        for (const script of npmScripts(block.code)) {
          expect(KNOWN_SCRIPTS.has(script), `README.md line ${block.line}: npm ${script}: no such script in package.json or the project template`).toBe(true);
        }
      });
      continue;
    }
    it(
      title,
      async () => {
        const kind = blockKind(block.lang);
        if (kind === "json") {
          expect(() => JSON.parse(block.code), `README.md line ${block.line}: a json block must parse`).not.toThrow();
          return;
        }
        if (block.marker?.kind === "sample") {
          expect(block.code.trim(), `README.md line ${block.line}: an empty sample`).not.toBe("");
          return;
        }
        if (block.marker?.kind === "fragment") {
          const problem = kind === "program" ? await parses(block.code) : "only ts/js blocks can be fragments";
          expect(problem, `README.md line ${block.line}: the fragment does not parse\n${block.code}`).toBeUndefined();
          return;
        }
        if (kind === "program") await runProgram(block);
        else if (kind === "shell") await runShell(block);
        else throw new Error(`README.md line ${block.line}: a "${block.lang}" block cannot run; give it a language or mark it <!-- readme-test: sample -->`);
      },
      BLOCK_TIMEOUT_MS + 30_000,
    );
  }

  it("quick start: npm start stops gracefully on SIGTERM", async () => {
    // To the CLI alone, as a process manager sends it; its ranks are its to stop.
    gateway!.child.kill("SIGTERM");
    const code = await gateway!.exited;
    expect(gateway!.output()).toContain("stopped");
    expect(code, tail(gateway!.output())).toBe(0);
  }, 60_000);
});
