/**
 * Deployments on a server: each project's artifacts, kept as numbered
 * revisions under the server's data dir and brought back after a restart.
 * Deploying checks the artifact, prepares every changed app and function
 * (environments, bundles), and only then swaps them in together: calls in
 * flight finish on the old revision, new ones go to the new; apps and
 * functions whose code and options did not change keep their warm runners.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { ArtifactError, VersionMismatchError } from "../errors.js";
import { defineApp, resolveApp, type AppOptions, type ResolvedApp } from "../gateway/app.js";
import type { AppTable } from "../gateway/app-table.js";
import { AppNotFoundError, ConflictError } from "../gateway/errors.js";
import type { MachineType } from "../gateway/machine-types.js";
import { ensureEnvironment } from "../functions/environment.js";
import { linkMultirank, writeBundle } from "../functions/function-app.js";
import { stableJson, type PreparedFunction, type ServedFunctions } from "../functions/served-functions.js";
import type { RegistrationRequest } from "../functions/wire.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import { MULTIRANK_VERSION } from "../version.js";
import { validateManifest, type Manifest, type ManifestEntry } from "./manifest.js";
import { readTarGz } from "./tar.js";

/** What {@link Deployments} works with. */
export interface DeploymentsInit {
  /** Where projects' revisions are kept. */
  dir: string;
  functions: ServedFunctions;
  table: AppTable;
  cacheDir: string;
  gpuCount: number;
  graceMs: number;
  logger: Logger;
  /** Largest artifact, bytes, compressed and once decompressed. @default 1 GiB */
  maxArtifactBytes?: number;
}

/** One revision of a project. */
export interface RevisionInfo {
  revision: number;
  /** sha256 of its artifact. */
  hash: string;
  created: string;
  entries: Array<{ kind: "app" | "function"; name: string; routes: string[]; hash: string }>;
}

/** A deployed project. */
export interface DeploymentInfo {
  project: string;
  current: number;
  revisions: RevisionInfo[];
}

/** What a deploy (or rollback) changed. */
export interface DeployResult {
  project: string;
  revision: number;
  /** Per app and function: `added`, `updated`, `unchanged`; and `removed` for ones the revision no longer has. */
  changes: Array<{ kind: "app" | "function"; name: string; change: "added" | "updated" | "unchanged" | "removed" }>;
}

/** A checked artifact. */
export interface CheckedArtifact {
  manifest: Manifest;
  files: Map<string, Buffer>;
  hash: string;
}

/** What a revision needs built: each entry, with what was prepared for it when it changed. */
interface Plan {
  functions: Array<{ entry: ManifestEntry; prepared?: PreparedFunction }>;
  apps: Array<{ entry: ManifestEntry; prepared?: PreparedApp }>;
  names: Set<string>;
}

/** An app ready to be served. */
interface PreparedApp {
  name: string;
  digest: string;
  app: ResolvedApp;
}

