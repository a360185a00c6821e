/**
 * A project's config: `multirank.config.ts` (or `.js`, `.mjs`), whose
 * default export is `defineConfig({ apps, functions, ... })`. A
 * `gateway.config.ts` keeps working. What `serve`, `dev`, `build` and
 * `deploy` read.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ValidationError } from "../errors.js";
import { loadGatewayConfig, type GatewayConfig } from "../gateway/config.js";

/** A remote function as a config lists it (what `remote()` returned). */
export interface ConfigFunction {
  readonly functionName: string;
  readonly module: string;
  readonly options: import("../functions/options.js").ResolvedRemoteOptions;
}

/** What a project's config exports. */
export interface ProjectConfig extends GatewayConfig {
  /** The project's name on a server (`multirank apps`). @default package.json's name, else the folder's */
  name?: string;
  /** Remote functions served and deployed with the apps (the values `remote()` returned). @default [] */
  functions?: readonly ConfigFunction[];
}

/** The config file names looked for, in order. */
export const PROJECT_CONFIG_FILES = Object.freeze(["multirank.config.ts", "multirank.config.mts", "multirank.config.js", "multirank.config.mjs", "gateway.config.ts"]);

/**
 * Declares a project's config (types only; loading validates).
 * @example export default defineConfig({ apps: [defineApp({ name: "acme/echo", worker: "./workers/echo.ts" })], functions: [sumNumbers] });
 */
export function defineConfig(config: ProjectConfig): ProjectConfig {
  return config;
}

/** A loaded config. */
export interface LoadedProject {
  /** The project's folder. */
  dir: string;
  /** The config file. */
  configPath: string;
  /** The project's name, for a server. */
  name: string;
  config: ProjectConfig & { apps: NonNullable<GatewayConfig["apps"]> };
  functions: readonly ConfigFunction[];
}

/** The config file of the project in `dir`, if any. */
export function findProjectConfig(dir: string): string | undefined {
  return PROJECT_CONFIG_FILES.map((file) => join(dir, file)).find((path) => existsSync(path));
}

/**
 * Loads the project in `dir` (or the config file `path`).
 * @throws {ValidationError} when there is no config, or it lists something that is not a remote function.
 */
export async function loadProject(dirOrConfig: string): Promise<LoadedProject> {
  const given = resolve(dirOrConfig);
  const configPath = /\.(c|m)?[jt]s$/.test(given) ? given : findProjectConfig(given);
  if (!configPath || !existsSync(configPath)) {
    throw new ValidationError(`no project config in ${given}: expected one of ${PROJECT_CONFIG_FILES.join(", ")} (multirank init makes one)`);
  }
  const loaded = (await loadGatewayConfig(configPath)) as ProjectConfig;
  const dir = loaded.baseDir ?? resolve(configPath, "..");
  const functions = loaded.functions ?? [];
  if (!Array.isArray(functions)) throw new ValidationError(`config ${configPath}: functions must be a list of remote functions`);
  functions.forEach((fn, index) => {
    if (typeof fn !== "function" || typeof (fn as ConfigFunction).functionName !== "string" || typeof (fn as ConfigFunction).module !== "string") {
      throw new ValidationError(`config ${configPath}: functions[${index}] is not a remote function (what remote() returns)`);
    }
  });
  return { dir, configPath, name: projectName(dir, loaded.name), config: { ...loaded, apps: loaded.apps ?? [] }, functions };
}

function projectName(dir: string, configured: string | undefined): string {
  let name = configured;
  if (name === undefined) {
    try {
      name = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string }).name;
    } catch {
      // no package.json: the folder's name
    }
  }
  const cleaned = (name ?? basename(dir)).replace(/^@/, "").replace(/[^a-z0-9._-]+/gi, "-").toLowerCase().replace(/^-+|-+$/g, "");
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(cleaned)) throw new ValidationError(`the project's name ${JSON.stringify(name)} cannot name it on a server; set name in the config`);
  return cleaned;
}
