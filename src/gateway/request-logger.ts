/**
 * fastify's per-request logger, made only when a line is written. fastify
 * gives every request `logger.child({ reqId })`; on the gateway's redacting
 * logger that child costs about as much as the rest of routing (pino turns
 * the bindings into text through the redaction), and at the usual levels no
 * line of a successful request is ever written. {@link lazyChildLoggerFactory}
 * hands fastify a stand-in that checks the level first and makes the real
 * child on the first line that passes it, so every line written still carries
 * the same `reqId`.
 */
import type { FastifyBaseLogger } from "fastify";
import type { Bindings, ChildLoggerOptions, Level, LevelWithSilentOrString, Logger } from "pino";

/** A request's logger that becomes `parent.child(bindings)` on its first line that `parent`'s level lets through. */
class LazyRequestLogger implements FastifyBaseLogger {
  readonly #parent: Logger;
  readonly #bindings: Bindings;
  #child: FastifyBaseLogger | undefined;

  constructor(parent: Logger, bindings: Bindings) {
    this.#parent = parent;
    this.#bindings = bindings;
  }

  #real(): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings) as FastifyBaseLogger);
  }

  /** Writes through the real child, or not at all while the level turns the line away. */
  #write(level: Level, args: unknown[]): void {
    // Until the child exists its level is the parent's (a level set on this logger makes the child first).
    if (this.#child === undefined && !this.#parent.isLevelEnabled(level)) return;
    (this.#real()[level] as (...rest: unknown[]) => void)(...args);
  }

  get level(): LevelWithSilentOrString {
    return this.#child?.level ?? this.#parent.level;
  }
  set level(level: LevelWithSilentOrString) {
    this.#real().level = level;
  }

  fatal(...args: unknown[]): void {
    this.#write("fatal", args);
  }
  error(...args: unknown[]): void {
    this.#write("error", args);
  }
  warn(...args: unknown[]): void {
    this.#write("warn", args);
  }
  info(...args: unknown[]): void {
    this.#write("info", args);
  }
  debug(...args: unknown[]): void {
    this.#write("debug", args);
  }
  trace(...args: unknown[]): void {
    this.#write("trace", args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
}

/**
 * A fastify `childLoggerFactory` whose request loggers are made on their
 * first written line. A route with its own level or serializers gets the real
 * child at once, as does a logger that is not pino's (no `isLevelEnabled`).
 */
export function lazyChildLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  const parent = logger as unknown as Logger;
  if (options.level !== undefined || options.serializers !== undefined || typeof parent.isLevelEnabled !== "function") return logger.child(bindings, options);
  return new LazyRequestLogger(parent, bindings);
}
