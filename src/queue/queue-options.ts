/**
 * `createGateway({ queue })`: the shared queue's options, checked once.
 * Without them the gateway keeps its queue and results in memory.
 */
import { ValidationError } from "../errors.js";
import { unknownKey } from "../util/did-you-mean.js";
import { durationToMs } from "../util/timers.js";
import { integerInRange } from "../util/validate.js";

/** Options of the Redis queue several gateways share (`createGateway({ queue })`, `multirank serve --redis`). */
export interface QueueOptions {
  /** The Redis server, `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). */
  redis: string;
  /**
   * Prefix of every key the gateways write, so several fleets can share one
   * Redis. Gateways that share work must use the same one. @default "multirank"
   */
  prefix?: string;
  /**
   * Seconds after which a job whose gateway stopped (killed, frozen, cut off
   * from Redis) is taken to be lost and runs again on another gateway. A
   * running gateway renews its claim every `stalledAfter / 2` seconds.
   * Lower finds a dead gateway sooner; too low mistakes a busy one for a dead
   * one. @default 15
   */
  stalledAfter?: number;
  /**
   * How many times one submission may be run again after the gateway running
   * it was lost; the next loss fails it (`runner_crash`). @default 2
   */
  maxRecoveries?: number;
}

/** {@link QueueOptions} with every default applied. */
export interface ResolvedQueueOptions {
  url: string;
  prefix: string;
  stalledAfterMs: number;
  maxRecoveries: number;
}

const KEYS = ["redis", "prefix", "stalledAfter", "maxRecoveries"] as const;

/** Checks `options.queue`. @throws {ValidationError} naming the field. */
export function resolveQueueOptions(options: QueueOptions): ResolvedQueueOptions {
  if (typeof options !== "object" || options === null) throw new ValidationError("options.queue must be an object like { redis: \"redis://127.0.0.1:6379\" }");
  const unknown = unknownKey(options, KEYS);
  if (unknown) throw new ValidationError(`options.queue has no field ${unknown.described}`);
  const url = options.redis;
  if (typeof url !== "string" || !/^rediss?:\/\/[^/]/.test(url)) {
    throw new ValidationError(`options.queue.redis must be a redis:// or rediss:// URL, got ${typeof url === "string" ? JSON.stringify(redactUrl(url)) : String(url)}`);
  }
  try {
    new URL(url);
  } catch {
    throw new ValidationError(`options.queue.redis is not a valid URL: ${JSON.stringify(redactUrl(url))}`);
  }
  const prefix = options.prefix ?? "multirank";
  if (typeof prefix !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) {
    throw new ValidationError(`options.queue.prefix must be 1 to 64 letters, digits, "_", "." or "-", got ${JSON.stringify(prefix)}`);
  }
  const stalledAfterMs = durationToMs(options.stalledAfter ?? 15, "options.queue.stalledAfter");
  if (stalledAfterMs < 1000) throw new ValidationError(`options.queue.stalledAfter must be at least 1 second, got ${String(options.stalledAfter)}`);
  const maxRecoveries = integerInRange(options.maxRecoveries ?? 2, "options.queue.maxRecoveries", 0, 1000);
  return { url, prefix, stalledAfterMs, maxRecoveries };
}

/** The URL with any password replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*)@/, (_match, scheme: string, auth: string) => {
    const colon = auth.indexOf(":");
    return `${scheme}${colon < 0 ? "***" : `${auth.slice(0, colon)}:***`}@`;
  });
}
