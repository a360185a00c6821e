import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Where multirank keeps what it builds once and reuses (compiled workers,
 * function environments, engines, generated models): `MULTIRANK_CACHE_DIR`,
 * else `~/.cache/multirank`.
 */
export function multirankCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MULTIRANK_CACHE_DIR || join(homedir(), ".cache", "multirank");
}
