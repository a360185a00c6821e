import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * A project as `multirank init` would make one, in `dir`: `multirank` linked
 * to this repo, an app `d/echo` (workers/echo.ts) and a function `d-greet`
 * (functions/greet.ts) that depends on the `TEST_FN_DEP` tarball.
 */
export function makeFixtureProject(dir: string): void {
  mkdirSync(join(dir, "functions"), { recursive: true });
  mkdirSync(join(dir, "workers"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(ROOT, join(dir, "node_modules", "multirank"), "dir");
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "deploy-fixture", type: "module", private: true, dependencies: { multirank: "*" } }));
  writeFixtureWorker(dir, "echo");
  writeFixtureFunction(dir, "v1");
  writeFileSync(
    join(dir, "multirank.config.ts"),
    `import { defineApp, defineConfig } from "multirank";
import { greet } from "./functions/greet.js";
export default defineConfig({
  apps: [defineApp({ name: "d/echo", worker: "./workers/echo.ts", keepAlive: 60 })],
  functions: [greet],
});
`,
  );
}

/** (Re)writes the function; `version` shows in its answers. */
export function writeFixtureFunction(dir: string, version: string, body = ""): void {
  writeFileSync(
    join(dir, "functions", "greet.ts"),
    `import { remote } from "multirank";
export const greet = remote({ name: "d-greet", dependencies: [process.env.TEST_FN_DEP!], keepAlive: 60 }, async (input: { who: string }) => {
  const { default: isNumberish } = (await import("fn-fixture-isnum" as string)) as { default: (x: unknown) => boolean };
  return { text: "hello " + input.who, version: ${JSON.stringify(version)}, numberish: isNumberish(input.who), pid: process.pid };
});
${body}`,
  );
}

/** (Re)writes the app's worker; `mode` shows in its answers. */
export function writeFixtureWorker(dir: string, mode: string): void {
  writeFileSync(
    join(dir, "workers", "echo.ts"),
    `import { DistributedWorker } from "multirank";
export default class Echo extends DistributedWorker<{ text?: string }, { echo: unknown; pid: number; mode: string }> {
  override async call(input: { text?: string }) {
    return { echo: input.text ?? null, pid: process.pid, mode: ${JSON.stringify(mode)} };
  }
}
`,
  );
}
