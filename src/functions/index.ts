/** Remote functions: `remote()`, hosts, environments, bundles, data. */
export { cached } from "./cached.js";
export type { CallOptions, FunctionDefinition, Host } from "./host.js";
export { LocalHost, type LocalHostOptions } from "./local-host.js";
export { resolveRemoteOptions, type RemoteOptions, type ResolvedRemoteOptions, type Serializer } from "./options.js";
export { isolated, isRemote, local, remote, type FunctionCall, type FunctionCallStatus, type JobOutput, type MapOptions, type RemoteCallOptions, type RemoteFunction } from "./remote.js";
