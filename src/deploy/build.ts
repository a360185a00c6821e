/**
 * `multirank build`: the project's apps and functions as one deployment
 * artifact, `.multirank/artifact.tgz`, with `.multirank/manifest.json`.
 * Each app's worker and each function's module is bundled (packages left as
 * imports); each environment is a list of npm specs (an app's pinned to the
 * versions installed in the project) with a lockfile when npm can make one,
 * never `node_modules`. The same sources give the same bytes.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import { defineApp, type AppDefinition, type AppOptions } from "../gateway/app.js";
import { parseMachineType } from "../gateway/machine-types.js";
import { bundleModule } from "../functions/bundle.js";
import { defaultRegistry, environmentKey } from "../functions/environment.js";
import { packageFunction } from "../functions/function-package.js";
import { defaultNpmCommand, npmEnvironment, runNpm } from "../functions/npm-run.js";
import { functionAppName } from "../functions/wire.js";
import { MULTIRANK_VERSION } from "../version.js";
import type { Manifest, ManifestEntry } from "./manifest.js";
import { loadProject, type ConfigFunction, type LoadedProject } from "./project-config.js";
import { writeTarGz, type TarFile } from "./tar.js";

/** Options of {@link buildProject}. */
export interface BuildOptions {
  /** The project's folder (or its config file). @default process.cwd() */
  dir?: string;
  /** Packages neither bundled nor installed: the server provides them. @default [] */
  exclude?: readonly string[];
  /** Make lockfiles with npm (needs the registry for registry specs). @default true */
  lockfiles?: boolean;
  logger?: Logger;
  signal?: AbortSignal;
}

/** What {@link buildProject} made. */
export interface BuildResult {
  manifest: Manifest;
  artifact: Buffer;
  /** sha256 of the artifact. */
  hash: string;
  manifestPath: string;
  artifactPath: string;
}

/**
 * Builds the project's deployment artifact and writes it under `.multirank/`.
 * @throws {ValidationError} no config, a bad name, an app whose worker is missing.
 * @throws {UndeclaredDependencyError} {BundleError} as bundling does.
 */
export async function buildProject(options: BuildOptions = {}): Promise<BuildResult> {
  const project = await loadProject(options.dir ?? process.cwd());
  const exclude = new Set(options.exclude ?? []);
  const registry = await defaultRegistry();
  const files: TarFile[] = [];
  const entries: ManifestEntry[] = [];
  const lockfiles = options.lockfiles ?? true;
  const addLock = async (dependencies: string[]): Promise<string | null> => {
    // A tarball's path in a lockfile would not hold on the server: such environments resolve there.
    if (!lockfiles || dependencies.length === 0 || dependencies.some((d) => d.startsWith("file:"))) return null;
    const lock = await makeLockfile(dependencies, registry, options.signal);
    if (lock === undefined) {
      options.logger?.warn({ dependencies }, "npm could not make a lockfile (offline?); the server resolves these specs itself");
      return null;
    }
    const path = `locks/${environmentKey(dependencies, registry)}.json`;
    if (!files.some((f) => f.path === path)) files.push({ path, data: Buffer.from(lock) });
    return path;
  };

  for (const fn of project.functions) entries.push(await functionEntry(project, fn, exclude, registry, files, addLock, options.signal));
  for (const app of project.config.apps) entries.push(await appEntry(project, app, exclude, registry, files, addLock, options.signal));
  if (entries.length === 0) throw new ValidationError(`config ${project.configPath} lists no apps and no functions: nothing to build`);
  entries.sort((a, b) => (`${a.kind}:${a.name}` < `${b.kind}:${b.name}` ? -1 : 1));

  const manifest: Manifest = { format: 1, project: project.name, multirank: MULTIRANK_VERSION, node: nodeMajor(), entries };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  files.push({ path: "manifest.json", data: Buffer.from(manifestText) });
  const artifact = writeTarGz(dedupe(files));
  const out = join(project.dir, ".multirank");
  mkdirSync(out, { recursive: true });
  const manifestPath = join(out, "manifest.json");
  const artifactPath = join(out, "artifact.tgz");
  writeFileSync(manifestPath, manifestText);
  writeFileSync(artifactPath, artifact);
  return { manifest, artifact, hash: createHash("sha256").update(artifact).digest("hex"), manifestPath, artifactPath };
}

type AddLock = (dependencies: string[]) => Promise<string | null>;

async function functionEntry(project: LoadedProject, fn: ConfigFunction, exclude: ReadonlySet<string>, registry: string, files: TarFile[], addLock: AddLock, signal?: AbortSignal): Promise<ManifestEntry> {
  const { options } = fn;
  const kept = options.dependencies.filter((spec) => !exclude.has(packageOf(spec)));
  const { registration } = await packageFunction({ ...options, dependencies: kept }, fn.module, { signal, secrets: "names", source: `deploy:${project.name}` });
  files.push({ path: `bundles/${registration.hash}.mjs`, data: Buffer.from(registration.code) });
  for (const [sha, bytes] of Object.entries(registration.tarballs)) files.push({ path: `tarballs/${sha}.tgz`, data: Buffer.from(bytes) });
  const dependencies = registration.dependencies.map((spec) => spec.replace(/^file:([0-9a-f]{64})\.tgz$/, "file:tarballs/$1.tgz"));
  const { machineType, worldSize, cpu, memory, ...rest } = registration.options;
  return {
    kind: "function",
    name: options.name,
    module: relativePath(project.dir, fn.module),
    export: await exportName(fn.module, fn),
    bundle: `bundles/${registration.hash}.mjs`,
    hash: registration.hash,
    machine: { machineType: machineType ?? null, worldSize: worldSize ?? null },
    resources: { cpu: cpu ?? null, memory: memory ?? null },
    routes: [`/fal/queue/${functionAppName(options.name)}`, `/fal/run/${functionAppName(options.name)}`, `/v2/fn--${options.name}`, ...(options.path ? [`${options.method ?? "POST"} ${options.path}`] : [])],
    dependencies,
    environmentKey: environmentKey(kept, registry),
    lockfile: await addLock(kept),
    options: jsonSafe(rest),
    secrets: [...options.secrets],
    multirank: MULTIRANK_VERSION,
    node: nodeMajor(),
  };
}

