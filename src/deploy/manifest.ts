/**
 * `.multirank/manifest.json`: what a deployment holds, per app and function.
 * Never a secret's value: secrets travel as names, read on the server.
 */
import { ArtifactError } from "../errors.js";

/** One app or function of a deployment. */
export interface ManifestEntry {
  kind: "app" | "function";
  /** The app's `owner/alias`, or the function's name (served as `fn/<name>`). */
  name: string;
  /** The source module, relative to the project. */
  module: string;
  /** The export that is served: `default` for an app's worker. */
  export: string;
  /** The bundled module in the artifact (`bundles/<hash>.mjs`). */
  bundle: string;
  /** sha256 of the bundle. */
  hash: string;
  machine: { machineType: string | null; worldSize: number | null };
  resources: { cpu: number | null; memory: number | null };
  /** Where it is served. */
  routes: string[];
  /** npm specs of its environment; a tarball as `file:tarballs/<sha256>.tgz`. */
  dependencies: string[];
  /** The environment's key on a host like the builder's. */
  environmentKey: string;
  /** A lockfile for the environment in the artifact (`locks/<key>.json`), when the builder could make one. */
  lockfile: string | null;
  /** The rest of its options (timeouts, scaling, env...): the app's `defineApp` options, or the function's. */
  options: Record<string, unknown>;
  /** Names of environment variables the server passes in; their values never leave the server. */
  secrets: string[];
  /** The multirank version it was bundled against. */
  multirank: string;
  /** Node's major version it was built with (its environment's key depends on it). */
  node: string;
}

/** The manifest of a deployment. */
export interface Manifest {
  format: 1;
  /** The project's name on a server. */
  project: string;
  /** The multirank version that built it; a server of another version refuses it. */
  multirank: string;
  /** Node's major version it was built with. */
  node: string;
  entries: ManifestEntry[];
}

const ENTRY_FIELDS: Array<[keyof ManifestEntry, string]> = [
  ["kind", "string"],
  ["name", "string"],
  ["module", "string"],
  ["export", "string"],
  ["bundle", "string"],
  ["hash", "string"],
  ["machine", "object"],
  ["resources", "object"],
  ["routes", "array"],
  ["dependencies", "array"],
  ["environmentKey", "string"],
  ["options", "object"],
  ["secrets", "array"],
  ["multirank", "string"],
  ["node", "string"],
];

/**
 * Checks a manifest's shape and that every file it names is in the archive.
 * @throws {ArtifactError} naming the missing or wrong field, or the absent file.
 */
export function validateManifest(value: unknown, files: ReadonlyMap<string, Buffer>): Manifest {
  const fail = (field: string, why: string): never => {
    throw new ArtifactError(`manifest.json: ${field} ${why}`, field);
  };
  if (typeof value !== "object" || value === null) fail("(root)", "must be an object");
  const manifest = value as Partial<Manifest>;
  if (manifest.format !== 1) fail("format", `must be 1, got ${JSON.stringify(manifest.format)}`);
  if (typeof manifest.project !== "string" || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(manifest.project)) fail("project", "must be a project name (lowercase letters, digits, . _ -)");
  if (typeof manifest.multirank !== "string") fail("multirank", "is missing");
  if (typeof manifest.node !== "string") fail("node", "is missing");
  if (!Array.isArray(manifest.entries) || manifest.entries.length === 0) fail("entries", "must list at least one app or function");
  const names = new Set<string>();
  manifest.entries!.forEach((entry, index) => {
    const at = `entries[${index}]`;
    if (typeof entry !== "object" || entry === null) fail(at, "must be an object");
    for (const [field, type] of ENTRY_FIELDS) {
      const present = (entry as unknown as Record<string, unknown>)[field];
      const ok = type === "array" ? Array.isArray(present) : typeof present === type && present !== null;
      if (!ok) fail(`${at}.${field}`, present === undefined ? "is missing" : `must be ${type === "array" ? "a list" : `a ${type}`}`);
    }
    if (entry.kind !== "app" && entry.kind !== "function") fail(`${at}.kind`, `must be "app" or "function", got ${JSON.stringify(entry.kind)}`);
    const key = `${entry.kind}:${entry.name}`;
    if (names.has(key)) fail(`${at}.name`, `${entry.name} appears twice`);
    names.add(key);
    if (!/^[0-9a-f]{64}$/.test(entry.hash)) fail(`${at}.hash`, "must be a sha256 hex string");
    const needed = [entry.bundle, ...(entry.lockfile ? [entry.lockfile] : []), ...entry.dependencies.filter((d) => d.startsWith("file:tarballs/")).map((d) => d.slice("file:".length))];
    for (const file of needed) if (!files.has(file)) throw new ArtifactError(`manifest.json: ${at} (${entry.name}) names ${file}, which the artifact does not hold`, file);
  });
  return manifest as Manifest;
}
