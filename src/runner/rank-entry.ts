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

/** The export condition ranks start with: `multirank/worker` then resolves to the rank bundle (see scripts/bundle-rank.mjs). */
export const RANK_CONDITION = "multirank-rank";

/**
 * Finds the rank entry point: the bundled runtime in `dist/rank/` (one file
 * and a few chunks instead of ~120 modules: a rank starts about 50 ms
 * sooner), else the compiled `rank-main.js` in `dist/worker/` (an install
 * whose bundle step did not run), looked for beside this module (an installed
 * package, or `dist/`) and, when running from TypeScript sources (tests,
 * `tsx`), in `dist/`; else the `.ts` source through tsx's loader, which costs
 * start-up time but needs no build.
 */
export function rankEntry(): RankEntry {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  const hasEntries = (dir: string): boolean => existsSync(resolve(dir, "rank-main.js")) && existsSync(resolve(dir, "rank-pool-main.js"));
  const bundled = [resolve(here, "../rank"), resolve(here, "../../dist/rank")].find(hasEntries);
  const compiled = bundled ?? [resolve(here, "../worker"), resolve(here, "../../dist/worker")].find(hasEntries);
  cached = compiled
    ? { script: resolve(compiled, "rank-main.js"), poolScript: resolve(compiled, "rank-pool-main.js"), execArgv: bundled ? [`--conditions=${RANK_CONDITION}`] : [] }
    : { script: resolve(here, "../worker/rank-main.ts"), poolScript: resolve(here, "../worker/rank-pool-main.ts"), execArgv: ["--import", "tsx"] };
  return cached;
}
