/**
 * Running npm for an environment build: which npm, with what environment,
 * keeping the tail of its output with credentials removed, killed with its
 * whole process group on abort. Never through a shell.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { AbortError, ValidationError } from "../errors.js";

/** How many lines of npm's output an error carries. */
export const OUTPUT_TAIL_LINES = 40;

/**
 * `npmCommand` and `npmEnv` with their defaults, validated.
 * @throws ValidationError naming the field.
 */
export function resolveNpmCommandOptions(options: NpmCommandOptions): { npmCommand: readonly string[]; npmEnv: Readonly<Record<string, string>> } {
  const npmCommand = options.npmCommand ?? defaultNpmCommand();
  if (!Array.isArray(npmCommand) || npmCommand.length === 0 || !npmCommand.every((part) => typeof part === "string" && part.length > 0)) {
    throw new ValidationError("options.npmCommand must be a non-empty array of non-empty strings");
  }
  const npmEnv = options.npmEnv ?? {};
  if (typeof npmEnv !== "object" || npmEnv === null || !Object.values(npmEnv).every((v) => typeof v === "string")) throw new ValidationError("options.npmEnv must be an object of string values");
  return { npmCommand, npmEnv };
}

/** How npm is run, for everything here that installs packages. */
export interface NpmCommandOptions {
  /** The command that runs npm, before its arguments. @default the npm that ships with the running node, else `npm` on PATH */
  npmCommand?: readonly string[];
  /** Extra environment variables for npm (`npm_config_registry`, `npm_config_cache`, `npm_config_fetch_retries`, ...). @default {} */
  npmEnv?: Readonly<Record<string, string>>;
}

/** What a finished npm run reports. */
export interface NpmResult {
  /** The exit code, or `null` when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last {@link OUTPUT_TAIL_LINES} lines of stdout and stderr together, credentials removed. */
  tail: string;
  /** More of the output (the last 200 lines), for finding which spec failed. */
  text: string;
}

/**
 * The command that runs the npm shipped with the running node:
 * `[process.execPath, ".../lib/node_modules/npm/bin/npm-cli.js"]` when that
 * file exists (so npm's version follows node's, whatever PATH says), else
 * `["npm"]` from PATH.
 */
export function defaultNpmCommand(): readonly string[] {
  const cli = path.join(path.dirname(process.execPath), "../lib/node_modules/npm/bin/npm-cli.js");
  return existsSync(cli) ? [process.execPath, cli] : ["npm"];
}

// Variables `npm run` exports to its children that would point a nested npm at
// the caller's project (its prefix, its package) or make it act globally.
const SCRUBBED = /^(?:npm_config_(?:local_prefix|prefix|global|global_prefix|dry_run|package_lock|package_lock_only|save|workspaces?|include_workspace_root|location)|npm_package_.*|npm_lifecycle_.*|INIT_CWD)$/i;

/**
 * The environment npm runs with: this process's, without what ties it to the
 * caller's project, with `extra` on top.
 */
export function npmEnvironment(extra: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!SCRUBBED.test(name)) env[name] = value;
  // Nothing an install prints should be a nag to upgrade npm.
  env.npm_config_update_notifier = "false";
  return Object.assign(env, extra);
}

/**
 * Runs `command... args` in `cwd` and resolves when it exits, with its exit
 * status and output tail (it never rejects for a non-zero exit). On `signal`
 * it kills npm's whole process group (install scripts included), waits for
 * it to exit, and rejects with an {@link AbortError}. `onLine`, when given,
 * sees each complete line of output as it comes (credentials removed), for
 * progress.
 */
