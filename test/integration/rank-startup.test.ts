/**
 * What a rank loads to start (issue 17): the bundled runtime in dist/rank/,
 * the worker's `multirank/worker` resolved to that same bundle, and none of
 * ZeroMQ, msgpackr's native extractor or pino's transport thread on one host.
 * The group of a runner's own ranks meets at a unix socket.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../fixtures/collectives-spawn.js";
import { cleanUpRunners, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

const project = mkdtempSync(join(tmpdir(), "multirank-rank-startup-"));
const previousCacheDir = process.env.MULTIRANK_CACHE_DIR;

beforeAll(() => {
  mkdirSync(join(project, "node_modules"));
  symlinkSync(fileURLToPath(new URL("../..", import.meta.url)), join(project, "node_modules", "multirank"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }));
  process.env.MULTIRANK_CACHE_DIR = join(project, "cache");
});

afterAll(() => {
  if (previousCacheDir === undefined) delete process.env.MULTIRANK_CACHE_DIR;
  else process.env.MULTIRANK_CACHE_DIR = previousCacheDir;
  rmSync(project, { recursive: true, force: true });
});

interface Report {
  rank: number;
  script: string;
  execArgv: string[];
  loaded: string[];
  workerEntry: string;
  groupSum: number;
  rendezvousSocket: string | undefined;
}

// What the rank has loaded, from its CommonJS cache (ZeroMQ and the native extractor are CommonJS).
const BODY = `
  override async call(): Promise<unknown> {
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules\\/(zeromq|msgpackr-extract|thread-stream)\\//.test(k));
    const reports = await this.group.allGather({
      rank: this.rank,
      script: process.argv[1],
      execArgv: process.execArgv,
      loaded,
      workerEntry: ENTRY,
      groupSum: (await this.group.allReduce(new Float64Array([this.rank + 1])))[0],
      rendezvousSocket: process.env.MULTIRANK_RENDEZVOUS_SOCKET,
    });
    return reports;
  }
}`;

function write(name: string, text: string): string {
  const path = join(project, name);
  writeFileSync(path, text);
  return path;
}

describe("rank start-up", () => {
  it.each([
    [
      "a .ts worker importing the package root (compiled by the runner)",
      "probe.ts",
      `import { createRequire } from "node:module";\nimport { DistributedWorker } from "multirank";\nconst ENTRY = "compiled";\nexport default class Probe extends DistributedWorker<unknown, unknown> {${BODY}`,
    ],
    [
      "a .js worker importing multirank/worker",
      "probe.js",
      `import { createRequire } from "node:module";\nimport { DistributedWorker } from "multirank/worker";\nconst ENTRY = import.meta.resolve("multirank/worker");\nexport default class Probe extends DistributedWorker {${BODY.replace(": Promise<unknown>", "").replace("override ", "")}`,
    ],
  ])("%s runs on the bundled runtime, shares its module, and loads no ZeroMQ on one host", async (_name, file, source) => {
    const worker = write(file, source);
    const runner = makeRunner({ worker, worldSize: 3, cwd: project });
    await runner.start({ timeout: 60 });
    const reports = (await runner.invoke({})) as Report[];
    await runner.stop();
    expect(reports).toHaveLength(3);
    const sockets = new Set(reports.map((r) => r.rendezvousSocket));
    expect(sockets.size).toBe(1);
    expect([...sockets][0]).toMatch(/\/group-[0-9a-f]+\.sock$/);
    for (const report of reports) {
      expect(report.script).toMatch(/dist\/rank\/rank-main\.js$/);
      expect(report.execArgv).toContain("--conditions=multirank-rank");
      expect(report.loaded).toEqual([]);
      expect(report.groupSum).toBe(6);
      if (report.workerEntry !== "compiled") expect(report.workerEntry).toMatch(/dist\/rank\/worker\.js$/);
    }
  }, 90_000);

  it("a runner given a rendezvous port meets there over tcp, as before", async () => {
    const worker = write("probe-tcp.ts", `import { createRequire } from "node:module";\nimport { DistributedWorker } from "multirank";\nconst ENTRY = "compiled";\nexport default class Probe extends DistributedWorker<unknown, unknown> {${BODY}`);
    const runner = makeRunner({ worker, worldSize: 2, cwd: project, masterPort: await freePort() });
    await runner.start({ timeout: 60 });
    const reports = (await runner.invoke({})) as Report[];
    await runner.stop();
    for (const report of reports) {
      expect(report.rendezvousSocket).toBeUndefined();
      expect(report.groupSum).toBe(3);
      expect(report.loaded.some((k) => k.includes("/zeromq/"))).toBe(true);
    }
  }, 90_000);
});
