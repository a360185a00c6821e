/**
 * Gateway config modules: a `.ts` or `.js` file whose default export is
 * `{ apps, keys?, ... }` (the {@link GatewayOptions} minus code-only hooks)
 * or a list of apps. `.ts` configs run without a build step (tsx).
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import { unknownKey } from "../util/did-you-mean.js";
import type { AppDefinition, AppOptions } from "./app.js";
import { ConfigError } from "./errors.js";
import { GATEWAY_OPTION_KEYS, type GatewayOptions } from "./options.js";

/** What a config module exports. */
export type GatewayConfig = Omit<GatewayOptions, "createRunner" | "createQueue" | "logger" | "host">;

const CODE_ONLY = ["createRunner", "createQueue", "logger", "host"];
// A project's config (multirank.config.ts) also names the project and lists its remote functions.
const CONFIG_KEYS = [...GATEWAY_OPTION_KEYS.filter((key) => !CODE_ONLY.includes(key)), "name", "functions"];

/**
 * Declares a gateway config (types only; `createGateway` validates).
 * @example export default defineGatewayConfig({ apps: [defineApp({ ... })], keys: [process.env.GATEWAY_KEY!] });
 */
export function defineGatewayConfig(config: GatewayConfig): GatewayConfig {
  return config;
}

/**
 * Imports a config module; relative worker paths resolve against its folder.
 * @throws {ValidationError} when the module exports neither a config nor a list of apps.
 * @throws {ConfigError} when the file does not exist, or the config has a field it does not know (with the closest known name).
 */
export async function loadGatewayConfig(path: string): Promise<GatewayConfig> {
  const absolute = resolve(path);
  if (!existsSync(absolute)) throw new ConfigError(`config file ${absolute} does not exist`);
  const url = pathToFileURL(absolute).href;
  // tsImport loads the module as ESM whatever the nearest package.json says:
  // a global tsx registration compiles `.ts` as CommonJS in a project without
  // "type": "module" (npm init's default), and its `import "multirank"` then
  // fails with ERR_REQUIRE_CYCLE_MODULE.
  const module = (/\.(c|m)?tsx?$/.test(absolute) ? await (await import("tsx/esm/api")).tsImport(url, import.meta.url) : await import(url)) as { default?: unknown };
  let exported = module.default;
  // A `.cts` (or a `.ts` tsx still compiled as CommonJS) arrives as its `exports` object, the config one level down.
  if (typeof exported === "object" && exported !== null && !Array.isArray(exported) && "default" in exported && !("apps" in exported)) {
    exported = (exported as { default: unknown }).default;
  }
  const config: GatewayConfig | undefined = Array.isArray(exported)
    ? { apps: exported as ReadonlyArray<AppDefinition | AppOptions> }
    : typeof exported === "object" && exported !== null && Array.isArray((exported as GatewayConfig).apps)
      ? (exported as GatewayConfig)
      : undefined;
  if (!config) throw new ValidationError(`config ${path} must default-export { apps: [...] } or a list of apps`);
  const unknown = unknownKey(config, CONFIG_KEYS);
  if (unknown) throw new ConfigError(`config ${path} has no field ${unknown.described}`);
  return { baseDir: dirname(absolute), ...config };
}
