#!/usr/bin/env node
/**
 * Bundles what a rank process loads into `dist/rank/` (run after `tsc` by
 * `npm run build:ts`): the two rank entry points and `multirank/worker`,
 * with pino and msgpackr inside, as ES modules sharing chunks.
 *
 * Why: Node 20's ES module loader pays for every file it resolves, reads and
 * links. A rank loading ~75 of our small modules and ~45 of its dependencies'
 * spent about 100 ms in imports before its first line ran (issue 17's
 * profile); one bundle loads in a fraction of that. A worker importing
 * `multirank/worker` in a rank gets `dist/rank/worker.js` (the
 * `multirank-rank` export condition, which ranks are started with, and the
 * compiled-worker facade), so it shares the runtime's classes and state
 * instead of loading a second copy.
 *
 * Left out, loaded from node_modules when used: native bindings (zeromq,
 * msgpackr-extract, the multirank addon), and what only some ranks need
 * (tsx for `.ts` workers the runner could not compile, sharp, esbuild).
 */
import { readFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
const outdir = join(root, "dist", "rank");

/**
 * Each bundled file sees the `import.meta.url` its compiled copy in `dist/`
 * would (the package.json one folder up, the addon two up), computed from
 * the chunk's own location so that the package can move after the build.
 */
const keepModuleUrls = {
  name: "keep-module-urls",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (!args.path.startsWith(src) || !source.includes("import.meta.url")) return undefined;
      const compiled = relative(outdir, join(root, "dist", relative(src, args.path))).replace(/\.ts$/, ".js");
      return { contents: source.replace(/\bimport\.meta\.url\b/g, `new URL(${JSON.stringify(compiled)}, import.meta.url).href`), loader: "ts" };
    });
  },
};

/**
 * Two dependencies swapped for lighter ones, inside the bundle only:
 * - msgpackr without its native string extractor. Loading it (node-gyp-build,
 *   detect-libc, child_process, dlopen) cost a rank ~10 ms of CPU at start,
 *   and on this codec's messages it gains next to nothing: unpacking a small
 *   request took 1.2 us with it and 2.8 us without, a 1 KiB string 4.6 us
 *   with and 3.2 us without, 1,000 small objects the same either way.
 * - thread-stream, which pino needs only for `pino.transport()`; a rank logs
 *   to its stdout and its runner, never through a transport thread.
 */
const lighterDependencies = {
  name: "lighter-dependencies",
  setup(build) {
    build.onResolve({ filter: /^msgpackr$/ }, () => ({ path: join(root, "node_modules", "msgpackr", "index.js") }));
    build.onResolve({ filter: /^thread-stream$/ }, () => ({ path: "thread-stream", namespace: "rank-stub" }));
    build.onLoad({ filter: /.*/, namespace: "rank-stub" }, () => ({
      contents: 'module.exports = class ThreadStream { constructor() { throw new Error("pino transports are not available in a rank\'s bundled runtime"); } };',
      loader: "js",
    }));
  },
};

rmSync(outdir, { recursive: true, force: true });
await esbuild.build({
  absWorkingDir: root,
  entryPoints: {
    "rank-main": "src/worker/rank-main.ts",
    "rank-pool-main": "src/worker/rank-pool-main.ts",
    worker: "src/worker/index.ts",
  },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Error and worker class names as written: messages and logs name them.
  keepNames: true,
  // Maps beside the chunks for debugging, but no sourceMappingURL comment: when a rank enables
  // source maps (for a compiled .ts worker's stack traces), node would otherwise read and
  // index the chunks' maps too, a few ms of every rank's start.
  sourcemap: "external",
  logLevel: "warning",
  external: ["zeromq", "msgpackr-extract", "tsx", "tsx/*", "esbuild", "sharp"],
  // The bundled CommonJS packages (pino) call require() for node's builtins.
  banner: { js: 'import { createRequire as __multirankCreateRequire } from "node:module"; const require = __multirankCreateRequire(import.meta.url);' },
  plugins: [keepModuleUrls, lighterDependencies],
});
