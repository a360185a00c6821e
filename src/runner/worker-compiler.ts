/**
 * Compiles a `.ts` worker once, in the runner, so that ranks import plain
 * JavaScript instead of each loading tsx and compiling the same files again
 * (tsx costs every rank a loader thread and a few hundred milliseconds).
 *
 * The worker and its local imports are bundled by esbuild into one ES module
 * in a cache directory, named by the hash of their contents; package imports
 * stay imports, of the file they resolve to from the worker's own directory
 * (the bundle lives elsewhere, so a bare name would resolve from the wrong
 * place). `import.meta.url`, `.dirname` and `.filename` keep the values the
 * original file would see. An inline source map points stack traces at the
 * `.ts` sources.
 *
 * Whatever esbuild cannot turn into the same behaviour (CommonJS-only names
 * such as `require` or `__dirname`, `import.meta.resolve`, a dynamic import it
 * cannot follow, any build warning) makes {@link compileWorker} return
 * `undefined` with a reason: the ranks then load the source through tsx as
 * before. Nothing here is user-facing API.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";
import { multirankCacheDir } from "../util/cache-dir.js";
import { withEsbuild } from "../util/esbuild-service.js";
import { RANK_CONDITION, rankEntry } from "./rank-entry.js";

/** Bumped whenever the shape of what we emit changes, so old cache entries are not reused. */
const FORMAT = 2;

/** Source text that an ES module bundle cannot give the same meaning as tsx does. */
const UNSUPPORTED = /\b__dirname\b|\b__filename\b|\brequire\s*\(|\bmodule\.exports\b|\bimport\.meta\.resolve\b|\bimport\.meta(?!\s*\.\s*(url|dirname|filename)\b)/;

const FACADE_NAMESPACE = "multirank-worker-facade";

/** The outcome of {@link compileWorker}: the module ranks should import, or why they must use tsx. */
export type CompiledWorker = { ok: true; path: string; cached: boolean } | { ok: false; reason: string };

/** Where compiled workers are kept: `workers/` in `MULTIRANK_CACHE_DIR` (default `~/.cache/multirank`), as function environments are. */
export function workerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(multirankCacheDir(env), "workers");
}

function sha256(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

interface Manifest {
  /** Absolute path of every inlined file with the sha256 of its contents. */
  inputs: Record<string, string>;
  /** The bundle's file name in the cache directory. */
  output: string;
  /** The files its package imports resolved to: one gone (a package upgraded or removed) means resolving again. */
  packages: string[];
}

/** The cached bundle for `entry`, if every file it was built from is unchanged. */
function lookup(dir: string, key: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, `${key}.json`), "utf8")) as Manifest;
    for (const [file, hash] of Object.entries(manifest.inputs)) if (sha256(readFileSync(file)) !== hash) return undefined;
    if (!manifest.packages.every((file) => existsSync(file))) return undefined;
    const output = join(dir, manifest.output);
    return existsSync(output) ? output : undefined;
  } catch {
    return undefined;
  }
}

/** Writes through a temporary name and renames, so a rank never reads half a file and concurrent runners do not clash. */
function writeAtomic(path: string, text: string): void {
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(temp, text);
  renameSync(temp, path);
}

/**
 * The names `multirank/worker` exports, loaded from the copy the worker would
 * import, so the facade offers exactly what that copy has.
 */
async function workerExports(resolvedPath: string): Promise<string[]> {
  return Object.keys((await import(pathToFileURL(resolvedPath).href)) as object);
}

/**
 * Bare imports become imports of the resolved file (by URL), since the bundle
 * is loaded from the cache directory; builtins stay as they are. With
 * `facade`, `import { DistributedWorker } from "multirank"` imports the same
 * names from `multirank/worker`, which loads in a fraction of the time (no
 * HTTP server, queue or deploy code); a name only the package root has makes
 * the build fail, and the caller builds again without the facade.
 */
function resolvePackages(facade: boolean): Plugin {
  return {
    name: "multirank-resolve-packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.namespace === FACADE_NAMESPACE) return { path: args.path, external: true };
        if (args.pluginData === "resolving" || isBuiltin(args.path)) return undefined;
        if (facade && args.path === "multirank") {
          const target = await build.resolve("multirank/worker", { kind: args.kind, resolveDir: args.resolveDir, pluginData: "resolving" });
          if (target.errors.length === 0) return { path: target.path, namespace: FACADE_NAMESPACE };
        }
        const result = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: "resolving" });
        if (result.errors.length > 0) return { errors: result.errors };
        return { path: pathToFileURL(result.path).href, external: true };
      });
      build.onLoad({ filter: /.*/, namespace: FACADE_NAMESPACE }, async (args) => {
        const names = await workerExports(args.path);
        return { contents: `export { ${names.join(", ")} } from ${JSON.stringify(pathToFileURL(args.path).href)};`, loader: "js" };
      });
      // Each inlined file sees its own location, as it would unbundled.
      build.onLoad({ filter: /\.(m|c)?[jt]sx?$/ }, (args) => {
        if (args.path.includes("/node_modules/")) return undefined;
        const source = readFileSync(args.path, "utf8");
        if (UNSUPPORTED.test(source)) return { errors: [{ text: `${args.path} uses require, module.exports, __dirname, __filename or import.meta beyond .url/.dirname/.filename` }] };
        if (!source.includes("import.meta")) return undefined;
        const url = pathToFileURL(args.path).href;
        const contents = source
          .replace(/\bimport\.meta\s*\.\s*url\b/g, JSON.stringify(url))
          .replace(/\bimport\.meta\s*\.\s*dirname\b/g, JSON.stringify(dirname(args.path)))
          .replace(/\bimport\.meta\s*\.\s*filename\b/g, JSON.stringify(args.path));
        const ext = /\.([cm]?)([jt]sx?)$/.exec(args.path)![2] as "js" | "ts" | "jsx" | "tsx";
        return { contents, loader: ext, resolveDir: dirname(args.path) };
      });
    },
  };
}

