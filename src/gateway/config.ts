/**
 * Gateway config modules: a `.ts` or `.js` file whose default export is
 * `{ apps, keys?, ... }` (the {@link GatewayOptions} minus code-only hooks)
 * or a list of apps. `.ts` configs run without a build step (tsx).
 */
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import type { AppDefinition, AppOptions } from "./app.js";
import type { GatewayOptions } from "./gateway.js";

/** What a config module exports. */
export type GatewayConfig = Omit<GatewayOptions, "createRunner" | "createQueue" | "logger" | "host">;

/**
 * Declares a gateway config (types only; `createGateway` validates).
 * @example export default defineGatewayConfig({ apps: [defineApp({ ... })], keys: [process.env.GATEWAY_KEY!] });
 */
export function defineGatewayConfig(config: GatewayConfig): GatewayConfig {
  return config;
}

let tsxRegistered = false;

/**
 * Imports a config module; relative worker paths resolve against its folder.
 * @throws {ValidationError} when the module exports neither a config nor a list of apps.
 */
export async function loadGatewayConfig(path: string): Promise<GatewayConfig> {
  const absolute = resolve(path);
  if (/\.(c|m)?tsx?$/.test(absolute) && !tsxRegistered) {
    const { register } = await import("tsx/esm/api");
    register();
    tsxRegistered = true;
  }
  const module = (await import(pathToFileURL(absolute).href)) as { default?: unknown };
  const exported = module.default;
  const config: GatewayConfig | undefined = Array.isArray(exported)
    ? { apps: exported as ReadonlyArray<AppDefinition | AppOptions> }
    : typeof exported === "object" && exported !== null && Array.isArray((exported as GatewayConfig).apps)
      ? (exported as GatewayConfig)
      : undefined;
  if (!config) throw new ValidationError(`config ${path} must default-export { apps: [...] } or a list of apps`);
  return { baseDir: dirname(absolute), ...config };
}
