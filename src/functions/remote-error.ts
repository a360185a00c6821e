import { MemoryLimitError, RankError, RankExitError, RankGroupError, RemoteExecutionError } from "../errors.js";

/**
 * A rank's error as the caller of a remote function sees it: what the
 * function's code threw, or how its rank died, as `RemoteExecutionError`;
 * a `MemoryLimitError` as is, since the limit is the caller's own option and
 * `MULTIRANK_ERR_MEMORY_LIMIT` is what the caller needs to act on.
 */
export function toRemoteError(error: unknown, functionName: string, host: string): unknown {
  const first = error instanceof RankGroupError ? error.errors[0] : error;
  if (first instanceof MemoryLimitError) return first;
  if (first instanceof RankError) {
    const prefix = `rank ${first.rank} failed in ${first.phase}: ${first.remoteName}: `;
    const remoteMessage = first.message.startsWith(prefix) ? first.message.slice(prefix.length) : first.message;
    return new RemoteExecutionError({ functionName, host, remoteName: first.remoteName, remoteMessage, remoteStack: first.remoteStack, rank: first.rank, cause: error });
  }
  if (first instanceof RankExitError) {
    return new RemoteExecutionError({ functionName, host, remoteName: "RankExitError", remoteMessage: first.message, rank: first.rank, cause: error });
  }
  return error;
}

