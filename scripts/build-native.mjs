#!/usr/bin/env node
// Builds the native addon into build/Release/multirank.node.
//
//   node scripts/build-native.mjs           cmake-js (the default build)
//   node scripts/build-native.mjs --gyp     node-gyp from binding.gyp, in a scratch
//                                           copy, output build/gyp/multirank.node
//   node scripts/build-native.mjs --debug   extra flags go to cmake-js
//
// Both builds use the Node headers already on the machine (an official Node
// tarball and Debian's nodejs package both ship include/node next to bin/node),
// so no build downloads headers from nodejs.org. Override with
// MULTIRANK_NODEDIR or npm's nodedir setting.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, copyFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const args = process.argv.slice(2);
const useGyp = args.includes("--gyp");
const passThrough = args.filter((a) => a !== "--gyp");

/** A directory holding include/node/node_api.h and node.h, or undefined. */
function localNodeDir() {
  const candidates = [
    process.env.MULTIRANK_NODEDIR,
    process.env.npm_config_nodedir,
    resolve(dirname(process.execPath), ".."),
    "/usr",
    "/usr/local",
  ];
  return candidates.find(
    (dir) => dir && existsSync(join(dir, "include/node/node_api.h")) && existsSync(join(dir, "include/node/node.h")),
  );
}

function run(command, commandArgs, options) {
  process.stderr.write(`> ${command} ${commandArgs.join(" ")}\n`);
  const result = spawnSync(command, commandArgs, { stdio: "inherit", ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    process.stderr.write(`build-native: ${command} exited with ${result.status ?? result.signal}\n`);
    process.exit(result.status ?? 1);
  }
}

/** Loads the built binary in a fresh process, so a broken build fails here and not in a test. */
function smokeTest(binary) {
  run(process.execPath, [
    "-e",
    `const a = require(${JSON.stringify(binary)}); if (typeof a.cudaAvailability !== "function") process.exit(3);` +
      ` console.log("multirank addon ok: N-API " + a.napiVersion + ", CUDA: " + JSON.stringify(a.cudaAvailability()))`,
  ]);
}

const nodeDir = localNodeDir();
const env = { ...process.env };
if (nodeDir) {
  env.npm_config_nodedir = nodeDir;
} else {
  process.stderr.write("build-native: no local Node headers found; the build tool will try to download them\n");
}

if (useGyp) {
  // node-gyp always builds into <dir>/build and `rebuild` deletes it first, so
  // build in a scratch copy to leave the cmake-js build untouched.
  const scratch = mkdtempSync(join(tmpdir(), "multirank-gyp-"));
  try {
    cpSync(join(root, "binding.gyp"), join(scratch, "binding.gyp"));
    cpSync(join(root, "native"), join(scratch, "native"), { recursive: true });
    cpSync(join(root, "package.json"), join(scratch, "package.json"));
    symlinkSync(join(root, "node_modules"), join(scratch, "node_modules"), "dir");
    const nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
    const gypArgs = ["rebuild", `--jobs=${availableParallelism()}`, ...passThrough];
    if (nodeDir) gypArgs.push(`--nodedir=${nodeDir}`);
    run(process.execPath, [nodeGyp, ...gypArgs], { cwd: scratch, env });
    const outDir = join(root, "build", "gyp");
    mkdirSync(outDir, { recursive: true });
    copyFileSync(join(scratch, "build/Release/multirank.node"), join(outDir, "multirank.node"));
    smokeTest(join(outDir, "multirank.node"));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
} else {
  const cmakeJs = join(dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
  run(
    process.execPath,
    [cmakeJs, "build", "--directory", root, "--out", join(root, "build"), "--parallel", String(availableParallelism()), ...passThrough],
    { cwd: root, env },
  );
  smokeTest(join(root, "build", "Release", "multirank.node"));
}
