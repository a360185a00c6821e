import { readFileSync } from "node:fs";

/**
 * This package's version, read once from its package.json (one folder up from
 * both `src/` and `dist/`). A client and a server compare it: functions
 * bundled against one version do not run on another.
 */
export const MULTIRANK_VERSION: string = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
