import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbortError, BundleError, UndeclaredDependencyError, ValidationError } from "../../src/errors.js";
import { bundleModule, packageNameOf } from "../../src/functions/bundle.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
let root: string;

function write(dir: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

let count = 0;
function project(files: Record<string, string>): string {
  return write(join(root, `p${++count}`), files);
}

// A module with everything a remote function's module may hold: TypeScript, a
// helper file, a module constant, a closure, a package, a builtin, multirank
// itself, a dynamic import and a require from a .js helper.
const MATH = {
  "functions/math.ts": `
import isNumber from "is-number";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ValidationError } from "multirank";
import { double } from "./lib/helper.js";
import { viaRequire } from "./lib/cjs-style.js";

const SCALE: number = 10;
// a module's own require must not clash with the one the bundle brings
const require = createRequire(import.meta.url);
export const ownRequire = (): string => require("left-pad")("a", 2);
export const loadedAt: string = "top-level ran";

export function makeCounter(): () => number {
  let n = 0;
  return () => ++n;
}

export async function sum(xs: unknown[]): Promise<number> {
  return double(xs.filter((x) => isNumber(x)).reduce((s: number, x) => s + Number(x), 0)) * SCALE;
}

export async function pad(s: string): Promise<string> {
  const { default: leftPad } = await import("left-pad");
  return leftPad(s, 5);
}

export const fsKind = (): string => typeof readFileSync;
export const errorCode = (): string => new ValidationError("x").code;
export { viaRequire };
`,
  "functions/lib/helper.ts": `export const double = (x: number): number => x * 2;\n`,
  "functions/lib/cjs-style.js": `export function viaRequire(x) { return require("is-number")(x); }\n`,
};
const MATH_DEPS = ["is-number@7.0.0", "left-pad@1.3.0"];

function fakePackage(dir: string, name: string, version: string, indexJs: string): void {
  write(join(dir, "node_modules", name), {
    "package.json": JSON.stringify({ name, version, main: "index.js" }),
    "index.js": indexJs,
  });
}

/** A gzipped tarball holding `package/package.json`, as `npm pack` lays it out. */
function tarball(path: string, packageJson: object): string {
  const body = Buffer.from(JSON.stringify(packageJson));
  const header = Buffer.alloc(512);
  header.write("package/package.json", 0);
  header.write("0000644\0", 100);
  header.write(`${body.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write("0", 156);
  header.write("ustar\u000000", 257);
  header.fill(" ", 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  body.copy(padded);
  writeFileSync(path, gzipSync(Buffer.concat([header, padded, Buffer.alloc(1024)])));
  return path;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "multirank-bundle-"));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("bundleModule", () => {
  it("bundles a TypeScript module with its helpers into ESM, leaving packages bare", async () => {
    const dir = project(MATH);
    const bundle = await bundleModule({ entry: join(dir, "functions/math.ts"), dependencies: MATH_DEPS });
    expect(bundle.imports).toEqual(["is-number", "left-pad", "multirank"]);
    expect(bundle.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(bundle.code).toMatch(/^export \{/m);
    expect(bundle.code).not.toContain("module.exports");
    expect(bundle.code).toContain('from "is-number"');
    expect(bundle.code).toContain('from "multirank"');
    expect(bundle.code).toContain('import("left-pad")');
    expect(bundle.code).toContain('from "node:fs"');
    // the helper is inlined, types are gone, nothing is imported by a relative path
    expect(bundle.code).toContain("x * 2");
    expect(bundle.code).not.toContain(": number");
    expect(bundle.code).not.toMatch(/from "\.{1,2}\//);
    expect(bundle.code).toContain("sourceMappingURL=data:application/json;base64,");
    // no absolute path of this machine in the code or its source map
    const map = JSON.parse(Buffer.from(/base64,(.*)$/m.exec(bundle.code)![1]!, "base64").toString()) as { sources: string[] };
    expect(map.sources.sort()).toEqual(["lib/cjs-style.js", "lib/helper.ts", "math.ts"]);
    expect(bundle.code).not.toContain(dir);
  });

  it("gives the same hash for the same files anywhere, and a new one when a helper changes", async () => {
    const a = project(MATH);
    const b = project(MATH);
    const first = await bundleModule({ entry: join(a, "functions/math.ts"), dependencies: MATH_DEPS });
    const again = await bundleModule({ entry: pathToFileURL(join(a, "functions/math.ts")).href, dependencies: MATH_DEPS });
    const elsewhere = await bundleModule({ entry: join(b, "functions/math.ts"), dependencies: [...MATH_DEPS].reverse() });
    expect(again.hash).toBe(first.hash);
    expect(elsewhere.hash).toBe(first.hash);
    write(b, { "functions/lib/helper.ts": `export const double = (x: number): number => x * 3;\n` });
    const changed = await bundleModule({ entry: join(b, "functions/math.ts"), dependencies: MATH_DEPS });
    expect(changed.hash).not.toBe(first.hash);
  });

  it("produces code that runs beside a node_modules holding the dependencies", async () => {
    // "multirank" resolves to this repository through its package.json exports, i.e. dist/.
    expect(existsSync(join(repoRoot, "dist/index.js")), "dist/index.js is missing: run npm run build:ts").toBe(true);
    const bundle = await bundleModule({ entry: join(project(MATH), "functions/math.ts"), dependencies: MATH_DEPS });
    const host = join(root, "host");
    fakePackage(host, "is-number", "7.0.0", `module.exports = (n) => typeof n === "number" || (typeof n === "string" && n.trim() !== "" && Number.isFinite(+n));\n`);
    fakePackage(host, "left-pad", "1.3.0", `module.exports = (s, n) => " ".repeat(Math.max(0, n - s.length)) + s;\n`);
    symlinkSync(repoRoot, join(host, "node_modules", "multirank"), "dir");
    // Under a node_modules folder so that vitest hands it to Node's own loader
    // (its module runner puts a `require` in scope, which would hide a bundle
    // that runs only there).
    const file = join(host, "node_modules", ".bundles", `${bundle.hash}.mjs`);
    write(dirname(file), { [`${bundle.hash}.mjs`]: bundle.code });
    const mod = (await import(pathToFileURL(file).href)) as {
      sum: (xs: unknown[]) => Promise<number>;
      pad: (s: string) => Promise<string>;
      makeCounter: () => () => number;
      fsKind: () => string;
      errorCode: () => string;
      viaRequire: (x: unknown) => boolean;
      ownRequire: () => string;
      loadedAt: string;
    };
    expect(mod.loadedAt).toBe("top-level ran");
    expect(await mod.sum([1, "2", "x"])).toBe(60);
    expect(await mod.pad("ab")).toBe("   ab");
    const counter = mod.makeCounter();
    counter();
    expect(counter()).toBe(2);
    expect(mod.fsKind()).toBe("function");
    expect(mod.errorCode()).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
    expect(mod.viaRequire("5")).toBe(true);
    expect(mod.ownRequire()).toBe(" a");
  });

  it("reports a static import the dependencies do not list, naming the package and a version found locally", async () => {
    const dir = project(MATH);
    fakePackage(dir, "is-number", "7.0.0", "module.exports = () => true;\n");
    const entry = join(dir, "functions/math.ts");
    const error = await bundleModule({ entry, dependencies: ["left-pad@1.3.0"] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UndeclaredDependencyError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_UNDECLARED_DEPENDENCY", packageName: "is-number", entry, importer: entry });
    expect((error as Error).message).toContain('imports "is-number"');
    expect((error as Error).message).toContain('"is-number@7.0.0"');
  });

  it("reports an undeclared dynamic import() and require(), and names the helper that holds it", async () => {
    const dir = project(MATH);
    const entry = join(dir, "functions/math.ts");
    await expect(bundleModule({ entry, dependencies: ["is-number@7"] })).rejects.toMatchObject({
      code: "MULTIRANK_ERR_UNDECLARED_DEPENDENCY",
      packageName: "left-pad",
      importer: entry,
    });
    const helperOnly = project({
      "m.ts": `import { f } from "./h.js";\nexport const g = f;\n`,
      "h.js": `export function f() { return require("chalk"); }\n`,
    });
    const error = (await bundleModule({ entry: join(helperOnly, "m.ts"), dependencies: [] }).catch((e: unknown) => e)) as UndeclaredDependencyError;
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_UNDECLARED_DEPENDENCY", packageName: "chalk", importer: join(helperOnly, "h.js") });
    expect(error.message).toContain('"chalk@latest"');
  });

  it("lets another function's module import its own packages (moduleDependencies), and only those", async () => {
    const dir = project({
      "outer.ts": `import { inner } from "./inner.js";\nexport const outer = async () => (await import("left-pad")).default(String(await inner()), 3);\n`,
      "inner.ts": `export const inner = async () => (await import("is-number")).default(1) ? 1 : 0;\n`,
    });
    const entry = join(dir, "outer.ts");
    await expect(bundleModule({ entry, dependencies: ["left-pad@1.3.0"] })).rejects.toMatchObject({ packageName: "is-number", importer: join(dir, "inner.ts") });
    const moduleDependencies = { [join(dir, "inner.ts")]: ["is-number@7.0.0"] };
    expect((await bundleModule({ entry, dependencies: ["left-pad@1.3.0"], moduleDependencies })).imports).toEqual(["is-number", "left-pad"]);
    // The inner module's packages, not the outer one's.
    await expect(bundleModule({ entry, dependencies: [], moduleDependencies })).rejects.toMatchObject({ packageName: "left-pad", importer: entry });
  });

  it("bundles a bundle again (a function called from inside another's environment) into code that loads", async () => {
    const first = await bundleModule({ entry: join(project(MATH), "functions/math.ts"), dependencies: MATH_DEPS });
    const host = join(root, "host-rebundle");
    fakePackage(host, "is-number", "7.0.0", `module.exports = (n) => typeof n === "number" || (typeof n === "string" && n.trim() !== "" && Number.isFinite(+n));\n`);
    fakePackage(host, "left-pad", "1.3.0", `module.exports = (s, n) => " ".repeat(Math.max(0, n - s.length)) + s;\n`);
    symlinkSync(repoRoot, join(host, "node_modules", "multirank"), "dir");
    const dir = join(host, "node_modules", ".bundles");
    write(dir, { "first.mjs": first.code });
    const second = await bundleModule({ entry: join(dir, "first.mjs"), dependencies: MATH_DEPS });
    write(dir, { "second.mjs": second.code });
    const mod = (await import(pathToFileURL(join(dir, "second.mjs")).href)) as { sum: (xs: unknown[]) => Promise<number>; viaRequire: (x: unknown) => boolean };
    expect(await mod.sum([1, "2", "x"])).toBe(60);
    expect(mod.viaRequire("5")).toBe(true);
  });

  it("maps subpath and scoped imports to their package, and accepts declared and external ones", async () => {
    const dir = project({
      "m.ts": `
import fp from "lodash/fp";
import { y } from "@scope/x/y";
import { z } from "@other/z";
export const all = () => [fp, y, z];
`,
    });
    const entry = join(dir, "m.ts");
    await expect(bundleModule({ entry, dependencies: ["@scope/x@^1", "@other/z@2.0.0"] })).rejects.toMatchObject({ packageName: "lodash" });
    await expect(bundleModule({ entry, dependencies: ["lodash@4", "@other/z@2.0.0"] })).rejects.toMatchObject({ packageName: "@scope/x" });
    const bundle = await bundleModule({ entry, dependencies: ["lodash@4", "@scope/x@^1"], external: ["@other/z"] });
    expect(bundle.imports).toEqual(["@other/z", "@scope/x", "lodash"]);
    expect(bundle.code).toContain('from "lodash/fp"');
    expect(bundle.code).toContain('from "@scope/x/y"');
    // multirank is external only by default: with its own list it is not
    const usesMultirank = project({ "m.ts": `import { remote } from "multirank";\nexport const r = remote;\n` });
    await expect(bundleModule({ entry: join(usesMultirank, "m.ts"), dependencies: [], external: [] })).rejects.toMatchObject({ packageName: "multirank" });
  });

  it("reports a syntax error or a missing relative file with its file and line", async () => {
    const broken = project({
      "m.ts": `import { h } from "./h.js";\nexport const f = h;\n`,
      "h.ts": `export const ok = 1;\nexport const h = (x: number =>;\n`,
    });
    const error = (await bundleModule({ entry: join(broken, "m.ts"), dependencies: [] }).catch((e: unknown) => e)) as BundleError;
    expect(error).toBeInstanceOf(BundleError);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_BUNDLE", file: join(broken, "h.ts"), line: 2, entry: join(broken, "m.ts") });
    expect(error.message).toContain(`${join(broken, "h.ts")}:2:`);

    const missing = project({ "m.ts": `export const a = 1;\nimport { h } from "./missing.js";\nexport const f = h;\n` });
    const notFound = (await bundleModule({ entry: join(missing, "m.ts"), dependencies: [] }).catch((e: unknown) => e)) as BundleError;
    expect(notFound).toMatchObject({ code: "MULTIRANK_ERR_BUNDLE", file: join(missing, "m.ts"), line: 2 });
    expect(notFound.message).toContain("./missing.js");
  });

  it("validates its options, naming the field", async () => {
    const dir = project({ "m.ts": "export const a = 1;\n" });
    const entry = join(dir, "m.ts");
    await expect(bundleModule({ entry: "m.ts", dependencies: [] })).rejects.toThrow(/options\.entry/);
    await expect(bundleModule({ entry: join(dir, "nope.ts"), dependencies: [] })).rejects.toThrow(/options\.entry: no file/);
    await expect(bundleModule({ entry, dependencies: ["user/repo"] })).rejects.toThrow(/options\.dependencies\[0\]/);
    await expect(bundleModule({ entry, dependencies: [], external: ["../x"] })).rejects.toThrow(/options\.external\[0\]/);
    await expect(bundleModule({ entry, dependencies: "x" as unknown as string[] })).rejects.toBeInstanceOf(ValidationError);
  });

  it("stops on an aborted signal", async () => {
    const entry = join(project({ "m.ts": "export const a = 1;\n" }), "m.ts");
    await expect(bundleModule({ entry, dependencies: [], signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    const controller = new AbortController();
    const pending = bundleModule({ entry, dependencies: [], signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
  });
});

describe("packageNameOf", () => {
  it("reads the name from name@range specs", () => {
    expect(packageNameOf("is-number@7.0.0")).toBe("is-number");
    expect(packageNameOf("is-number")).toBe("is-number");
    expect(packageNameOf("@scope/x@^1")).toBe("@scope/x");
    expect(packageNameOf("@scope/x")).toBe("@scope/x");
    expect(packageNameOf("pad@npm:left-pad@1.3.0")).toBe("pad");
    expect(packageNameOf("left-pad@file:/nowhere/left-pad-1.3.0.tgz")).toBe("left-pad");
  });

  it("reads the name inside a file: tarball or directory", () => {
    const dir = project({ "pkgdir/package.json": JSON.stringify({ name: "@fixture/dir-pkg", version: "1.0.0" }) });
    const tgz = tarball(join(dir, "x-1.0.0.tgz"), { name: "@fixture/tar-pkg", version: "1.0.0" });
    expect(packageNameOf(`file:${tgz}`)).toBe("@fixture/tar-pkg");
    expect(packageNameOf(pathToFileURL(tgz).href)).toBe("@fixture/tar-pkg");
    expect(packageNameOf(`file:${join(dir, "pkgdir")}`)).toBe("@fixture/dir-pkg");
    cpSync(tgz, join(dir, "copy.tgz"));
    expect(packageNameOf(`file:${join(dir, "copy.tgz")}`)).toBe("@fixture/tar-pkg");
  });

  it("refuses specs that name no package", () => {
    for (const spec of ["", "user/repo", "https://example.com/x.tgz", "file:/nowhere/x.tgz", ".hidden@1"]) {
      expect(() => packageNameOf(spec), spec).toThrow(ValidationError);
    }
  });
});
