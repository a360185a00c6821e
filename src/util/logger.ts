import { pino, type Logger } from "pino";

export type { Logger } from "pino";

/**
 * The logger used when the caller injects none: pino to stderr, at the level in
 * `MULTIRANK_LOG_LEVEL` (default `info`). Stderr keeps stdout free for programs
 * that print results.
 */
export function defaultLogger(name = "multirank"): Logger {
  return pino({ name, level: process.env.MULTIRANK_LOG_LEVEL ?? "info" }, pino.destination({ fd: 2, sync: false }));
}
