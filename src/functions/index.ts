/** Serverless functions: isolated dependency environments (more to come: `remote()`, hosts). */
export { DEFAULT_REGISTRY, ENV_MARKER, ensureEnvironment, environmentKey, type Environment, type EnvironmentOptions } from "./environment.js";
export { DependencyInstallError } from "../errors.js";
