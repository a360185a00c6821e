/**
 * package.json and its lock, as `npm install` reads them: the addon is built
 * once, and nothing installed asks for a newer Node than the one we support.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url);
const manifest = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { scripts: Record<string, string>; files: string[] };
const lock = JSON.parse(readFileSync(new URL("package-lock.json", root), "utf8")) as { packages: Record<string, { version?: string; engines?: { node?: string } }> };
// semver comes with npm's own tooling (node-gyp, cmake-js); only this test reads it.
const semver = createRequire(new URL("package.json", root))("semver") as { satisfies(version: string, range: string): boolean };

describe("npm install", () => {
  it("builds the native addon once: an explicit install script (no implicit node-gyp rebuild), and prepare builds only the TypeScript", () => {
    // With binding.gyp at the root and no install script, npm runs `node-gyp rebuild` itself, before prepare built it again.
    expect(manifest.scripts.install).toBe("node scripts/build-native.mjs");
    expect(manifest.scripts.preinstall).toBeUndefined();
    expect(manifest.scripts.postinstall).toBeUndefined();
    expect(manifest.scripts.prepare).toBe("npm run build:ts");
    // What the install script needs ships in the package.
    for (const path of ["scripts/build-native.mjs", "CMakeLists.txt", "native", "binding.gyp"]) expect(manifest.files).toContain(path);
  });

  it("installs nothing whose engines exclude this Node (no EBADENGINE; cookie@2 wants Node 22)", () => {
    const refused = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== "" && entry.engines?.node !== undefined && !semver.satisfies(process.versions.node, entry.engines.node))
      .map(([path, entry]) => `${path}@${entry.version} (node ${entry.engines!.node})`);
    expect(refused).toEqual([]);
  });
});
