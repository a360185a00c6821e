/**
 * What `remote()` registered in this process, by name. A rank that loads a
 * function's bundled module runs its top-level code, whose `remote()` calls
 * land here; the function worker then finds the function by its name.
 * Process-global (a `Symbol.for` slot), so two copies of the package agree.
 */

import type { ResolvedRemoteOptions } from "./options.js";

/** Environment variable set in the processes that run remote functions. */
export const REMOTE_ENV = "MULTIRANK_REMOTE";

/** One registered function: its code and its options as declared. */
export interface RegisteredFunction {
  readonly name: string;
  readonly fn: unknown;
  /** The module that defined it (an absolute path or file: URL). */
  readonly module: string;
  /** Its declared npm specs. */
  readonly dependencies: readonly string[];
  /** Its options as resolved, so a host can register it alongside a function that calls it. */
  readonly options?: ResolvedRemoteOptions;
}

const slot = Symbol.for("multirank.remote.registry");

function table(): Map<string, RegisteredFunction> {
  const holder = globalThis as { [slot]?: Map<string, RegisteredFunction> };
  return (holder[slot] ??= new Map());
}

/** Registers `entry`; returns the one already there under its name, if any. */
export function register(entry: RegisteredFunction): RegisteredFunction | undefined {
  const existing = table().get(entry.name);
  if (!existing) table().set(entry.name, entry);
  return existing;
}

/** Every function `module` registered. */
export function definedBy(module: string): RegisteredFunction[] {
  return [...table().values()].filter((entry) => entry.module === module);
}

/** Every registered function. */
export function registered(): RegisteredFunction[] {
  return [...table().values()];
}

/** The function registered as `name`. */
export function lookup(name: string): RegisteredFunction | undefined {
  return table().get(name);
}

/**
 * True inside the environment that runs a remote function (its module's
 * top-level code runs there too): module code can skip work meant only for
 * the caller.
 * @example if (!isRemote()) console.log(await sumNumbers([1, 2]));
 */
export function isRemote(): boolean {
  return process.env[REMOTE_ENV] === "1";
}
