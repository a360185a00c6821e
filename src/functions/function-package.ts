/**
 * A remote function as a server receives it: its module bundled, its
 * `file:` tarballs read, its options and secrets, for a registration
 * (`server()`) or a deployment (`multirank build`).
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ValidationError } from "../errors.js";
import { bundleModule, type Bundle } from "./bundle.js";
import type { ResolvedRemoteOptions } from "./options.js";
import { definedBy, registered } from "./registry.js";
import type { RegistrationRequest, WireOptions } from "./wire.js";

/** Options of {@link packageFunction}. */
export interface PackageFunctionOptions {
  signal?: AbortSignal | undefined;
  /**
   * Send the secrets' values from this process's environment (a client's
   * registration), or only their names for the server to read from its own
   * (a deployment: no value is ever written to an artifact). @default "values"
   */
  secrets?: "values" | "names";
  /** Who defines it. @default `<hostname>:<module path>` */
  source?: string;
}

/** A packaged function, and the files its bundle inlined (whose remote functions travel with it). */
export interface PackagedFunction {
  registration: RegistrationRequest;
  files: string[];
}

/**
 * Bundles the module that defines a remote function. One module, one bundle,
 * for all the functions it defines: its imports are checked against what any
 * of them declares. The function's environment holds its own dependencies
 * only, so a package imported at the module's top level must be declared by
 * each function; one imported inside a function's body, by that function.
 * Another module of the graph that defines remote functions (a function this
 * one calls) may import what its own functions declare: their bodies run in
 * their own environments.
 */
export async function bundleFunctionModule(options: ResolvedRemoteOptions, module: string, signal: AbortSignal | undefined): Promise<Bundle> {
  const declared = new Set([...options.dependencies, ...definedBy(module).flatMap((entry) => entry.dependencies)]);
  const moduleDependencies: Record<string, string[]> = {};
  for (const entry of registered()) {
    if (entry.module !== module) (moduleDependencies[entry.module] ??= []).push(...entry.dependencies);
  }
  return bundleModule({ entry: module, dependencies: [...declared], moduleDependencies, ...(signal ? { signal } : {}) });
}

/**
 * Packages one remote function.
 * @throws {ValidationError} a `file:` dependency that is not a tarball, a secret unset here.
 * @throws {UndeclaredDependencyError} {BundleError} as {@link bundleModule}.
 */
export async function packageFunction(options: ResolvedRemoteOptions, module: string, how: PackageFunctionOptions = {}): Promise<PackagedFunction> {
  const { signal } = how;
  const bundle = await bundleFunctionModule(options, module, signal);
  const tarballs: Record<string, Uint8Array> = {};
  const dependencies = options.dependencies.map((spec) => {
    if (!spec.startsWith("file:")) return spec;
    const path = spec.startsWith("file://") ? fileURLToPath(spec) : resolve(spec.slice("file:".length));
    let bytes: Buffer;
    try {
      if (!statSync(path).isFile()) throw new Error("not a file");
      bytes = readFileSync(path);
    } catch {
      throw new ValidationError(`remote function ${options.name}: dependency ${spec} must be a tarball (npm pack) to reach a server; ${isAbsolute(path) ? path : spec} is not one`);
    }
    const sha = createHash("sha256").update(bytes).digest("hex");
    tarballs[sha] = bytes;
    return `file:${sha}.tgz`;
  });
  const secrets: Record<string, string> = {};
  for (const name of options.secrets) {
    if (how.secrets === "names") {
      secrets[name] = "";
      continue;
    }
    const value = process.env[name];
    if (value === undefined) throw new ValidationError(`remote function ${options.name}: secret ${name} is not set in this process's environment`);
    secrets[name] = value;
  }
  const { name: _name, dependencies: _dependencies, secrets: _secrets, ...rest } = options;
  const wireOptions: WireOptions = rest;
  const file = module.startsWith("file:") ? fileURLToPath(module) : module;
  return {
    registration: { name: options.name, source: how.source ?? `${hostname()}:${file}`, hash: bundle.hash, code: bundle.code, dependencies, tarballs, options: wireOptions, secrets },
    files: bundle.files,
  };
}

