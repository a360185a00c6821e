/**
 * Remote functions on a server host: a gateway with functions on, started
 * here on 127.0.0.1, and the fixtures' functions moved to it with `.on()`.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pack } from "../../src/codec/packer.js";
import { packIsNumberFixture, refuseRegistry } from "../helpers/fixture-package.js";
import { ownChildPids, waitFor } from "../helpers/processes.js";

type Multirank = typeof import("multirank");
type MathFx = typeof import("../fixtures/functions/math.js");
type ExtraFx = typeof import("../fixtures/functions/server-extra.js");
type OuterFx = typeof import("../fixtures/functions/chain-outer.js");

const ADMIN = "admin-key-0123456789";
const CALLER = "caller:key-0123456789";
const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "../..");

let mr: Multirank;
let math: MathFx;
let extra: ExtraFx;
let outer: OuterFx;
let work: string;
let gateway: Awaited<ReturnType<Multirank["createGateway"]>>;
let url: string;
let admin: ReturnType<Multirank["server"]>;
let caller: ReturnType<Multirank["server"]>;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "multirank-fn-server-"));
  process.env.TEST_FN_DEP = packIsNumberFixture(work);
  // The client's and the server's caches apart, as on two machines.
  process.env.MULTIRANK_CACHE_DIR = join(work, "client-cache");
  process.env.MULTIRANK_DATA_DIR = join(work, "client-data");
  refuseRegistry();
  mr = await import("multirank");
  math = await import("../fixtures/functions/math.js");
  extra = await import("../fixtures/functions/server-extra.js");
  outer = await import("../fixtures/functions/chain-outer.js");
  gateway = await mr.createGateway({
    apps: [],
    keys: [CALLER],
    page: false,
    logger: (await import("pino")).pino({ level: "silent" }),
    functionServer: { adminKeys: [ADMIN], cacheDir: join(work, "server-cache"), dataDir: join(work, "server-data") },
  });
  url = await gateway.listen({ port: 0, host: "127.0.0.1" });
  admin = mr.server(url, { key: ADMIN });
  caller = mr.server(url, { key: CALLER });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await mr?.local.close();
  expect(await waitFor(() => ownChildPids().length === 0, 20_000), `left: ${ownChildPids().join(", ")}`).toBe(true);
  rmSync(work, { recursive: true, force: true });
}, 120_000);

async function registered(): Promise<string[]> {
  const response = await fetch(`${url}/fn/v1/functions`, { headers: { authorization: `Key ${CALLER}` } });
  return ((await response.json()) as { functions: Array<{ name: string }> }).functions.map((f) => f.name);
}

describe("remote functions on a server host", () => {
  it("registers with an admin key, builds the environment on the server, and calls it there", async () => {
    const onServer = math.sumNumbers.on(admin);
    expect(onServer.host.description).toBe(url);
    expect(await onServer([1, "2", "x"])).toBe(3);
    // The server built its own environment; the client built none.
    expect(existsSync(join(work, "server-cache"))).toBe(true);
    expect(existsSync(join(work, "client-cache"))).toBe(false);
    expect(await registered()).toContain("t-sum-numbers");
  }, 180_000);

  it("isolates both ways there, keeps the function warm, and starts it again after keepAlive", async () => {
    const where = math.whereAmI.on(admin);
    const first = await where();
    expect(first).toMatchObject({ remote: true, doubled: 42, seesCallersPackages: false });
    expect(math.isRemoteHere).toBe(false);
    // keepAlive 0.5 s: the runner stops once idle, and the next call starts another.
    await expect.poll(async () => ((await (await fetch(`${url}/healthz`)).json()) as { apps: Record<string, { runners: { idle: number; busy: number; starting: number } }> }).apps["fn/t-where"]?.runners, { timeout: 30_000 }).toEqual({ starting: 0, idle: 0, busy: 0, stopping: 0 });
    expect((await where()).pid).not.toBe(first.pid);
  }, 180_000);

  it("a caller's key calls what an admin registered, but cannot register new code; no key is refused", async () => {
    expect(await math.sumNumbers.on(caller)([4, "5"])).toBe(9);
    // (Registering t-sum-numbers registered its module's other functions too, so that they can call each other.)
    expect(await math.squareOrFail.on(caller)(3)).toBe(9);
    const refused = await extra.readModel.on(caller)("x").catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: "MULTIRANK_ERR_GATEWAY_FORBIDDEN", status: 403 });
    expect(refused).toBeInstanceOf(mr.HostError);
    const anonymous = await math.sumNumbers.on(mr.server(url))([1]).catch((e: unknown) => e);
    expect(anonymous).toMatchObject({ code: "MULTIRANK_ERR_GATEWAY_UNAUTHORIZED", status: 401 });
    expect(await registered()).not.toContain("t-read-model");
  }, 180_000);

  it("is an app over fal's and Runpod's protocols, its JSON body the argument", async () => {
    // The first call registers it; fal's and Runpod's routes find it as the app fn/t-shout.
    expect(await extra.shout.on(admin)({ text: "warm" })).toEqual({ upper: "WARM" });
    const fal = await fetch(`${url}/fal/run/fn/t-shout`, { method: "POST", headers: { authorization: `Key ${CALLER}`, "content-type": "application/json" }, body: JSON.stringify({ text: "fal" }) });
    expect(fal.status).toBe(200);
    expect(await fal.json()).toEqual({ upper: "FAL" });
    const queued = (await (await fetch(`${url}/fal/queue/fn/t-shout`, { method: "POST", headers: { authorization: `Key ${CALLER}`, "content-type": "application/json" }, body: JSON.stringify({ text: "queue" }) })).json()) as { request_id: string };
    await expect.poll(async () => (await fetch(`${url}/fal/queue/fn/t-shout/requests/${queued.request_id}/status`, { headers: { authorization: `Key ${CALLER}` } })).status, { timeout: 60_000 }).toBe(200);
    const runpod = await fetch(`${url}/v2/fn--t-shout/runsync`, { method: "POST", headers: { authorization: `Bearer ${CALLER}`, "content-type": "application/json" }, body: JSON.stringify({ input: { text: "runpod" } }) });
    expect(await runpod.json()).toMatchObject({ status: "COMPLETED", output: { upper: "RUNPOD" } });
  }, 180_000);

  it("serves a function declared with method and path directly there", async () => {
    const response = await fetch(`${url}/api/shout`, { method: "POST", headers: { authorization: `Key ${CALLER}`, "content-type": "application/json" }, body: JSON.stringify({ text: "hello" }) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ upper: "HELLO" });
    const unauthorized = await fetch(`${url}/api/shout`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(unauthorized.status).toBe(401);
    expect((await fetch(`${url}/api/nothing-here`, { method: "POST", headers: { authorization: `Key ${CALLER}` } })).status).toBe(404);
  }, 180_000);

  it("streams a generator over SSE, carries remote errors, and runs a sharded class", async () => {
    const items: unknown[] = [];
    for await (const item of math.countTo.on(admin).stream(3)) items.push(item);
    expect(items).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    const error = await math.fails.on(admin)("bad input").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(mr.RemoteExecutionError);
    expect(error).toMatchObject({ remoteName: "TypeError", remoteMessage: "bad input", rank: 0, host: url, functionName: "t-fails" });
    expect(await math.rankSum.on(admin)({ scale: 10 })).toEqual({ sum: 30, worldSize: 2 });
  }, 180_000);

  it("map keeps input order and stops at the first error; cached loads once per warm environment", async () => {
    const squares: number[] = [];
    for await (const value of math.squareOrFail.on(admin).map([3, 1, 2], { concurrency: 2 })) squares.push(value);
    expect(squares).toEqual([9, 1, 4]);
    const seen: number[] = [];
    const failed = await (async () => {
      for await (const value of math.squareOrFail.on(admin).map([2, -1, 3])) seen.push(value);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([4]);
    expect(failed).toMatchObject({ code: "MULTIRANK_ERR_REMOTE", remoteName: "RangeError" });
    const useModel = math.useModel.on(admin);
    expect(await useModel("/m")).toEqual({ sum: 6, loaderRuns: 1 });
    expect(await useModel("/m")).toEqual({ sum: 6, loaderRuns: 1 });
  }, 180_000);

  it("cancel closes the connection and frees the runner; submit reports CANCELLED", async () => {
    const slow = extra.sleepy.on(admin);
    expect(await slow(1)).toBe(1);
    const call = slow.submit(600_000);
    await busy("fn/t-sleepy");
    call.cancel();
    await expect(call.result()).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect((await call.output()).status).toBe("CANCELLED");
    // maxRunners 1: this call can only run once the cancelled one left the rank.
    expect(await slow(5)).toBe(5);
  }, 180_000);

  it("a function calls another on the same server, each in its own process; cancelling the outer cancels the inner", async () => {
    const result = await outer.outerPlusOne.on(admin)(20);
    expect(result.value).toBe(41);
    expect(result.innerPid).not.toBe(result.outerPid);
    expect(await registered()).toEqual(expect.arrayContaining(["t-outer-plus-one", "t-inner-double"]));
    const marker = join(work, "inner-cancelled");
    const call = outer.outerWait.on(admin).submit(marker);
    // Once the inner call runs on its runner, cancel the outer.
    await busy("fn/t-inner-wait");
    call.cancel();
    await expect(call.result()).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(await waitFor(() => existsSync(marker), 60_000, 50)).toBe(true);
    expect(readFileSync(marker, "utf8")).toMatch(/^cancelled in \d+/);
  }, 240_000);

  it("syncDir uploads to the server's data root, and the function reads it through dataPath", async () => {
    const models = join(work, "models");
    mkdirSync(models);
    writeFileSync(join(models, "weights.txt"), "w=1");
    const first = await mr.syncDir(models, "/data/models", { host: admin });
    expect(first.uploaded).toEqual(["weights.txt"]);
    expect(first.path.startsWith(join(work, "server-data"))).toBe(true);
    expect((await mr.syncDir(models, "/data/models", { host: admin })).skipped).toEqual(["weights.txt"]);
    await expect(mr.syncDir(models, "/data/../escape", { host: admin })).rejects.toThrow();
    expect(await extra.readModel.on(admin)("weights.txt")).toBe("w=1");
  }, 180_000);
});

describe("server registration refusals leave what was registered", () => {
  const registration = (fields: Record<string, unknown>): Buffer =>
    pack({ name: "t-sum-numbers", source: "elsewhere:/x.ts", hash: "0".repeat(64), code: "", dependencies: [], tarballs: {}, options: { timeout: 300, keepAlive: 1 }, secrets: {}, ...fields });
  const post = (body: Buffer, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${url}/fn/v1/functions`, { method: "POST", headers: { authorization: `Key ${ADMIN}`, "content-type": "application/x-msgpack", ...headers }, body: body as unknown as Uint8Array<ArrayBuffer> });
  const sha = (text: string): string => execFileSync("sha256sum", { input: text, encoding: "utf8" }).split(" ")[0]!;

  it("a name another module registered is a 409 clash; a bad bundle and a failed install are 422", async () => {
    expect(await math.sumNumbers.on(admin)([1])).toBe(1);
    const clash = await post(registration({}));
    expect(clash.status).toBe(409);
    expect(await clash.json()).toMatchObject({ code: "MULTIRANK_ERR_GATEWAY_CONFLICT" });
    const code = "export const x = (;";
    const badBundle = await post(registration({ name: "t-new", hash: sha(code), code }));
    expect(badBundle.status).toBe(422);
    expect(await badBundle.json()).toMatchObject({ code: "MULTIRANK_ERR_BUNDLE" });
    const good = "export const y = 1;";
    const badDependency = await post(registration({ name: "t-new", hash: sha(good), code: good, dependencies: ["fn-no-such-package@1.0.0"] }));
    expect(badDependency.status).toBe(422);
    const body = (await badDependency.json()) as { code: string; error: string };
    expect(body.code).toBe("MULTIRANK_ERR_DEPENDENCY_INSTALL");
    expect(body.error).toMatch(/fn-no-such-package@1\.0\.0/);
    expect(await registered()).not.toContain("t-new");
    // The function registered before still answers.
    expect(await math.sumNumbers.on(admin)([2, "3"])).toBe(5);
  }, 180_000);

  it("a client of another version is refused with both versions named, on either side", async () => {
    const refused = await post(registration({}), { "x-multirank-version": "9.9.9" });
    expect(refused.status).toBe(409);
    const body = (await refused.json()) as { code: string; error: string };
    expect(body.code).toBe("MULTIRANK_ERR_VERSION_MISMATCH");
    expect(body.error).toContain("9.9.9");
    expect(body.error).toContain(mr.MULTIRANK_VERSION);
    // A server of another version: the client says so before anything runs.
    const other: Server = createServer((_request, response) => response.writeHead(200, { "x-multirank-version": "0.0.1", "content-type": "application/json" }).end("{}"));
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      const port = (other.address() as { port: number }).port;
      const error = await math.sumNumbers.on(mr.server(`http://127.0.0.1:${port}`, { key: ADMIN }))([1]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(mr.VersionMismatchError);
      expect((error as Error).message).toContain("0.0.1");
      expect((error as Error).message).toContain(mr.MULTIRANK_VERSION);
    } finally {
      other.close();
    }
  }, 60_000);

  it("without an admin key, a server that listens beyond loopback takes no code", async () => {
    const open = await mr.createGateway({ apps: [], page: false, logger: (await import("pino")).pino({ level: "silent" }), functionServer: { cacheDir: join(work, "open-cache") } });
    try {
      const address = await open.listen({ port: 0, host: "0.0.0.0" });
      const port = new URL(address).port;
      const error = await math.sumNumbers.on(mr.server(`http://127.0.0.1:${port}`))([1]).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "MULTIRANK_ERR_GATEWAY_FORBIDDEN", status: 403 });
      expect((error as Error).message).toMatch(/admin key/);
    } finally {
      await open.close();
    }
  }, 60_000);

  it("MULTIRANK_HOST and MULTIRANK_KEY make the server the default host", async () => {
    const script = join(work, "main.mts");
    writeFileSync(script, `import { whereAmI } from ${JSON.stringify(join(root, "test/fixtures/functions/math.ts"))};\nconst r = await whereAmI();\nprocess.stdout.write(JSON.stringify({ remote: r.remote, host: whereAmI.host.description }));\n`);
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", script], {
      cwd: root,
      env: { ...process.env, MULTIRANK_HOST: url, MULTIRANK_KEY: ADMIN },
      timeout: 120_000,
    });
    expect(JSON.parse(stdout)).toEqual({ remote: true, host: url });
    expect(await registered()).toContain("t-where");
  }, 180_000);
});

/** Resolves once a runner of `app` on the test server is running a call. */
async function busy(app: string): Promise<void> {
  await expect
    .poll(
      async () => {
        const health = (await (await fetch(`${url}/healthz`)).json()) as { apps: Record<string, { runners: { busy: number } }> };
        return health.apps[app]?.runners.busy ?? 0;
      },
      { timeout: 120_000, interval: 50 },
    )
    .toBeGreaterThan(0);
}

