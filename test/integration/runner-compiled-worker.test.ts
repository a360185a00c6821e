import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RankError } from "../../src/index.js";
import { cleanUpRunners, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

// A project of its own, where `multirank` resolves (through node_modules) to this package.
const project = mkdtempSync(join(tmpdir(), "multirank-compiled-"));
const cacheDir = join(project, "cache");
const previousCacheDir = process.env.MULTIRANK_CACHE_DIR;

beforeAll(() => {
  mkdirSync(join(project, "node_modules"));
  symlinkSync(fileURLToPath(new URL("../..", import.meta.url)), join(project, "node_modules", "multirank"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }));
  process.env.MULTIRANK_CACHE_DIR = cacheDir;
});

afterAll(() => {
  if (previousCacheDir === undefined) delete process.env.MULTIRANK_CACHE_DIR;
  else process.env.MULTIRANK_CACHE_DIR = previousCacheDir;
  rmSync(project, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const path = join(project, name);
  writeFileSync(path, text);
  return path;
}

const WORKER = `import { DistributedWorker } from "multirank";
import { label } from "./helper.ts";

export default class Compiled extends DistributedWorker<{ fail?: boolean }, unknown> {
  override call(input: { fail?: boolean }): unknown {
    if (input.fail) {
      throw new RangeError("failed on purpose");
    }
    return { label, url: import.meta.url, dirname: import.meta.dirname };
  }
}
`;

function compiledFiles(): string[] {
  try {
    return readdirSync(join(cacheDir, "workers")).filter((name) => name.endsWith(".mjs"));
  } catch {
    return [];
  }
}

describe("a .ts worker compiled once by the runner", () => {
  it("runs from the cache, sees its own import.meta, and a changed local import is compiled again", async () => {
    const worker = write("compiled.ts", WORKER);
    write("helper.ts", `export const label: string = "first";\n`);
    const runner = makeRunner({ worker, worldSize: 2 });
    await runner.start();
    // Under tsx the URL would carry tsx's query; compiled, it is the source file's own.
    expect(await runner.invoke({})).toEqual({ label: "first", url: pathToFileURL(worker).href, dirname: project });
    expect(compiledFiles()).toHaveLength(1);
    await runner.stop();

    write("helper.ts", `export const label: string = "second";\n`);
    const again = makeRunner({ worker, worldSize: 1 });
    await again.start();
    expect(await again.invoke({})).toMatchObject({ label: "second" });
    expect(compiledFiles()).toHaveLength(2);
  });

  it("points stack traces at the .ts source and line", async () => {
    const worker = write("compiled-throws.ts", WORKER);
    write("helper.ts", `export const label: string = "first";\n`);
    const runner = makeRunner({ worker, worldSize: 1 });
    await runner.start();
    const error = await runner.invoke({ fail: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RankError);
    expect((error as RankError).remoteStack).toContain("compiled-throws.ts:7");
  });

  it("imports the package root when the worker uses a name only the root has", async () => {
    const worker = write("root-name.ts", `import { DistributedWorker, MULTIRANK_VERSION } from "multirank";
export default class RootName extends DistributedWorker<unknown, string> {
  override call(): string {
    return MULTIRANK_VERSION;
  }
}
`);
    const runner = makeRunner({ worker, worldSize: 1 });
    await runner.start();
    expect(typeof (await runner.invoke({}))).toBe("string");
  });

  it("loads a worker through tsx when it needs what a bundle cannot give it (require)", async () => {
    const worker = write("uses-require.ts", `import { createRequire } from "node:module";
import { DistributedWorker } from "multirank";
const require = createRequire(import.meta.url);
export default class UsesRequire extends DistributedWorker<unknown, string> {
  override call(): string {
    return require("node:path").sep as string;
  }
}
`);
    const before = compiledFiles().length;
    const runner = makeRunner({ worker, worldSize: 1 });
    await runner.start();
    expect(await runner.invoke({})).toBe("/");
    expect(compiledFiles()).toHaveLength(before);
  });
});
