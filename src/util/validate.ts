/**
 * The option checks every options object uses, so they all fail the same way:
 * a {@link ValidationError} whose message names the field and quotes the bad
 * value ("options.requests must be a positive integer, got 0"). Each check
 * returns the value it accepted, typed, so a resolver reads
 * `const requests = positiveInteger(options.requests ?? 200, "options.requests")`.
 * Durations in seconds go through `durationToMs` (util/timers.ts), which also
 * enforces the 365-day ceiling.
 */
import { ValidationError } from "../errors.js";

/**
 * Throws a {@link ValidationError} with `message` unless `condition` holds:
 * for rules a single-field check cannot express (two fields that exclude each other).
 * @example check(!(a && b), "options.a and options.b cannot both be set");
 */
export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new ValidationError(message);
}

/**
 * An integer from `min` to `max` (both included).
 * @throws {ValidationError} "`field` must be an integer from `min` to `max`, got `value`".
 * @example integerInRange(port, "options.masterPort", 0, 65535)
 */
export function integerInRange(value: unknown, field: string, min: number, max: number): number {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) fail(field, `an integer from ${min} to ${max}`, value);
  return value as number;
}

/**
 * An integer of at least 1 (and at most `max`, when given).
 * @throws {ValidationError} "`field` must be a positive integer[ up to `max`], got `value`".
 * @example positiveInteger(options.concurrency ?? 1, "options.concurrency")
 */
export function positiveInteger(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > max) fail(field, `a positive integer${upTo(max)}`, value);
  return value as number;
}

/**
 * An integer of at least 0.
 * @throws {ValidationError} "`field` must be a non-negative integer, got `value`".
 */
export function nonNegativeInteger(value: unknown, field: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) fail(field, "a non-negative integer", value);
  return value as number;
}

/**
 * An integer of at least `min`, described by `what` ("an integer number of MiB").
 * @throws {ValidationError} "`field` must be `what` of at least `min`, got `value`".
 * @example integerAtLeast(options.maxMessageBytes, "options.maxMessageBytes", 1024)
 */
export function integerAtLeast(value: unknown, field: string, min: number, what = "an integer"): number {
  if (!Number.isSafeInteger(value) || (value as number) < min) fail(field, `${what} of at least ${min}`, value);
  return value as number;
}

/**
 * A finite number of at least 0, described by `what` ("a non-negative number of seconds").
 * @throws {ValidationError} "`field` must be `what`, got `value`".
 */
export function nonNegativeNumber(value: unknown, field: string, what = "a non-negative number"): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) fail(field, what, value);
  return value;
}

/**
 * One of `choices` (compared with `===`).
 * @throws {ValidationError} "`field` must be "a", "b" or "c", got `value`".
 * @example oneOf(options.transport ?? "auto", "options.transport", ["auto", "ipc", "tcp"] as const)
 */
export function oneOf<const T>(value: unknown, field: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) fail(field, listOf(choices.map((choice) => JSON.stringify(choice))), value);
  return value as T;
}

/**
 * A boolean.
 * @throws {ValidationError} "`field` must be a boolean, got `value`".
 */
export function boolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") fail(field, "a boolean", value);
  return value;
}

/**
 * A string of at least one character, described by `what` ("a host address").
 * @throws {ValidationError} "`field` must be `what`, got `value`".
 */
export function nonEmptyString(value: unknown, field: string, what = "a non-empty string"): string {
  if (typeof value !== "string" || value.length === 0) fail(field, what, value);
  return value;
}

/**
 * An `AbortSignal`.
 * @throws {ValidationError} "`field` must be an AbortSignal, got `value`".
 */
export function abortSignal(value: unknown, field: string): AbortSignal {
  if (!(value instanceof AbortSignal)) fail(field, "an AbortSignal", value);
  return value;
}

/** "a", "b" or "c". */
function listOf(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "nothing") : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}

function upTo(max: number): string {
  return max === Number.MAX_SAFE_INTEGER ? "" : ` up to ${max}`;
}

function fail(field: string, what: string, value: unknown): never {
  throw new ValidationError(`${field} must be ${what}, got ${describe(value)}`);
}

/** How a message quotes the bad value: strings quoted (so "" and " 1" show), objects by kind, never their contents. */
function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object" && value !== null) return "an object";
  return String(value);
}
