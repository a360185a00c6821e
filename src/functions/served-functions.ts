/**
 * The functions a server serves: registered by clients one by one or
 * deployed together. Preparing a function (checking its bundle, installing its
 * environment, fitting its app to the host) changes nothing; committing swaps
 * the prepared ones in at once, so a refusal or a failed install leaves what
 * was served before.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ValidationError } from "../errors.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import type { ResolvedApp } from "../gateway/app.js";
import type { AppTable, ServedApp } from "../gateway/app-table.js";
import { AppNotFoundError, ConflictError } from "../gateway/errors.js";
import { checkBundleSyntax } from "./bundle.js";
import { ensureEnvironment } from "./environment.js";
import { functionApp, linkMultirank, writeBundle } from "./function-app.js";
import { resolveRemoteOptions, type ResolvedRemoteOptions } from "./options.js";
import { functionAppName, type RegistrationRequest } from "./wire.js";

/** A function served here. */
export interface Registered {
  readonly name: string;
  /** Who defined it: `<hostname>:<module>` for a client's registration, `deploy:<project>` for a deployment. */
  readonly source: string;
  readonly digest: string;
  readonly options: ResolvedRemoteOptions;
}

/** A function ready to be served: everything that could fail has. */
export interface PreparedFunction extends Registered {
  readonly app: ResolvedApp;
  readonly route: string | undefined;
  /** Whether a function of that name was served before. */
  readonly replaces: boolean;
}

/** What {@link ServedFunctions} works with. */
export interface ServedFunctionsInit {
  table: AppTable;
  cacheDir: string;
  dataDir: string;
  gpuCount: number;
  graceMs: number;
  logger: Logger;
  /** Given to the functions' processes, with the server's URL, so a function can call another here. */
  internalKey: string;
  selfUrl: () => string | undefined;
  /** Whether another route of the server already answers `method url`. */
  isTaken: (method: string, url: string) => boolean;
}

/** The functions a server serves, by name. */
export class ServedFunctions {
  readonly #init: ServedFunctionsInit;
  readonly #log: Logger;
  readonly #registered = new Map<string, Registered>();
  /** `METHOD /path` of direct endpoints -> function name. */
  readonly #direct = new Map<string, string>();
  /** Set by the routes: throws unless the request may register code. */
  authorizeAdmin: (request: FastifyRequest) => void = () => {};

  constructor(init: ServedFunctionsInit) {
    this.#init = init;
    this.#log = init.logger.child({ component: "functions" });
  }

  /** Where environments are built. */
  get cacheDir(): string {
    return this.#init.cacheDir;
  }

  /** The data root functions see. */
  get dataDir(): string {
    return this.#init.dataDir;
  }

  /** The function and its app. @throws {AppNotFoundError} */
  get(name: string): { entry: Registered; app: ServedApp } {
    const entry = this.#registered.get(name);
    const app = entry && this.#init.table.get(functionAppName(name));
    if (!entry || !app) throw new AppNotFoundError(functionAppName(name));
    return { entry, app };
  }

