/**
 * How a remote function's code travels: the module that defines it is bundled
 * with esbuild into one ES module (its relative imports, TypeScript stripped),
 * with every package import left bare for the host's environment to resolve,
 * and named by the sha256 of that code. A function is then found on a host by
 * (bundle hash, function name), never by serializing a closure, so closures,
 * helpers and module constants all work, and the module's top-level code also
 * runs on the host.
 *
 * Bundling is also where a bare import that the function's `dependencies` do
 * not list is caught, naming the package, rather than as
 * `ERR_MODULE_NOT_FOUND` on a server later.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Message, Plugin } from "esbuild";
import { AbortError, BundleError, UndeclaredDependencyError, ValidationError } from "../errors.js";
import { withEsbuild } from "../util/esbuild-service.js";
import { isPackageName, packageNameOf, packageOfSpecifier } from "./package-spec.js";

export { packageNameOf } from "./package-spec.js";

/** What {@link bundleModule} bundles and which packages it leaves for the host. */
export interface BundleOptions {
  /** Absolute path (or `file:` URL) of the module that defines the remote functions (`.ts` or `.js`). */
  entry: string;
  /**
   * npm specs the functions declare (`"is-number@7.0.0"`, `"@scope/x@^1"`,
   * `"file:/abs/x-1.0.0.tgz"`): imports of their packages stay bare.
   */
  dependencies: readonly string[];
  /** Package names also allowed as bare imports and never bundled. @default ["multirank"] */
  external?: readonly string[];
  /**
   * Modules of the graph that define remote functions of their own, by
   * absolute path, with the npm specs those functions declare: imports of
   * those packages from those modules are allowed too (the functions run in
   * their own environments; another function's module that imports one only
   * carries its code). @default {}
   */
  moduleDependencies?: Readonly<Record<string, readonly string[]>>;
  /** Cancels the build; the promise then rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** Leave every package import bare without checking it is declared (an app's worker, whose packages are the project's). @default false */
  anyPackage?: boolean;
}

/** One bundled module, ready to be loaded on a host. */
export interface Bundle {
  /** ESM source of the whole module graph except packages; imports of packages stay bare. */
  code: string;
  /** sha256 hex of `code`: the content hash that names the bundle on a host. */
  hash: string;
  /** The bare packages the code imports (sorted): declared dependencies it uses and `multirank`; node builtins excluded. */
  imports: string[];
  /** The files inlined into it, absolute paths (the entry first): the modules whose remote functions travel with it. */
  files: string[];
}

const DEFAULT_EXTERNAL: readonly string[] = Object.freeze(["multirank"]);

// esbuild leaves a `require("pkg")` in ESM output as a call to a shim that
// throws unless a `require` is in scope; this gives it one, resolving from
// where the bundle is loaded (the environment with the dependencies). esbuild
// renames any top-level `require` of the user's to keep clear of it.
const REQUIRE_BANNER = 'import { createRequire as __multirankCreateRequire } from "node:module";\nconst require = __multirankCreateRequire(import.meta.url);';

/**
 * Bundles the module that defines remote functions into one ES module and
 * hashes it. Relative imports (`.ts` too) are inlined; package imports stay
 * bare and must be in `dependencies` or `external`; node builtins stay as
 * they are. The same files give the same `hash` on any machine (paths in the
 * inline source map are relative to the entry's directory); changing any
 * inlined file changes it.
 *
 * `import.meta.url` in the bundled code is the bundle's location on the host,
 * not the original file's: read files relative to it only through
 * `dataPath()`/`syncDir()`, not beside the source.
 *
 * @throws {ValidationError} bad options (the message names the field).
 * @throws {UndeclaredDependencyError} the module graph imports a package that
 *   is neither declared nor external (the first, by name); static imports,
 *   `import("x")` with a literal and `require("x")` all count.
 * @throws {BundleError} a syntax error or a missing relative import, naming
 *   the file and line.
 * @throws {AbortError} `signal` aborted.
 * @example
 * const { code, hash, imports } = await bundleModule({ entry: "/app/functions/math.ts", dependencies: ["is-number@7.0.0"] });
 */
