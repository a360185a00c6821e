/**
 * Serverless functions: `remote()` and what goes with it. Re-exports only.
 */
export { DataSyncError } from "./data-errors.js";
export { dataRoutes, registerDataRoutes, type DataRoutesOptions } from "./data-routes.js";
export { dataPath, dataRoot, resolveDataPath } from "./data-root.js";
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