/** The projects deployed on a server. */
export class Deployments {
  readonly #init: DeploymentsInit;
  readonly #log: Logger;
  readonly #projects = new Map<string, DeploymentInfo>();
  /** Served name (`owner/alias`, or a function's name) -> the project that deployed it. */
  readonly #owners = new Map<string, string>();
  /** App name -> digest of the deployed entry, to keep unchanged apps warm. */
  readonly #appDigests = new Map<string, string>();
  /** Deploys, rollbacks and deletes run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(init: DeploymentsInit) {
    this.#init = init;
    this.#log = init.logger.child({ component: "deployments" });
  }

  get maxArtifactBytes(): number {
    return this.#init.maxArtifactBytes ?? 1024 ** 3;
  }

  /**
   * Checks an artifact without changing anything.
   * @throws {ArtifactError} (4xx) naming the problem; {@link VersionMismatchError} when another multirank version built it.
   */
  check(artifact: Buffer): CheckedArtifact {
    if (artifact.length > this.maxArtifactBytes) throw new ArtifactError(`the artifact is ${artifact.length} bytes, over the limit of ${this.maxArtifactBytes}`);
    const files = readTarGz(artifact, { maxBytes: this.maxArtifactBytes });
    const text = files.get("manifest.json");
    if (!text) throw new ArtifactError("the artifact holds no manifest.json", "manifest.json");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString("utf8"));
    } catch (error) {
      throw new ArtifactError(`manifest.json is not JSON: ${(error as Error).message}`, "manifest.json");
    }
    const manifest = validateManifest(parsed, files);
    if (manifest.multirank !== MULTIRANK_VERSION) throw new VersionMismatchError(manifest.multirank, MULTIRANK_VERSION, "this server");
    return { manifest, files, hash: createHash("sha256").update(artifact).digest("hex") };
  }

  /** Deploys a checked artifact as the project's next revision. `logger` receives the build's progress. */
  deploy(artifact: Buffer, checked: CheckedArtifact, logger?: Logger): Promise<DeployResult> {
    return this.#serial(async () => {
      const { project } = checked.manifest;
      const info = this.#projects.get(project) ?? { project, current: 0, revisions: [] };
      const revision = Math.max(0, ...info.revisions.map((r) => r.revision)) + 1;
      const plan = await this.#prepare(checked, logger ?? this.#log);
      // Kept before anything changes: a revision that cannot be written is not served.
      const dir = join(this.#init.dir, project);
      writeFileAtomicSync(join(dir, `${revision}.tgz`), artifact);
      const next: DeploymentInfo = { project, current: revision, revisions: [...info.revisions, revisionInfo(revision, checked)] };
      writeFileAtomicSync(join(dir, "state.json"), Buffer.from(`${JSON.stringify(next, null, 2)}\n`));
      const changes = this.#commit(project, plan);
      this.#projects.set(project, next);
      this.#log.info({ project, revision, changes: changes.filter((c) => c.change !== "unchanged").length }, "deployed");
      return { project, revision, changes };
    });
  }

  /** Serves an earlier revision again (the one before the current, by default). @throws {AppNotFoundError} {ValidationError} */
  rollback(name: string, revision?: number): Promise<DeployResult> {
    return this.#serial(async () => {
      const info = this.#info(name);
      const target = revision ?? Math.max(0, ...info.revisions.map((r) => r.revision).filter((r) => r < info.current));
      if (!info.revisions.some((r) => r.revision === target)) {
        throw new ArtifactError(`${info.project} has no revision ${target === 0 ? "before the current one" : target}; it has ${info.revisions.map((r) => r.revision).join(", ")}`, "revision");
      }
      const artifact = readFileSync(join(this.#init.dir, info.project, `${target}.tgz`));
      const checked = this.check(artifact);
      const plan = await this.#prepare(checked, this.#log);
      const next = { ...info, current: target };
      writeFileAtomicSync(join(this.#init.dir, info.project, "state.json"), Buffer.from(`${JSON.stringify(next, null, 2)}\n`));
      const changes = this.#commit(info.project, plan);
      this.#projects.set(info.project, next);
      this.#log.info({ project: info.project, revision: target }, "rolled back");
      return { project: info.project, revision: target, changes };
    });
  }

  /** Stops serving a project and forgets its revisions. @throws {AppNotFoundError} */
  delete(name: string): Promise<DeploymentInfo> {
    return this.#serial(async () => {
      const info = this.#info(name);
      for (const [served, owner] of [...this.#owners]) if (owner === info.project) this.#stopServing(served);
      rmSync(join(this.#init.dir, info.project), { recursive: true, force: true });
      this.#projects.delete(info.project);
      this.#log.info({ project: info.project }, "deployment deleted");
      return info;
    });
  }

  list(): DeploymentInfo[] {
    return [...this.#projects.values()];
  }

  /** A project by its name, or by the name of an app or function it deployed. @throws {AppNotFoundError} */
  info(name: string): DeploymentInfo {
    return this.#info(name);
  }

  /** Brings back every project's current revision (at server start); a project that fails is logged and skipped. */
  async restore(): Promise<void> {
    let names: string[] = [];
    try {
      names = readdirSync(this.#init.dir);
    } catch {
      return; // nothing deployed yet
    }
    for (const project of names.sort()) {
      try {
        const info = JSON.parse(readFileSync(join(this.#init.dir, project, "state.json"), "utf8")) as DeploymentInfo;
        const checked = this.check(readFileSync(join(this.#init.dir, project, `${info.current}.tgz`)));
        const plan = await this.#prepare(checked, this.#log);
        this.#commit(project, plan);
        this.#projects.set(project, info);
        this.#log.info({ project, revision: info.current }, "deployment restored");
      } catch (error) {
        this.#log.error({ err: error, project }, "a deployment could not be restored; it is not served");
      }
    }
  }

  #info(name: string): DeploymentInfo {
    const info = this.#projects.get(name) ?? this.#projects.get(this.#owners.get(name) ?? this.#owners.get(name.replace(/^fn\//, "")) ?? "");
    if (!info) throw new AppNotFoundError(name);
    return info;
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.catch(() => {}).then(work);
    this.#queue = run;
    return run;
  }

  /** Builds what changed; changes nothing. */
  async #prepare(checked: CheckedArtifact, log: Logger): Promise<Plan> {
    const { manifest, files } = checked;
    const project = manifest.project;
    const functions: Array<{ entry: ManifestEntry; prepared?: PreparedFunction }> = [];
    const apps: Array<{ entry: ManifestEntry; prepared?: PreparedApp }> = [];
    for (const entry of manifest.entries) {
      const owner = this.#owners.get(entry.name);
      if (entry.kind === "function") {
        const body = registration(project, entry, files);
        if (owner !== undefined && owner !== project) throw new ConflictError(`function ${entry.name} is deployed here by project ${owner}`);
        if (this.#init.functions.unchanged(body)) {
          log.info({ function: entry.name }, `function ${entry.name}: unchanged, stays warm`);
          functions.push({ entry });
          continue;
        }
        log.info({ function: entry.name }, `function ${entry.name}: preparing its environment (${entry.dependencies.length} dependencies)`);
        const lockfile = entry.lockfile ? files.get(entry.lockfile)!.toString("utf8") : undefined;
        functions.push({ entry, prepared: await this.#init.functions.prepare(body, process.env, { logger: log, ...(lockfile ? { lockfile } : {}) }) });
      } else {
        if ((owner !== undefined && owner !== project) || (owner === undefined && this.#init.table.get(entry.name))) {
          throw new ConflictError(`app ${entry.name} is already served here${owner ? ` by project ${owner}` : " (from the server's config)"}`);
        }
        const digest = appDigest(entry);
        if (this.#appDigests.get(entry.name) === digest && this.#init.table.get(entry.name)) {
          log.info({ app: entry.name }, `app ${entry.name}: unchanged, stays warm`);
          apps.push({ entry });
          continue;
        }
        log.info({ app: entry.name }, `app ${entry.name}: preparing its environment (${entry.dependencies.length} dependencies)`);
        apps.push({ entry, prepared: await this.#prepareApp(entry, files, digest, log) });
      }
    }
    return { functions, apps, names: new Set(manifest.entries.map((e) => e.name)) };
  }

  async #prepareApp(entry: ManifestEntry, files: ReadonlyMap<string, Buffer>, digest: string, log: Logger): Promise<PreparedApp> {
    const lockfile = entry.lockfile ? files.get(entry.lockfile)!.toString("utf8") : undefined;
    const environment = await ensureEnvironment({ dependencies: entry.dependencies, cacheDir: this.#init.cacheDir, logger: log, ...(lockfile ? { lockfile } : {}) });
    const worker = writeBundle(environment.dir, entry.hash, files.get(entry.bundle)!.toString("utf8"));
    linkMultirank(environment.nodeModules);
    const machine = entry.machine.machineType ? { machineType: entry.machine.machineType as MachineType } : { worldSize: entry.machine.worldSize ?? 1 };
    const resources = { ...(entry.resources.cpu !== null ? { cpu: entry.resources.cpu } : {}), ...(entry.resources.memory !== null ? { memory: entry.resources.memory } : {}) };
    const definition = defineApp({ ...(entry.options as Partial<AppOptions>), ...machine, ...resources, name: entry.name, worker, secrets: entry.secrets } as AppOptions);
    return { name: entry.name, digest, app: resolveApp(definition, { gpuCount: this.#init.gpuCount, baseDir: environment.dir }) };
  }

  /** Swaps in what was prepared and stops what the revision no longer has. */
  #commit(project: string, plan: Plan): DeployResult["changes"] {
    const changes: DeployResult["changes"] = [];
    const prepared = plan.functions.flatMap((f) => (f.prepared ? [f.prepared] : []));
    this.#init.functions.commit(prepared);
    for (const { entry, prepared: fn } of plan.functions) {
      changes.push({ kind: "function", name: entry.name, change: fn ? (fn.replaces ? "updated" : "added") : "unchanged" });
      this.#owners.set(entry.name, project);
    }
    for (const { entry, prepared: app } of plan.apps) {
      if (app) {
        const existed = this.#init.table.get(app.name) !== undefined;
        this.#init.table.replace(app.app, this.#init.graceMs);
        this.#appDigests.set(app.name, app.digest);
        changes.push({ kind: "app", name: entry.name, change: existed ? "updated" : "added" });
      } else {
        changes.push({ kind: "app", name: entry.name, change: "unchanged" });
      }
      this.#owners.set(entry.name, project);
    }
    for (const [served, owner] of [...this.#owners]) {
      if (owner !== project || plan.names.has(served)) continue;
      const kind = this.#appDigests.has(served) ? "app" : "function";
      this.#stopServing(served);
      changes.push({ kind, name: served, change: "removed" });
    }
    return changes;
  }

  #stopServing(name: string): void {
    if (this.#appDigests.delete(name)) this.#init.table.remove(name, this.#init.graceMs);
    else this.#init.functions.remove(name);
    this.#owners.delete(name);
  }
}

/** A function entry as the function server's registration. */
function registration(project: string, entry: ManifestEntry, files: ReadonlyMap<string, Buffer>): RegistrationRequest {
  const tarballs: Record<string, Uint8Array> = {};
  const dependencies = entry.dependencies.map((spec) => {
    const match = /^file:tarballs\/([0-9a-f]{64})\.tgz$/.exec(spec);
    if (!match) return spec;
    tarballs[match[1]!] = files.get(`tarballs/${match[1]}.tgz`)!;
    return `file:${match[1]}.tgz`;
  });
  const options = {
    ...entry.options,
    ...(entry.machine.machineType ? { machineType: entry.machine.machineType } : entry.machine.worldSize ? { worldSize: entry.machine.worldSize } : {}),
    ...(entry.resources.cpu !== null ? { cpu: entry.resources.cpu } : {}),
    ...(entry.resources.memory !== null ? { memory: entry.resources.memory } : {}),
  } as RegistrationRequest["options"];
  const code = files.get(entry.bundle)!.toString("utf8");
  return { name: entry.name, source: `deploy:${project}`, hash: entry.hash, code, dependencies, tarballs, options, secrets: Object.fromEntries(entry.secrets.map((name) => [name, ""])) };
}

function appDigest(entry: ManifestEntry): string {
  return createHash("sha256").update(stableJson({ hash: entry.hash, dependencies: entry.dependencies, machine: entry.machine, resources: entry.resources, options: entry.options, secrets: entry.secrets })).digest("hex");
}

function revisionInfo(revision: number, checked: CheckedArtifact): RevisionInfo {
  return {
    revision,
    hash: checked.hash,
    created: new Date().toISOString(),
    entries: checked.manifest.entries.map((e) => ({ kind: e.kind, name: e.kind === "function" ? e.name : e.name, routes: e.routes, hash: e.hash })),
  };
}