export function runNpm(command: readonly string[], args: readonly string[], cwd: string, env: NodeJS.ProcessEnv, signal?: AbortSignal, onLine?: (line: string) => void): Promise<NpmResult> {
  return new Promise<NpmResult>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError("the dependency install was aborted", { cause: signal.reason }));
      return;
    }
    // detached: npm leads its own process group, so an abort can end it and every script it started with one kill.
    const child = spawn(command[0]!, [...command.slice(1), ...args], { cwd, env, shell: false, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const tail = new TailBuffer(200, onLine);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => tail.push(chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => tail.push(chunk));
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      killGroup(child.pid);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    child.once("error", (error) => {
      signal?.removeEventListener("abort", onAbort);
      reject(error);
    });
    child.once("close", (code, exitSignal) => {
      signal?.removeEventListener("abort", onAbort);
      // Scripts npm started may outlive it; the group kill reaches them too.
      if (aborted) {
        killGroup(child.pid);
        reject(new AbortError("the dependency install was aborted", { cause: signal?.reason }));
      } else resolve({ code, signal: exitSignal, tail: tail.lines(OUTPUT_TAIL_LINES), text: tail.lines(200) });
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/**
 * Runs `npm config get registry` once, without network: npm only reads its
 * config files and environment. `undefined` when npm cannot be run.
 */
export function npmConfigRegistry(command: readonly string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command[0]!, [...command.slice(1), "config", "get", "registry"], { env: npmEnvironment({}), timeout: 30_000, shell: false }, (error, stdout) => {
      const value = String(stdout).trim();
      resolve(error || !/^https?:\/\//i.test(value) ? undefined : value);
    });
  });
}

/** Removes credentials from text npm printed: `//user:pass@` in URLs, `_authToken=...`, `_auth=...`, `_password=...`, bearer tokens. */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\/\/)[^/\s:@]+:[^/\s@]*@/g, "$1***:***@")
    .replace(/((?:_authToken|_auth|_password|npm_config__auth\w*)\s*[=:]\s*)["']?[^\s"']+/gi, "$1***")
    .replace(/(authorization\s*[:=]\s*(?:bearer|basic)\s+)\S+/gi, "$1***")
    .replace(/\bnpm_[A-Za-z0-9]{36}\b/g, "npm_***");
}

/**
 * Which of `names` npm's output says failed: a 404 (`'name@range' is not in
 * this registry`, `404 Not Found - GET .../name`), no matching version
 * (`No matching version found for name@range`), a fetch that failed
 * (`request to <registry>/name failed`), or a missing `file:` tarball
 * (`ENOENT ... <path>`, matched against `paths`). Best effort: empty when
 * nothing matches, and the caller then names every spec.
 */
export function failedPackages(output: string, names: ReadonlyMap<string, string>, paths: ReadonlyMap<string, string>): string[] {
  const found = new Set<string>();
  const mention = (candidate: string): void => {
    const name = safeDecode(candidate);
    // "name@range" → name (a scope's "@" is the first character).
    const at = name.indexOf("@", name.startsWith("@") ? 1 : 0);
    const bare = at === -1 ? name : name.slice(0, at);
    const spec = names.get(bare);
    if (spec !== undefined) found.add(spec);
  };
  for (const m of output.matchAll(/'([^'\s]+)' is not in this registry/g)) mention(m[1]!);
  for (const m of output.matchAll(/No matching version found for (\S+?)\.?(?:\s|$)/g)) mention(m[1]!);
  for (const m of output.matchAll(/(?:404 Not Found - GET|request to) (\S+?)(?: failed|\s|$)/g)) {
    const url = m[1]!.replace(/\/-\/.*$/, "");
    const parts = url.split("/").filter(Boolean);
    const last = parts.at(-1) ?? "";
    // A scoped name travels as @scope%2fname, or as two path segments.
    mention(last.includes("%2f") || last.includes("%2F") ? last : parts.at(-2)?.startsWith("@") ? `${parts.at(-2)}/${last}` : last);
  }
  for (const [file, spec] of paths) if (output.includes(`ENOENT`) && output.includes(file)) found.add(spec);
  return [...found];
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The last lines of a stream of text chunks, bounded in memory. */
class TailBuffer {
  readonly #max: number;
  readonly #onLine: ((line: string) => void) | undefined;
  #lines: string[] = [];
  #partial = "";

  constructor(maxLines: number, onLine?: (line: string) => void) {
    this.#max = maxLines;
    this.#onLine = onLine;
  }

  push(chunk: string): void {
    const pieces = (this.#partial + chunk).split(/\r?\n/);
    this.#partial = pieces.pop() ?? "";
    // A line without end (a progress bar) is cut so one chunk cannot grow without bound.
    if (this.#partial.length > 8192) this.#partial = this.#partial.slice(-8192);
    this.#lines.push(...pieces);
    if (this.#onLine) for (const line of pieces) if (line.trim() !== "") this.#onLine(redactSecrets(line));
    if (this.#lines.length > this.#max) this.#lines.splice(0, this.#lines.length - this.#max);
  }

  lines(count: number): string {
    const all = this.#partial ? [...this.#lines, this.#partial] : this.#lines;
    return redactSecrets(all.filter((l) => l.trim() !== "").slice(-count).join("\n"));
  }
}
