/**
 * The Redis connections of one gateway, and the checks made before it
 * serves: Redis answers, and will not evict keys (BullMQ loses jobs on a
 * Redis that evicts). Producers (submissions, reads) fail fast while Redis is
 * away, or after a bounded wait when it stops answering on an open connection
 * (frozen, or cut off by a network that drops packets), so a request gets a
 * 503 instead of hanging; the connections BullMQ's
 * workers block on wait for Redis to return (`maxRetriesPerRequest: null`,
 * as BullMQ requires).
 */
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { ConfigError, QueueUnavailableError } from "../gateway/errors.js";
import { redactUrl } from "./queue-options.js";

/** How long a connection at start may take before the gateway gives up. */
const CONNECT_TIMEOUT_MS = 5000;
/** How long a reconnecting client waits between tries, at most. */
const MAX_RECONNECT_DELAY_MS = 2000;
/**
 * How long a request's command may wait for Redis's answer. A Redis that
 * stops answering without closing the connection (frozen, swapping, cut off
 * by a network that drops packets) would otherwise hang every request.
 */
const COMMAND_TIMEOUT_MS = 5000;
/** How often the gateway checks that Redis still answers, so `/healthz` notices a frozen Redis without waiting for a request. */
const PROBE_MS = 2000;

/** What `/healthz` says about the queue. */
export interface QueueHealth {
  backend: "redis";
  ok: boolean;
  /** Why not, when not ok. */
  reason?: string;
}

/** The gateway's connections to one Redis. */
export class RedisConnections {
  readonly url: string;
  /** Commands of requests: fails at once while Redis is away. */
  readonly commands: Redis;
  /** Pub/sub: the events gateways send each other. */
  readonly subscriber: Redis;
  /** What BullMQ's workers and the job writers use: waits for Redis to come back. */
  readonly blocking: Redis;
  readonly #log: Logger;
  #lastError: string | undefined;
  #ready = false;
  /** The BullMQ workers' connections: BullMQ leaves a connection it was given open, and an open one keeps the process alive. */
  readonly #duplicates = new Set<Redis>();
  /** Set once the start checks passed: later `ready` events are reconnections. */
  #opened = false;
  #probe: NodeJS.Timeout | undefined;
  #probing = false;