export async function bundleModule(options: BundleOptions): Promise<Bundle> {
  const { entry, declared, external, byModule, signal } = validateOptions(options);
  throwIfAborted(signal);
  const allowed = new Set([...declared, ...external]);
  const workingDir = dirname(entry);
  // Every package the graph imports, and the first import of each that no declaration allows.
  const used = new Set<string>();
  let files: string[] = [];
  const undeclaredAt = new Map<string, string>();

  const packagesExternal: Plugin = {
    name: "multirank-packages-external",
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === "entry-point") return undefined;
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        if (args.path.startsWith(".") || isAbsolute(args.path)) return undefined;
        const name = packageOfSpecifier(args.path);
        // Not a package (`#imports`, a URL, a tsconfig alias): esbuild's own resolution decides.
        if (name === undefined) return undefined;
        used.add(name);
        const allowedHere = allowed.has(name) || byModule.get(resolve(workingDir, args.importer))?.has(name) === true;
        if (!allowedHere && !undeclaredAt.has(name)) undeclaredAt.set(name, args.importer);
        return { path: args.path, external: true };
      });
    },
  };

  const code = await withEsbuild(async (esbuild) => {
    throwIfAborted(signal);
    const context = await esbuild.context({
      entryPoints: [entry],
      absWorkingDir: workingDir,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      write: false,
      // Inline, so stacks on the host map back to the user's files; source paths
      // are relative to absWorkingDir, so the hash does not depend on where the
      // project sits on disk.
      sourcemap: "inline",
      keepNames: true,
      logLevel: "silent",
      // A bundle of a bundle (a function a remote function calls, bundled again
      // from the outer bundle inside its environment) keeps the one it has: a
      // second banner would declare the same names twice.
      ...(isBundle(entry) ? {} : { banner: { js: REQUIRE_BANNER } }),
      plugins: [packagesExternal],
      metafile: true,
    });
    const cancel = (): void => void context.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      const result = await context.rebuild();
      files = Object.keys(result.metafile?.inputs ?? {}).map((file) => resolve(workingDir, file));
      throwIfAborted(signal);
      const output = result.outputFiles?.[0];
      if (output === undefined) throw new BundleError(`cannot bundle ${entry}: esbuild produced no output`, entry);
      return output.text;
    } catch (error) {
      throwIfAborted(signal);
      const messages = (error as { errors?: Message[] }).errors;
      if (Array.isArray(messages) && messages.length > 0) throw bundleError(entry, workingDir, messages, error);
      throw error;
    } finally {
      signal?.removeEventListener("abort", cancel);
      await context.dispose();
    }
  });

  const names = [...used].sort();
  const undeclared = options.anyPackage === true ? undefined : names.find((name) => undeclaredAt.has(name));
  if (undeclared !== undefined) {
    const importer = resolve(workingDir, undeclaredAt.get(undeclared)!);
    throw new UndeclaredDependencyError(undeclared, entry, importer, suggestSpec(undeclared, importer));
  }
  return { code, hash: createHash("sha256").update(code).digest("hex"), imports: names, files: [entry, ...files.filter((file) => file !== entry)] };
}

/**
 * Parses a bundle (as a server receives it) without running it.
 * @throws {BundleError} naming `name` and the bundle's line when it does not parse.
 */
export async function checkBundleSyntax(code: string, name: string): Promise<void> {
  await withEsbuild(async (esbuild) => {
    try {
      await esbuild.transform(code, { format: "esm", loader: "js", logLevel: "silent", sourcemap: false });
    } catch (error) {
      const first = (error as { errors?: Message[] }).errors?.[0];
      const where = first?.location ? ` (bundle line ${first.location.line})` : "";
      throw new BundleError(`the bundle of ${name} does not parse${where}: ${first?.text ?? (error as Error).message}`, name, {}, { cause: error });
    }
  });
}

