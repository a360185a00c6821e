/**
 * The layers docs/architecture.md draws, checked against the code: every
 * runtime import (type-only imports are erased at build time and do not
 * count) goes to the same folder or one in a lower layer, no module imports
 * itself through a circle, and every folder of src/ is placed and described.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = join(ROOT, "src");

/** Bottom to top, as docs/architecture.md lists them; `.` is src/'s own files (errors, version; index.ts is the top). */
const LAYERS: readonly (readonly string[])[] = [
  [".base"],
  ["util"],
  ["devices"],
  ["shm"],
  ["codec"],
  ["transport"],
  ["collectives"],
  ["worker"],
  ["llm"],
  ["runner"],
  ["gateway", "benchmark"],
  ["functions", "queue"],
  ["deploy"],
  ["server", "dev"],
  ["cli", ".index"],
];

function layerOf(folder: string): number {
  const index = LAYERS.findIndex((layer) => layer.includes(folder));
  if (index < 0) throw new Error(`src/${folder} is in no layer: place it in LAYERS and in docs/architecture.md`);
  return index;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

function folderOf(file: string): string {
  const rel = relative(SRC, file);
  if (!rel.includes("/")) return rel === "index.ts" ? ".index" : ".base";
  return rel.split("/")[0]!;
}

/** Relative imports that exist at run time: static ones that are not type-only, and dynamic ones. */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?([^;]*?)\s+from\s+"(\.[^"]+)"/gms)) {
    if (m[1]) continue;
    const names = /^\{([^}]*)\}$/.exec(m[2]!.trim());
    if (names && names[1]!.split(",").every((n) => n.trim() === "" || n.trim().startsWith("type "))) continue;
    found.push(m[3]!);
  }
  for (const m of text.matchAll(/import\(\s*"(\.[^"]+)"\s*\)/g)) found.push(m[1]!);
  return found.map((spec) => normalize(join(dirname(file), spec)).replace(/\.js$/, ".ts"));
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, runtimeImports(file)]));

describe("layers", () => {
  it("every runtime import goes to its own folder or a lower layer", () => {
    const upward: string[] = [];
    for (const [file, imports] of graph) {
      const from = folderOf(file);
      for (const target of imports) {
        const to = folderOf(target);
        if (to !== from && layerOf(to) >= layerOf(from)) upward.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("no module reaches itself through its imports", () => {
    const state = new Map<string, "open" | "done">();
    const circles: string[] = [];
    const visit = (file: string, path: string[]): void => {
      state.set(file, "open");
      for (const next of graph.get(file) ?? []) {
        if (state.get(next) === "open") circles.push([...path.slice(path.indexOf(next)), next].map((f) => relative(SRC, f)).join(" -> "));
        else if (!state.has(next)) visit(next, [...path, next]);
      }
      state.set(file, "done");
    };
    for (const file of files) if (!state.has(file)) visit(file, [file]);
    expect(circles).toEqual([]);
  });

  it("docs/architecture.md names every folder of src/ and gives it its job", () => {
    const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
    const folders = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
    for (const folder of folders) {
      layerOf(folder);
      expect(doc, `src/${folder}/ in docs/architecture.md`).toMatch(new RegExp(`\\| \`src/${folder}/\` \\|`));
    }
  });
});
