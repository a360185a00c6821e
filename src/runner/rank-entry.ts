import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The script a rank process runs, and the node flags it needs. */
export interface RankEntry {
  script: string;
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
  const candidates = [resolve(here, "../worker/rank-main.js"), resolve(here, "../../dist/worker/rank-main.js")];
  const compiled = candidates.find((path) => existsSync(path));
  cached = compiled ? { script: compiled, execArgv: [] } : { script: resolve(here, "../worker/rank-main.ts"), execArgv: ["--import", "tsx"] };
  return cached;
}
