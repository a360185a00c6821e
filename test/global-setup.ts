/**
 * Before any test: rebuild `dist/` when a source file is newer than what was
 * compiled from it. Rank processes, function workers and the `multirank`
 * package as a user imports it all load `dist/`, so a test run straight from
 * vitest (not `npm test`, which builds first) would otherwise exercise
 * yesterday's code.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** The first source whose compiled file is missing or older, if any. */
function staleSource(): string | undefined {
  const src = join(ROOT, "src");
  return sources(src).find((file) => {
    const compiled = join(ROOT, "dist", relative(src, file)).replace(/\.ts$/, ".js");
    return !existsSync(compiled) || statSync(compiled).mtimeMs < statSync(file).mtimeMs;
  });
}

/** The rank bundle (scripts/bundle-rank.mjs), when missing or older than a source. */
function staleBundle(): boolean {
  const bundle = join(ROOT, "dist", "rank", "rank-main.js");
  if (!existsSync(bundle)) return true;
  const built = statSync(bundle).mtimeMs;
  return sources(join(ROOT, "src")).some((file) => statSync(file).mtimeMs > built);
}

export default function setup(): void {
  const stale = staleSource();
  if (stale !== undefined) {
    process.stderr.write(`test setup: ${relative(ROOT, stale)} is newer than dist/; rebuilding (npm run build:ts)\n`);
    execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  }
  // Ranks run the bundle: it must be as new as the sources too.
  if (stale !== undefined || staleBundle()) execFileSync(process.execPath, [join(ROOT, "scripts", "bundle-rank.mjs")], { cwd: ROOT, stdio: "inherit" });
}
