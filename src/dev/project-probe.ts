/** Reads a project's config in a child process, so each read sees every edit. */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ValidationError } from "../errors.js";
import type { AppOptions } from "../gateway/app.js";
import type { ConfigFunction } from "../deploy/project-config.js";

/** A project's config as JSON: apps with absolute worker paths, functions by module and options. */
export interface ProbedProject {
  name: string;
  dir: string;
  apps: AppOptions[];
  functions: ConfigFunction[];
}

/** Loads the config at `configPath` in a fresh process. @throws {ValidationError} with the config's own error message. */
export function probeProject(configPath: string): Promise<ProbedProject> {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = [resolve(here, "probe-config.js"), resolve(here, "../../dist/dev/probe-config.js")].find((path) => existsSync(path));
  const args = compiled ? [compiled, configPath] : ["--import", "tsx", resolve(here, "probe-config.ts"), configPath];
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent" } }, (error, stdout, stderr) => {
      if (error) {
        const reason = stderr.split("\n").find((line) => /Error|error/.test(line)) ?? stderr.trim().split("\n").pop() ?? error.message;
        reject(new ValidationError(`config ${configPath} did not load: ${reason.trim()}`));
        return;
      }
      try {
        resolvePromise(JSON.parse(stdout) as ProbedProject);
      } catch (parseError) {
        reject(new ValidationError(`config ${configPath} printed something that is not JSON: ${(parseError as Error).message}`));
      }
    });
  });
}
