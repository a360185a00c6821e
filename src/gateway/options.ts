/**
 * What {@link createGateway} takes: its options, and the list of their names
 * (the config file loader checks keys against it). Apart from the gateway
 * itself, so the config loader and the rest of gateway/ need not import the
 * composition above them.
 */
import type { Logger } from "pino";
import type { FunctionServerOptions } from "../functions/function-server.js";
import type { QueueOptions } from "../queue/queue-options.js";
import type { AppDefinition, AppOptions, HostInfo, ResolvedApp } from "./app.js";
import type { JobQueue } from "./job-queue.js";
import type { RankPool, RankPoolOptions } from "../runner/rank-pool.js";
import type { RunnerFactory } from "./runner-pool.js";
import type { WebhookOptions } from "./webhook.js";

/**
 * Options of `createGateway`. Times are in seconds unless named `...Ms`,
 * and at most 365 days (`MAX_DURATION_SECONDS`).
 */
export interface GatewayOptions {
  /** The apps, from `defineApp` or as plain options. */
  apps: ReadonlyArray<AppDefinition | AppOptions>;
  /** Accepted API keys (`id:secret` for fal, any string for Runpod); none turns auth off. @default [] */
  keys?: readonly string[];
  /**
   * With `keys`, also ask for a key on the operations routes `/healthz`,
   * `/metrics` and `/apps` (public by default, so probes and scrapers need
   * none). The web page at `/` stays public; it sends the key it is given.
   * @default false
   */
  requireKeyForOps?: boolean;
  /** Largest request body, bytes; larger ones get 413. @default 33554432 (32 MiB) */
  bodyLimit?: number;
  /**
   * pino logger for request logs and everything else. API keys (in
   * `Authorization`-like headers and in `fal_key`-like query parameters) are
   * redacted from every line at every level.
   * @default pino to stderr at MULTIRANK_LOG_LEVEL or "info"
   */
  logger?: Logger;
  /** Folder relative worker paths resolve against. @default process.cwd() */
  baseDir?: string;
  /** Seconds to let queued and running requests finish on close before they are cancelled. @default 30 */
  shutdownGrace?: number;
  /** Seconds finished requests stay readable. @default 3600 */
  resultTtl?: number;
  /** Webhook retry policy. */
  webhooks?: WebhookOptions;
  /** Interval of `:` comments on status streams, ms. @default 15000 */
  statusKeepAliveMs?: number;
  /** Longest hold of Runpod `/stream`, ms. @default 10000 */
  streamHoldMs?: number;
  /**
   * Bytes of a streaming job's results held for its reader (an SSE client, a
   * Runpod `/stream` poller) before the gateway stops pulling from the runner;
   * the runner's own window (`streamHighWaterMark`, 4 MiB) then holds the rank.
   * @default 4194304 (4 MiB)
   */
  streamHighWaterMark?: number;
  /** Serve the web page at `/` (its JSON routes, `/page/info` and `/requests`, are served either way). @default true */
  page?: boolean;
  /** Export Node's default process metrics too. @default false */
  defaultMetrics?: boolean;
  /** Override host facts (GPU count, environment), for tests and dry runs. @default discovered */
  host?: Partial<Omit<HostInfo, "baseDir">>;
  /** Makes runners. @default `new DistributedRunner(options)` */
  createRunner?: RunnerFactory;
  /** Makes each app's queue. @default a {@link MemoryJobQueue} */
  createQueue?: (app: ResolvedApp) => JobQueue;
  /**
   * Keep the queue and the jobs' records in Redis (through BullMQ) instead of
   * memory: several gateways on one Redis share the work, and a restart loses
   * nothing. `multirank serve --redis URL` and `MULTIRANK_REDIS_URL` set it.
   * @default in memory
   */
  queue?: QueueOptions;
  /**
   * Serve remote functions too: clients register them (`server(url)` in
   * `remote()`), and each becomes an app, `fn/<name>`. Off unless given;
   * `multirank serve` turns it on.
   */
  functionServer?: FunctionServerOptions;
  /**
   * Keep this many rank processes started, with the rank runtime loaded, for
   * the runners this gateway spawns (see `RankPool`): a cold start (a first
   * request to an app scaled to zero) then takes them instead of spawning
   * ranks. One pool serves every app and machine type, since a pooled process
   * gets its device only once it is a rank. Each idle process costs memory
   * (about 60 MiB resident; see "Pre-started ranks" in the README).
   * `{ size: 0 }` or unset turns it off. A `RankPool` of your own is used as
   * it is, and left open when the gateway closes. @default unset (off)
   */
  rankPool?: Pick<RankPoolOptions, "size" | "nodeArgs"> | RankPool;
}

/** What `Gateway.update` did to one app or function. */
export interface UpdateChange {
  kind: "app" | "function";
  name: string;
  change: "added" | "updated" | "unchanged" | "removed";
}

// A record, not a list, so the compiler says when a new option is missing here.
const GATEWAY_OPTION_KEY_SET = {
  apps: true,
  keys: true,
  requireKeyForOps: true,
  bodyLimit: true,
  logger: true,
  baseDir: true,
  shutdownGrace: true,
  resultTtl: true,
  webhooks: true,
  statusKeepAliveMs: true,
  streamHoldMs: true,
  streamHighWaterMark: true,
  page: true,
  defaultMetrics: true,
  host: true,
  createRunner: true,
  createQueue: true,
  queue: true,
  functionServer: true,
  rankPool: true,
} satisfies Record<keyof GatewayOptions, true>;

/** The fields of {@link GatewayOptions}, for unknown-key checks. */
export const GATEWAY_OPTION_KEYS: readonly string[] = Object.freeze(Object.keys(GATEWAY_OPTION_KEY_SET));

