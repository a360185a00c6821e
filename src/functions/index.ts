/**
 * Serverless functions: `remote()` and what goes with it. Re-exports only.
 */
export { callSignal } from "./call-scope.js";
export { cached } from "./cached.js";
export { DataSyncError } from "./data-errors.js";
export { dataRoutes, registerDataRoutes, type DataRoutesOptions } from "./data-routes.js";
export { dataPath, dataRoot, resolveDataPath } from "./data-root.js";
export type { CallOptions, FunctionDefinition, Host } from "./host.js";
export { LocalHost, type LocalHostOptions } from "./local-host.js";
export { server, ServerHost, type ServerHostOptions } from "./server-host.js";
export { registerFunctionRoutes, type FunctionServerOptions } from "./function-server.js";
export { resolveRemoteOptions, type HttpMethod, type RemoteOptions, type ResolvedRemoteOptions, type Serializer } from "./options.js";
export { defaultHost, isolated, isRemote, local, remote, type FunctionCall, type FunctionCallStatus, type JobOutput, type MapOptions, type RemoteCallOptions, type RemoteFunction } from "./remote.js";
export {
  hashTree,
  syncDir,
  syncDirLocal,
  syncDirRemote,
  type RemoteDataHost,
  type SpecialEntry,
  type SyncDirLocalOptions,
  type SyncDirOptions,
  type SyncDirRemoteOptions,
  type SyncDirResult,
  type TreeEntry,
  type TreeManifest,
} from "./sync-dir.js";
export { bundleModule, packageNameOf, type Bundle, type BundleOptions } from "./bundle.js";
export { DEFAULT_REGISTRY, ENV_MARKER, ensureEnvironment, environmentKey, type Environment, type EnvironmentOptions } from "./environment.js";
export { DependencyInstallError } from "../errors.js";
export {
  ensureLlamaEngine,
  installCommand as llamaEngineInstallCommand,
  LLAMA_ENGINE_MARKER,
  LLAMA_ENGINE_VERSION,
  llamaEngineDir,
  llamaEnginePackages,
  loadLlamaEngine,
  type LlamaCompletionInstance,
  type LlamaContextInstance,
  type LlamaEngine,
  type LlamaEngineModule,
  type LlamaEngineOptions,
  type LlamaEngineVariant,
  type LlamaInstance,
  type LlamaModelInstance,
} from "./llama-engine.js";