  list(): Registered[] {
    return [...this.#registered.values()];
  }

  /** The function served directly at `METHOD /path`, if any. */
  directRoute(key: string): string | undefined {
    return this.#direct.get(key);
  }

  /**
   * True when exactly this function (code, dependencies, options, secrets) is served already.
   * @throws {ConflictError} when another source registered the name.
   */
  unchanged(body: RegistrationRequest): boolean {
    const existing = this.#registered.get(body.name);
    checkOwner(existing, body);
    return existing !== undefined && existing.digest === digestOf(body) && this.#init.table.get(functionAppName(body.name)) !== undefined;
  }

  /**
   * Checks and builds a function without serving it yet.
   * @param secrets the secrets' values (a client's), or the environment they are read from (a deployment: the server's).
   * @throws {ValidationError} {BundleError} {DependencyInstallError} {ConflictError} {ConfigError}
   */
  async prepare(body: RegistrationRequest, secrets: NodeJS.ProcessEnv, options: { signal?: AbortSignal; logger?: Logger; lockfile?: string } = {}): Promise<PreparedFunction> {
    const existing = this.#registered.get(body.name);
    checkOwner(existing, body);
    if (createHash("sha256").update(body.code).digest("hex") !== body.hash) throw new ValidationError(`the bundle of ${body.name} does not match its hash ${body.hash}`);
    // A bundle that does not parse is refused now, not when its ranks start.
    await checkBundleSyntax(body.code, body.name);
    const dependencies = body.dependencies.map((spec) => {
      const tarball = /^file:([0-9a-f]{64})\.tgz$/.exec(spec);
      if (!tarball) return spec;
      const bytes = body.tarballs[tarball[1]!];
      if (!bytes) throw new ValidationError(`dependency ${spec} of ${body.name} came without its tarball`);
      return `file:${storeTarball(this.#init.cacheDir, tarball[1]!, bytes)}`;
    });
    const secretNames = Object.keys(body.secrets);
    const resolved = resolveRemoteOptions({ ...body.options, name: body.name, dependencies, secrets: secretNames } as Parameters<typeof resolveRemoteOptions>[0]);
    const route = directRoute(resolved);
    if (route) {
      const [method, path] = route.split(" ") as [string, string];
      const owner = this.#direct.get(route);
      if ((owner !== undefined && owner !== body.name) || this.#init.isTaken(method, path)) {
        throw new ConflictError(`${route} of function ${body.name} is already served here${owner ? ` by function ${owner}` : ""}`);
      }
    }
    const log = options.logger ?? this.#log;
    const environment = await ensureEnvironment({
      dependencies,
      cacheDir: this.#init.cacheDir,
      logger: log,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.lockfile !== undefined ? { lockfile: options.lockfile } : {}),
    });
    const bundlePath = writeBundle(environment.dir, body.hash, body.code);
    linkMultirank(environment.nodeModules);
    const self = this.#init.selfUrl();
    const app = functionApp({
      options: resolved,
      bundlePath,
      dataDir: this.#init.dataDir,
      gpuCount: this.#init.gpuCount,
      secretsFrom: secrets,
      // A function that calls another calls it here, as a caller with the internal key.
      env: self ? { MULTIRANK_HOST: self, MULTIRANK_KEY: this.#init.internalKey, MULTIRANK_NESTED_HOST: self } : {},
    });
    log.info({ function: body.name, bundle: body.hash.slice(0, 12), environment: environment.key.slice(0, 12), built: environment.built }, "function prepared");
    return { name: body.name, source: body.source, digest: digestOf(body), options: resolved, app, route, replaces: existing !== undefined };
  }

  /** Serves the prepared functions in place of the ones of the same names: new calls go to them at once. */
  commit(prepared: readonly PreparedFunction[]): void {
    for (const entry of prepared) {
      this.#init.table.replace(entry.app, this.#init.graceMs);
      for (const [key, owner] of this.#direct) if (owner === entry.name) this.#direct.delete(key);
      if (entry.route) this.#direct.set(entry.route, entry.name);
      this.#registered.set(entry.name, { name: entry.name, source: entry.source, digest: entry.digest, options: entry.options });
      this.#log.info({ function: entry.name, route: entry.route }, entry.replaces ? "function replaced" : "function registered");
    }
  }

  /** Who registered `name`, if it is served. */
  sourceOf(name: string): string | undefined {
    return this.#registered.get(name)?.source;
  }

  /** Stops serving `name` (its calls in flight finish first). */
  remove(name: string): void {
    if (!this.#registered.delete(name)) return;
    for (const [key, owner] of this.#direct) if (owner === name) this.#direct.delete(key);
    this.#init.table.remove(functionAppName(name), this.#init.graceMs);
  }
}

/**
 * Names are unique per server: another source may not take a name, except
 * that a deployment (an admin's) takes over a name a client registered on
 * the fly (`server()`), which lasts only for the server's life anyway.
 * @throws {ConflictError}
 */
function checkOwner(existing: Registered | undefined, body: RegistrationRequest): void {
  if (!existing || existing.source === body.source) return;
  const adHoc = !existing.source.startsWith("deploy:") && !existing.source.startsWith("config:");
  if (body.source.startsWith("deploy:") && adHoc) return;
  throw new ConflictError(`function "${body.name}" is already registered here by ${existing.source}; names are unique per server`);
}

/** `METHOD /path` of a function's direct endpoint. */
export function directRoute(options: ResolvedRemoteOptions): string | undefined {
  return options.path === undefined ? undefined : `${options.method ?? "POST"} ${options.path}`;
}

/** Everything that makes two registrations the same function: code, dependencies, options, secret values. */
function digestOf(body: RegistrationRequest): string {
  const hash = createHash("sha256");
  hash.update(body.hash).update("\0").update(JSON.stringify([...body.dependencies].sort())).update("\0").update(stableJson(body.options));
  for (const name of Object.keys(body.secrets).sort()) hash.update("\0").update(name).update("=").update(createHash("sha256").update(body.secrets[name]!).digest());
  return hash.digest("hex");
}

/** JSON with sorted keys (undefined fields left out), so equal values give equal text. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    return `{${Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function storeTarball(cacheDir: string, sha: string, bytes: Uint8Array): string {
  const path = join(cacheDir, "uploads", `${sha}.tgz`);
  writeFileAtomicSync(path, bytes);
  return path;
}