/**
 * Compiles the worker at `entry` (an absolute path to a `.ts`, `.mts` or
 * `.tsx` file) into the cache, or finds it there. Never throws: a failure is
 * a reason to load the worker through tsx.
 */
export async function compileWorker(entry: string, cacheDir = workerCacheDir()): Promise<CompiledWorker> {
  if (/\.cts$/.test(entry)) return { ok: false, reason: "a .cts worker is CommonJS" };
  // The key leaves out esbuild's version so that a hit need not load esbuild; FORMAT covers what we emit.
  // Ranks that run the bundled runtime resolve `multirank/worker` to it; so does their compiled worker.
  const conditions = rankEntry().execArgv.includes(`--conditions=${RANK_CONDITION}`) ? [RANK_CONDITION] : [];
  const key = sha256(`${FORMAT}\0${process.version}\0${conditions.join(",")}\0${entry}`).slice(0, 32);
  try {
    mkdirSync(cacheDir, { recursive: true });
  } catch (error) {
    // Without a writable cache dir (a read-only home), a per-user temporary one.
    if (cacheDir !== fallbackCacheDir()) return compileWorker(entry, fallbackCacheDir());
    return { ok: false, reason: `cannot create the cache directory ${cacheDir} (${(error as Error).message})` };
  }
  const hit = lookup(cacheDir, key);
  if (hit) return { ok: true, path: hit, cached: true };

  try {
    return await withEsbuild((esbuild) => build(esbuild, entry, cacheDir, key, conditions));
  } catch (error) {
    return { ok: false, reason: `esbuild is not available (${(error as Error).message})` };
  }
}

async function build(esbuild: typeof import("esbuild"), entry: string, cacheDir: string, key: string, conditions: string[]): Promise<CompiledWorker> {
  let failure = "";
  for (const facade of [true, false]) {
    try {
      const result = await esbuild.build({
        entryPoints: [entry],
        bundle: true,
        write: false,
        format: "esm",
        platform: "node",
        target: `node${process.versions.node}`,
        // Node's own conditions and fields (esbuild would also try "module"), and the ranks' own.
        conditions,
        mainFields: ["main"],
        sourcemap: "inline",
        // Class and function names as written: messages name the worker class.
        keepNames: true,
        metafile: true,
        logLevel: "silent",
        outfile: join(cacheDir, "worker.mjs"),
        plugins: [resolvePackages(facade)],
      });
      if (result.warnings.length > 0) {
        failure = result.warnings.map((w) => w.text).join("; ");
        continue;
      }
      const code = result.outputFiles[0]!.text;
      const inputs: Record<string, string> = {};
      for (const input of Object.keys(result.metafile.inputs)) {
        if (input.includes(":")) continue; // a facade, not a file
        const file = join(process.cwd(), input);
        inputs[file] = sha256(readFileSync(file));
      }
      const packages = Object.values(result.metafile.outputs)
        .flatMap((out) => out.imports)
        .filter((imported) => imported.external && imported.path.startsWith("file:"))
        .map((imported) => fileURLToPath(imported.path));
      const output = `${key}-${sha256(code).slice(0, 16)}.mjs`;
      // The source map's paths are relative to where esbuild thought the file would be: the same directory.
      writeAtomic(join(cacheDir, output), code);
      writeAtomic(join(cacheDir, `${key}.json`), JSON.stringify({ inputs, output, packages } satisfies Manifest));
      return { ok: true, path: join(cacheDir, output), cached: false };
    } catch (error) {
      const errors = (error as { errors?: { text: string }[] }).errors;
      failure = errors ? errors.map((e) => e.text).join("; ") : (error as Error).message;
    }
  }
  return { ok: false, reason: failure };
}

function fallbackCacheDir(): string {
  let user = "user";
  try {
    user = String(userInfo().uid);
  } catch {
    // No passwd entry (a container's arbitrary uid): one shared name is still safe, entries are content-named.
  }
  return join(tmpdir(), `multirank-${user}`, "workers");
}