/** True when `file` is the output of {@link bundleModule} (it starts with the banner). */
function isBundle(file: string): boolean {
  const fd = openSync(file, "r");
  try {
    const head = Buffer.alloc(REQUIRE_BANNER.length);
    const read = readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, read).toString("utf8") === REQUIRE_BANNER;
  } finally {
    closeSync(fd);
  }
}

interface ValidOptions {
  entry: string;
  declared: string[];
  external: string[];
  byModule: Map<string, Set<string>>;
  signal: AbortSignal | undefined;
}

function validateOptions(options: BundleOptions): ValidOptions {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  const { entry: rawEntry, dependencies, external = DEFAULT_EXTERNAL, moduleDependencies = {}, signal } = options;
  if (typeof rawEntry !== "string" || rawEntry === "") throw new ValidationError("options.entry must be an absolute path or a file: URL");
  const entry = rawEntry.startsWith("file:") ? fileURLToPath(rawEntry) : rawEntry;
  if (!isAbsolute(entry)) throw new ValidationError(`options.entry must be an absolute path or a file: URL, got "${rawEntry}"`);
  let isFile = false;
  try {
    isFile = statSync(entry).isFile();
  } catch {
    // reported below
  }
  if (!isFile) throw new ValidationError(`options.entry: no file at ${entry}`);
  if (!Array.isArray(dependencies)) throw new ValidationError("options.dependencies must be an array of npm specs");
  const declared = dependencies.map((spec, i) => {
    try {
      return packageNameOf(spec);
    } catch (error) {
      throw new ValidationError(`options.dependencies[${i}]: ${(error as Error).message}`, { cause: error });
    }
  });
  if (!Array.isArray(external)) throw new ValidationError("options.external must be an array of package names");
  external.forEach((name, i) => {
    if (typeof name !== "string" || !isPackageName(name)) throw new ValidationError(`options.external[${i}] must be a package name, got ${JSON.stringify(name)}`);
  });
  if (typeof moduleDependencies !== "object" || moduleDependencies === null) throw new ValidationError("options.moduleDependencies must map module paths to npm specs");
  const byModule = new Map<string, Set<string>>();
  for (const [module, specs] of Object.entries(moduleDependencies)) {
    if (!Array.isArray(specs)) throw new ValidationError(`options.moduleDependencies["${module}"] must be an array of npm specs`);
    const path = module.startsWith("file:") ? fileURLToPath(module) : module;
    byModule.set(path, new Set(specs.map((spec, i) => {
      try {
        return packageNameOf(spec);
      } catch (error) {
        throw new ValidationError(`options.moduleDependencies["${module}"][${i}]: ${(error as Error).message}`, { cause: error });
      }
    })));
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new ValidationError("options.signal must be an AbortSignal");
  return { entry, declared, external: [...external], byModule, signal };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError("bundling was aborted", { cause: signal.reason });
}

function bundleError(entry: string, workingDir: string, messages: Message[], cause: unknown): BundleError {
  const describe = (message: Message): string => {
    const at = message.location;
    return at ? `${join(workingDir, at.file)}:${at.line}:${at.column + 1}: ${message.text}` : message.text;
  };
  const first = messages[0]!;
  const more = messages.length > 1 ? `\n${messages.slice(1, 5).map((m) => `  ${describe(m)}`).join("\n")}` : "";
  const location = first.location
    ? { file: join(workingDir, first.location.file), line: first.location.line, column: first.location.column + 1 }
    : {};
  return new BundleError(`cannot bundle ${entry}: ${describe(first)}${more}`, entry, location, { cause });
}

/** `name@<version installed near the importer>`, or `name@latest` when none is. */
function suggestSpec(name: string, importer: string): string {
  for (let dir = dirname(importer); ; dir = dirname(dir)) {
    try {
      const { version } = JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")) as { version?: unknown };
      if (typeof version === "string") return `${name}@${version}`;
    } catch {
      // not installed here; look further up
    }
    if (dirname(dir) === dir) return `${name}@latest`;
  }
}