  private constructor(url: string, logger: Logger) {
    this.url = url;
    this.#log = logger.child({ component: "redis", redis: redactUrl(url) });
    const retryStrategy = (times: number): number => Math.min(50 * times, MAX_RECONNECT_DELAY_MS);
    const common: RedisOptions = { lazyConnect: true, connectTimeout: CONNECT_TIMEOUT_MS, retryStrategy };
    this.commands = new Redis(url, { ...common, maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: COMMAND_TIMEOUT_MS, connectionName: "multirank-gateway" });
    this.subscriber = new Redis(url, { ...common, maxRetriesPerRequest: null, connectionName: "multirank-events" });
    this.blocking = new Redis(url, { ...common, maxRetriesPerRequest: null, connectionName: "multirank-writer" });
    for (const client of [this.commands, this.subscriber, this.blocking]) client.on("error", (error: Error) => this.#lost(error));
    this.commands.on("ready", () => {
      if (!this.#ready && this.#opened) this.#log.info("Redis is reachable again");
      this.#ready = true;
      this.#lastError = undefined;
    });
    this.commands.on("close", () => {
      if (this.#ready) this.#log.warn("lost the connection to Redis; new requests get 503 until it is back");
      this.#ready = false;
    });
  }

  /**
   * Connects, and checks that Redis keeps every key (`maxmemory-policy noeviction`).
   * @throws {QueueUnavailableError} naming the URL (password hidden) when Redis does not answer;
   *   {@link ConfigError} when it may evict keys.
   */
  static async open(url: string, logger: Logger): Promise<RedisConnections> {
    const connections = new RedisConnections(url, logger);
    let timer: NodeJS.Timeout | undefined;
    // A Redis that accepts the connection but never answers (frozen) must not hang the start either.
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    });
    try {
      await Promise.race([Promise.all([connections.commands.connect(), connections.subscriber.connect(), connections.blocking.connect()]), late]);
    } catch (error) {
      connections.disconnect();
      // ioredis rejects with "Connection is closed."; the error event before it says why (ECONNREFUSED, a wrong password...).
      const reason = connections.#lastError ?? (error as Error).message;
      throw new QueueUnavailableError(`cannot reach Redis at ${redactUrl(url)}: ${reason}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
    try {
      await checkEvictionPolicy(connections.commands, url);
    } catch (error) {
      connections.disconnect();
      throw error;
    }
    connections.#ready = true;
    connections.#opened = true;
    connections.#probe = setInterval(() => connections.#check(), PROBE_MS).unref();
    return connections;
  }

  /** True while requests can reach Redis. */
  get ready(): boolean {
    return this.#ready && this.commands.status === "ready";
  }

  health(): QueueHealth {
    if (this.ready) return { backend: "redis", ok: true };
    return { backend: "redis", ok: false, reason: `Redis at ${redactUrl(this.url)} is unreachable${this.#lastError ? `: ${this.#lastError}` : ""}; new requests get 503 until it is back` };
  }

  /** @throws {QueueUnavailableError} unless Redis answers now. */
  assertReady(): void {
    if (!this.ready) throw this.unavailable();
  }

  /** The error a request gets while Redis is away. */
  unavailable(cause?: unknown): QueueUnavailableError {
    this.#noteTimeout(cause);
    const detail = this.#lastError ?? (cause instanceof Error ? cause.message : undefined);
    return new QueueUnavailableError(`the queue's Redis (${redactUrl(this.url)}) is unreachable${detail ? `: ${detail}` : ""}; retry later`, cause === undefined ? undefined : { cause });
  }

  /** A new connection for a BullMQ worker (each blocks on its own). */
  duplicateBlocking(): Redis {
    const client = this.blocking.duplicate({ lazyConnect: false, maxRetriesPerRequest: null });
    client.on("error", (error: Error) => this.#lost(error));
    this.#duplicates.add(client);
    return client;
  }

  /** Closes a connection {@link duplicateBlocking} made (its app stopped being served). */
  async release(client: Redis): Promise<void> {
    if (!this.#duplicates.delete(client)) return;
    await client.quit().catch(() => client.disconnect());
  }

  /** Drops every connection at once; what waits on one (a queued write, BullMQ's fetch) is rejected. */
  disconnect(): void {
    clearInterval(this.#probe);
    this.#ready = false;
    for (const client of this.#all()) client.disconnect();
  }

  /** Closes every connection after its pending replies; one not connected now is dropped (a QUIT would wait for Redis). */
  async quit(): Promise<void> {
    clearInterval(this.#probe);
    this.#ready = false;
    await Promise.all(this.#all().map(async (client) => (client.status === "ready" ? client.quit().catch(() => client.disconnect()) : client.disconnect())));
  }

  #all(): Redis[] {
    return [this.commands, this.subscriber, this.blocking, ...this.#duplicates];
  }

  /** One PING while the connection looks fine: a timeout means Redis stopped answering. */
  #check(): void {
    if (this.#probing || this.commands.status !== "ready") return;
    this.#probing = true;
    this.commands
      .ping()
      .catch((error: unknown) => this.#noteTimeout(error))
      .finally(() => (this.#probing = false));
  }

  /**
   * A command timed out on a connection that is still open: Redis is there
   * but does not answer. Drop the connection and reconnect, so the gateway
   * counts Redis as away (503s at once, `/healthz` says why) until it answers
   * again, instead of making each request wait out its own timeout.
   */
  #noteTimeout(error: unknown): void {
    if (!(error instanceof Error) || !error.message.startsWith("Command timed out") || this.commands.status !== "ready") return;
    this.#lost(new Error(`no answer within ${COMMAND_TIMEOUT_MS} ms`));
    this.commands.disconnect(true);
  }

  #lost(error: Error): void {
    const message = error.message || String(error);
    if (message !== this.#lastError) this.#log.warn({ err: { message } }, "Redis connection error");
    this.#lastError = message;
  }
}

/**
 * BullMQ loses jobs on a Redis that evicts keys under memory pressure: refuse any policy but `noeviction`.
 * `INFO memory` is read rather than `CONFIG GET`, which managed Redis services often disable.
 */
async function checkEvictionPolicy(client: Redis, url: string): Promise<void> {
  const info = await client.info("memory");
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (policy !== undefined && policy !== "noeviction") {
    throw new ConfigError(
      `Redis at ${redactUrl(url)} has maxmemory-policy ${policy}: it may evict queued jobs and results under memory pressure. ` +
        "Set it to noeviction (redis-cli CONFIG SET maxmemory-policy noeviction, or maxmemory-policy noeviction in redis.conf).",
    );
  }
}