async function appEntry(project: LoadedProject, raw: AppDefinition | AppOptions, exclude: ReadonlySet<string>, registry: string, files: TarFile[], addLock: AddLock, signal?: AbortSignal): Promise<ManifestEntry> {
  const app = Object.isFrozen(raw) ? (raw as AppDefinition) : defineApp(raw as AppOptions);
  const worker = app.worker.startsWith("file:") ? new URL(app.worker).pathname : resolve(project.dir, app.worker);
  const installed = projectPackages(project.dir);
  let bundle;
  try {
    bundle = await bundleModule({ entry: worker, dependencies: [], external: [...new Set(["multirank", ...installed.keys(), ...exclude])], ...(signal ? { signal } : {}) });
  } catch (error) {
    if ((error as { code?: string }).code === "MULTIRANK_ERR_INVALID_ARGUMENT") throw new ValidationError(`app ${app.name}: worker ${app.worker}: ${(error as Error).message}`, { cause: error });
    throw error;
  }
  files.push({ path: `bundles/${bundle.hash}.mjs`, data: Buffer.from(bundle.code) });
  // An app's packages are the ones its worker imports, at the versions installed in the project.
  const dependencies = bundle.imports.filter((name) => name !== "multirank" && !exclude.has(name)).map((name) => `${name}@${installed.get(name)}`);
  const spec = app.machineType ? parseMachineType(app.machineType) : { worldSize: app.worldSize ?? 1 };
  const { name, worker: _worker, worldSize: _w, machineType, secrets, cpu: _cpu, memoryMiB: _memory, ...rest } = app;
  return {
    kind: "app",
    name,
    module: relativePath(project.dir, worker),
    export: "default",
    bundle: `bundles/${bundle.hash}.mjs`,
    hash: bundle.hash,
    machine: { machineType: machineType ?? null, worldSize: spec.worldSize },
    resources: { cpu: app.cpu ?? null, memory: app.memoryMiB === undefined ? null : app.memoryMiB / 1024 },
    routes: [`/fal/queue/${name}`, `/fal/run/${name}`, `/v2/${name.replace("/", "--")}`],
    dependencies,
    environmentKey: environmentKey(dependencies, registry),
    lockfile: await addLock(dependencies),
    options: jsonSafe(rest),
    secrets: [...secrets],
    multirank: MULTIRANK_VERSION,
    node: nodeMajor(),
  };
}

/** Package name -> installed version, for every package the project's package.json lists. */
function projectPackages(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  let manifest: { dependencies?: Record<string, string>; devDependencies?: Record<string, string>; optionalDependencies?: Record<string, string> } = {};
  try {
    manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  } catch {
    return found;
  }
  for (const name of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies, ...manifest.devDependencies })) {
    for (let at = dir; ; at = dirname(at)) {
      try {
        const { version } = JSON.parse(readFileSync(join(at, "node_modules", name, "package.json"), "utf8")) as { version?: string };
        if (version) found.set(name, version);
        break;
      } catch {
        if (dirname(at) === at) break;
      }
    }
  }
  return found;
}

/** The export of `module` that is the remote function `fn` (by its name: the config may have loaded its own copy of the module). */
async function exportName(module: string, fn: ConfigFunction): Promise<string> {
  const { tsImport } = await import("tsx/esm/api");
  const namespace = (/\.(c|m)?tsx?$/.test(module) ? await tsImport(pathToFileURL(module).href, import.meta.url) : await import(pathToFileURL(module).href)) as Record<string, unknown>;
  const name = Object.keys(namespace).find((key) => (namespace[key] as { functionName?: unknown } | null)?.functionName === fn.functionName);
  if (name === undefined) throw new ValidationError(`${module} does not export the function the config lists; export it`);
  return name;
}

/** A lockfile for exactly `dependencies`, made by npm without installing; undefined when npm cannot (offline). */
async function makeLockfile(dependencies: readonly string[], registry: string, signal?: AbortSignal): Promise<string | undefined> {
  const dir = mkdtempSync(join(tmpdir(), "multirank-lock-"));
  try {
    const specs = Object.fromEntries(
      dependencies.map((spec) => {
        const name = packageOf(spec);
        return [name, spec.slice(name.length + 1) || "*"];
      }),
    );
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name: "multirank-env", private: true, dependencies: specs }, null, 2)}\n`);
    const result = await runNpm(defaultNpmCommand(), ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev"], dir, npmEnvironment({ npm_config_registry: registry }), signal);
    if (result.code !== 0) return undefined;
    return readFileSync(join(dir, "package-lock.json"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function nodeMajor(): string {
  return process.versions.node.split(".")[0]!;
}

function packageOf(spec: string): string {
  if (spec.startsWith("file:")) return spec;
  const at = spec.indexOf("@", spec.startsWith("@") ? 1 : 0);
  return at === -1 ? spec : spec.slice(0, at);
}

function relativePath(dir: string, file: string): string {
  return relative(dir, file.startsWith("file:") ? new URL(file).pathname : file).split("\\").join("/");
}

function jsonSafe(value: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}

function dedupe(files: TarFile[]): TarFile[] {
  const byPath = new Map<string, TarFile>();
  for (const file of files) byPath.set(file.path, file);
  return [...byPath.values()];
}
