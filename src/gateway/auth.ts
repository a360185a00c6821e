/**
 * API keys. fal sends `Authorization: Key <id>:<secret>`; Runpod sends
 * `Authorization: Bearer <key>` or the bare key. One list of keys serves both.
 * With no keys configured, authentication is off.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ConfigError } from "./errors.js";

/**
 * Checks a list of keys: each a non-empty string. The usual culprit is
 * `keys: [process.env.GATEWAY_KEY!]` with the variable unset, which would
 * otherwise crash in the hash with a TypeError naming no field.
 * @throws {ConfigError} naming the entry (`options.keys[0]`).
 */
export function checkKeys(keys: unknown, field: string): readonly string[] {
  if (!Array.isArray(keys)) throw new ConfigError(`${field} must be a list of strings; got ${typeof keys}`);
  keys.forEach((key: unknown, i) => {
    if (typeof key !== "string" || key.trim() === "") {
      const got = typeof key === "string" ? "an empty string" : String(key);
      throw new ConfigError(`${field}[${i}] must be a non-empty string; got ${got} (is the environment variable it reads set?)`);
    }
  });
  return keys as string[];
}

/** Checks `Authorization` headers against a fixed set of keys. */
export class KeyChecker {
  readonly #digests: Buffer[];
  readonly #open: boolean;

  /**
   * @param keys accepted keys (`id:secret` for fal; any string for Runpod); none turns the check off.
   * @param alsoAccepted keys accepted too when `keys` is not empty (a server's admin keys), never turning the check on.
   */
  constructor(keys: readonly string[], alsoAccepted: readonly string[] = []) {
    this.#open = keys.length === 0;
    this.#digests = [...keys, ...alsoAccepted].map(digest);
  }

  /** True when no keys are configured. */
  get open(): boolean {
    return this.#open;
  }

  /** True when the header carries an accepted key (or auth is off). */
  check(header: string | undefined): boolean {
    if (this.open) return true;
    const key = keyFromHeader(header);
    if (key === undefined) return false;
    const candidate = digest(key);
    // Compare against every key, in constant time each, so timing reveals nothing.
    let ok = false;
    for (const known of this.#digests) ok = timingSafeEqual(known, candidate) || ok;
    return ok;
  }
}

/** The key in `Key <k>`, `Bearer <k>` or a bare `<k>`; undefined when absent. */
export function keyFromHeader(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^\s*(?:(?:key|bearer)\s+)?(\S+)\s*$/i.exec(header);
  return match?.[1];
}

function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}
