/**
 * Loading a gateway's configuration the way a new project does: a
 * `gateway.config.ts` in a CommonJS project (npm init's default), `multirank
 * serve --config` with mistakes in it (one clear line, exit 2), and worker
 * modules checked at load without starting a rank.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createGateway, defineApp } from "../../src/server/index.js";
import { ownChildPids, waitFor } from "../helpers/processes.js";
import { example, fixture } from "../helpers/runners.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "dist/cli/main.js");
const quiet = pino({ level: "silent" });
const execFileAsync = promisify(execFile);

/** A project as `npm init -y` makes it (no "type"), multirank linked in, a worker and the given config. */
function cjsProject(config: string): string {
  const dir = mkdtempSync(join(tmpdir(), "multirank-cjs-project-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "my-app", version: "1.0.0", main: "index.js", license: "ISC" }, null, 2));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(root, join(dir, "node_modules/multirank"), "dir");
  mkdirSync(join(dir, "workers"));
  writeFileSync(
    join(dir, "workers/echo.ts"),
    'import { DistributedWorker } from "multirank";\nexport default class Echo extends DistributedWorker<{ text: string }, { text: string }> {\n  call(input: { text: string }) { return input; }\n}\n',
  );
  writeFileSync(join(dir, "gateway.config.ts"), config);
  projects.push(dir);
  return dir;
}

const projects: string[] = [];
afterAll(() => {
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  const gone = await waitFor(() => ownChildPids().length === 0, 15_000);
  expect(gone, `child processes left behind: ${ownChildPids().join(", ")}`).toBe(true);
});

const CONFIG = `import { defineApp, defineGatewayConfig } from "multirank";

export default defineGatewayConfig({
  apps: [
    defineApp({ name: "acme/echo", worker: "./workers/echo.ts", exampleInput: { text: "it's here" } }),
    defineApp({ name: "acme/plain", worker: "./workers/echo.ts" }),
  ],
  keys: ["id:secret"],
});
`;

/** Runs `multirank serve` (the built CLI) in `cwd` until it prints its banner or exits; then SIGTERM. */
async function serve(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { GATEWAY_KEY: _key, HF_TOKEN: _token, ...inherited } = process.env;
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", ...args], {
    cwd,
    env: { ...inherited, MULTIRANK_LOG_LEVEL: "silent", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    // Upper bound: loading the config through tsx takes seconds on a busy machine.
    await Promise.race([exited, waitFor(() => stdout.includes("Ctrl-C"), 60_000)]);
    if (child.exitCode === null) child.kill("SIGTERM");
    return { code: await exited, stdout, stderr };
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

describe("a gateway.config.ts in a CommonJS project", () => {
  it("loads with loadGatewayConfig (it failed with ERR_REQUIRE_CYCLE_MODULE)", async () => {
    const dir = cjsProject(CONFIG);
    // In plain Node, as a user runs it: vitest's own loader would compile the config itself and hide the failure.
    const script = `const { loadGatewayConfig } = await import("multirank");
      const config = await loadGatewayConfig("gateway.config.ts");
      process.stdout.write(JSON.stringify({ baseDir: config.baseDir, apps: config.apps.map((app) => app.name) }));`;
    const { stdout } = await execFileAsync(process.execPath, ["--input-type=module", "-e", script], { cwd: dir, timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual({ baseDir: dir, apps: ["acme/echo", "acme/plain"] });
  });

  it("is served by multirank serve, whose curl expands $FAL_KEY and does not invent an input", async () => {
    const dir = cjsProject(CONFIG);
    const { code, stdout, stderr } = await serve(dir, ["--config", "gateway.config.ts"]);
    expect(code, stderr).toBe(0);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
    // Double quotes: the shell expands $FAL_KEY; the example's own quote is escaped for the shell.
    expect(stdout).toContain(`curl -s ${url}/fal/run/acme/echo -H "Authorization: Key $FAL_KEY" -H 'content-type: application/json' -d '{"text":"it'\\''s here"}'`);
    expect(stdout).not.toContain("'Authorization");
  });

  it("an app without exampleInput gets a placeholder, not -d '{}'", async () => {
    const dir = cjsProject(`import { defineApp } from "multirank";\nexport default [defineApp({ name: "acme/plain", worker: "./workers/echo.ts" })];\n`);
    const { code, stdout } = await serve(dir, ["--config", "gateway.config.ts"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/curl -s http:\S+\/fal\/run\/acme\/plain -H 'content-type: application\/json' -d '<input JSON>'/);
    expect(stdout).toContain("give the app an exampleInput");
    expect(stdout).not.toContain("-d '{}'");
  });
});

describe("the README's Apps example", () => {
  /** The README's `// gateway.config.ts` block, as a user pastes it. */
  function readmeConfig(): string {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const block = /```ts\n(\/\/ gateway\.config\.ts\n[\s\S]*?)```/.exec(readme);
    expect(block, "the README has a gateway.config.ts block").not.toBeNull();
    return block![1]!;
  }

  it("loads as pasted on this host with the variables it names set, and names the key when one is unset", async () => {
    const dir = cjsProject(readmeConfig());
    mkdirSync(join(dir, "workers"), { recursive: true });
    writeFileSync(join(dir, "workers/text-stream.ts"), readFileSync(join(root, "workers/text-stream.ts")));
    const ok = await serve(dir, ["--config", "gateway.config.ts"], { GATEWAY_KEY: "my-id:my-secret", HF_TOKEN: "hf_test" });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain("acme/text-stream");
    const unset = await serve(dir, ["--config", "gateway.config.ts"], { HF_TOKEN: "hf_test" });
    expect(unset.code).toBe(2);
    expect(unset.stdout).toMatch(/^multirank serve: options\.keys\[0\] must be a non-empty string; got undefined/);
  });
});

describe("multirank serve with a broken config prints one line and exits 2", () => {
  it.each([
    ["a missing config file", undefined, "missing.config.ts", /^multirank serve: cannot load missing\.config\.ts: config file \/\S+\/missing\.config\.ts does not exist$/],
    [
      "a misspelt option",
      `import { defineApp } from "multirank";\nexport default [defineApp({ name: "acme/echo", worker: "./workers/echo.ts", keepalive: 300 })];\n`,
      "gateway.config.ts",
      /^multirank serve: cannot load gateway\.config\.ts: app acme\/echo: options has no field "keepalive" \(did you mean "keepAlive"\?\)$/,
    ],
    [
      "a key from an unset variable",
      `import { defineApp } from "multirank";\nexport default { apps: [defineApp({ name: "acme/echo", worker: "./workers/echo.ts" })], keys: [process.env.MULTIRANK_TEST_UNSET_KEY!] };\n`,
      "gateway.config.ts",
      /^multirank serve: options\.keys\[0\] must be a non-empty string; got undefined/,
    ],
  ])("%s", async (_what, config, file, line) => {
    const dir = cjsProject(config ?? CONFIG);
    const { code, stdout, stderr } = await serve(dir, ["--config", file]);
    expect(code).toBe(2);
    expect(stdout.trimEnd()).toMatch(line);
    expect(stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(stdout + stderr).not.toMatch(/\n\s+at /);
  });
});

describe("worker modules are checked when the gateway loads, before any rank starts", () => {
  it.each([
    ["a missing file", "/no/such/worker.ts", /app t\/w: options\.worker: no such file \/no\/such\/worker\.ts/],
    ["no default export", fixture("no-default-export"), /has no default export \(it exports only Forgotten\)/],
  ])("%s is a ConfigError", async (_what, worker, message) => {
    await expect(createGateway({ apps: [defineApp({ name: "t/w", worker })], logger: quiet, host: { gpuCount: 0 } })).rejects.toMatchObject({
      code: "MULTIRANK_ERR_GATEWAY_CONFIG",
      message: expect.stringMatching(message),
    });
    expect(ownChildPids()).toEqual([]);
  });

  it("a good worker passes, and its top-level code does not run in the gateway", async () => {
    const dir = cjsProject(CONFIG);
    const marker = join(dir, "top-level-ran");
    const worker = join(dir, "workers/side-effect.mjs");
    writeFileSync(worker, `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(marker)}, "");\nexport { default } from "./echo.ts";\n`);
    const gateway = await createGateway({ apps: [defineApp({ name: "t/echo", worker: example("echo") }), defineApp({ name: "t/side", worker })], logger: quiet, host: { gpuCount: 0 } });
    await gateway.close();
    expect(existsSync(marker)).toBe(false);
  });
});
