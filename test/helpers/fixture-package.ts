import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Packs `fn-fixture-isnum` (is-number's behaviour) with `npm pack` into
 * `work` and returns its `file:` spec: functions tests depend on it, so the
 * suite needs no registry.
 */
export function packIsNumberFixture(work: string): string {
  const pkg = join(work, "pkg");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "fn-fixture-isnum", version: "1.0.0", main: "index.js" }));
  writeFileSync(join(pkg, "index.js"), "module.exports = (x) => typeof x === 'number' || (typeof x === 'string' && x.trim() !== '' && !Number.isNaN(Number(x)));\n");
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", work], { cwd: pkg, encoding: "utf8" }).trim().split("\n").pop()!;
  return `file:${join(work, tgz)}`;
}

/** Points npm at a registry that refuses at once, so an accidental registry access fails fast instead of hanging. */
export function refuseRegistry(): void {
  process.env.npm_config_registry = "http://127.0.0.1:9/";
  process.env.npm_config_fetch_retries = "0";
}
