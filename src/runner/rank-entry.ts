import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The script a rank process runs, and the node flags it needs. */
export interface RankEntry {
  script: string;
  /** The script of a pooled rank process (see `RankPool`), from the same place as `script`. */
  poolScript: string;
  execArgv: string[];
}

let cached: RankEntry | undefined;

/**
 * Finds the rank entry point. The compiled `rank-main.js` beside this module
 * (an installed package, or `dist/`); when running from TypeScript sources
 * (tests, `tsx`), the built copy in `dist/` if present, else the `.ts` source
 * through tsx's loader, which costs start-up time but needs no build.
 */
export function rankEntry(): RankEntry {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, "../worker"), resolve(here, "../../dist/worker")];
  const compiled = candidates.find((dir) => existsSync(resolve(dir, "rank-main.js")) && existsSync(resolve(dir, "rank-pool-main.js")));
  cached = compiled
    ? { script: resolve(compiled, "rank-main.js"), poolScript: resolve(compiled, "rank-pool-main.js"), execArgv: [] }
    : { script: resolve(here, "../worker/rank-main.ts"), poolScript: resolve(here, "../worker/rank-pool-main.ts"), execArgv: ["--import", "tsx"] };
  return cached;
}