describe("multirank serve with functions", () => {
  it("takes admin keys from MULTIRANK_ADMIN_KEYS and --admin-key, a data dir from --data-dir, and stops cleanly", async () => {
    const script = join(root, "test/fixtures/gateway/serve-main.ts");
    const dataDir = join(work, "cli-data");
    const child = spawn(process.execPath, ["--import", "tsx", script, "--port", "0", "--admin-key", "cli-admin-2-abcdef", "--data-dir", dataDir, "--cache-dir", join(work, "cli-cache")], {
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent", MULTIRANK_ADMIN_KEYS: "cli-admin-1-abcdef" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      expect(await waitFor(() => stdout.includes("Ctrl-C"), 60_000)).toBe(true);
      const cliUrl = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
      expect(stdout).toContain(`MULTIRANK_HOST=${cliUrl}`);
      expect(await math.sumNumbers.on(mr.server(cliUrl, { key: "cli-admin-1-abcdef" }))([1, "2"])).toBe(3);
      const models = join(work, "cli-models");
      mkdirSync(models);
      writeFileSync(join(models, "w.txt"), "cli");
      expect((await mr.syncDir(models, "/data/models", { host: mr.server(cliUrl, { key: "cli-admin-2-abcdef" }) })).path).toBe(join(dataDir, "models"));
      expect(await extra.readModel.on(mr.server(cliUrl, { key: "cli-admin-2-abcdef" }))("w.txt")).toBe("cli");
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 180_000);
});
