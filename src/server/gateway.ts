/**
 * The gateway, put together: apps checked against this host, one dispatcher
 * (queue + runner pool) per app in the app table, the core the protocols
 * work through, and an HTTP server (http-server.ts) with the fal, Runpod and
 * operations routes (ops-routes.ts), plus functions and deployments when
 * asked. Runtime changes (`update`, `serveFunctions`) go through here too.
 */
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { cudaAvailability, listDevices } from "../devices/index.js";
import { StateError, ValidationError } from "../errors.js";
import { GATEWAY_OPTION_KEYS, type GatewayOptions, type UpdateChange } from "../gateway/options.js";
import { defaultLogger } from "../util/logger.js";
import { unknownKey } from "../util/did-you-mean.js";
import { durationToMs } from "../util/timers.js";
import { checkWorkerModule, defineApp, resolveApp, type AppDefinition, type AppOptions, type HostInfo, type ResolvedApp } from "../gateway/app.js";
import { checkKeys, KeyChecker } from "../gateway/auth.js";
import { AppTable } from "../gateway/app-table.js";
import { RankPool } from "../runner/rank-pool.js";
import { check, nonNegativeInteger } from "../util/validate.js";
import { join, resolve } from "node:path";
import { Deployments } from "../deploy/deployments.js";
import type { ConfigFunction } from "../deploy/project-config.js";
import { packageFunction } from "../functions/function-package.js";
import { stableJson, type ServedFunctions } from "../functions/served-functions.js";
import { bundleModule } from "../functions/bundle.js";
import { createHash } from "node:crypto";
import { registerDeployRoutes } from "../deploy/deploy-routes.js";
import { functionServerKeys, registerFunctionRoutes, type FunctionServerOptions } from "../functions/function-server.js";
import { GatewayCore } from "../gateway/core.js";
import { ConfigError } from "../gateway/errors.js";
import { GpuAllocator } from "../gateway/gpu-allocator.js";
import { DEFAULT_CHUNK_HIGH_WATER_MARK, type Job } from "../gateway/job.js";
import type { JobQueue } from "../gateway/job-queue.js";
import { JobStore } from "../gateway/job-store.js";
import type { GatewayMetrics } from "../gateway/metrics.js";
import { registerOpsRoutes } from "../gateway/ops-routes.js";
import { redactingLogger } from "../gateway/redact.js";
import type { RunnerFactory } from "../gateway/runner-pool.js";
import { WebhookSender, type WebhookOptions } from "../gateway/webhook.js";
import type { ProtocolCore } from "../gateway/core.js";
import { resolveQueueOptions, type ResolvedQueueOptions } from "../queue/queue-options.js";
import type { RedisJobQueue } from "../queue/redis-queue.js";

/** A running gateway. */
export interface Gateway {
  /** The fastify instance (for `inject` in tests, or more routes). */
  readonly server: FastifyInstance;
  /** The apps, as resolved for this host (registered functions included, as `fn/<name>`). */
  readonly apps: readonly ResolvedApp[];
  /** The metrics registry's owner. */
  readonly metrics: GatewayMetrics;
  /** Listens; resolves with the URL (`http://127.0.0.1:8000`). @default port 8000, host "127.0.0.1" */
  listen(options?: { port?: number; host?: string }): Promise<string>;
  /** Starts every app's `minRunners`; resolves when they are ready. */
  warm(): Promise<void>;
  /**
   * Serves remote functions (what `remote()` returned, as a project's config
   * lists them) as apps `fn/<name>`, like functions a client registers. Needs
   * `functionServer`; call it after `listen()`, so a function can call
   * another here.
   * @throws {StateError} without `functionServer`; the errors of registration (a bad dependency, a name clash).
   */
  serveFunctions(functions: readonly ConfigFunction[], options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Serves exactly these apps and functions from now on (what `multirank dev`
   * calls after an edit): an app or function whose code (its bundle) or
   * options changed drains and restarts; unchanged ones keep their warm
   * runners; ones no longer listed stop. Only what earlier `update` calls
   * added is replaced or removed: config and deployed apps are left alone.
   * @throws the errors of `resolveApp` and of registration; nothing changes then.
   */
  update(project: { apps: ReadonlyArray<AppDefinition | AppOptions>; functions?: readonly ConfigFunction[] }): Promise<UpdateChange[]>;
  /** Graceful: refuse new work, finish what is queued and running (up to `shutdownGrace`), stop runners, close the server. Idempotent. */
  close(): Promise<void>;
  /** `await using gateway = ...` closes it. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Builds a gateway: checks the apps against this host (machine types, GPUs,
 * secrets), makes a queue and pool per app, registers the routes.
 * @throws {ValidationError} for a malformed app; {@link ConfigError} for an unknown option (with the closest
 *   known name), a key that is not a string (an unset environment variable), a worker module that is missing
 *   or has no default export, or an app that cannot run on this host.
 * @example
 * const gateway = await createGateway({ apps: [defineApp({ name: "acme/echo", worker: "./workers/echo.ts" })] });
 * console.log(await gateway.listen({ port: 8000 }));
 */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  if (!options || !Array.isArray(options.apps)) throw new ValidationError("options.apps must list the apps");
  if (options.apps.length === 0 && !options.functionServer) throw new ValidationError("options.apps must list at least one app (or give options.functionServer to serve registered functions)");
  const unknown = unknownKey(options, GATEWAY_OPTION_KEYS);
  if (unknown) throw new ConfigError(`options has no field ${unknown.described}`);
  const keys = checkKeys(options.keys ?? [], "options.keys");
  // Every component logs through this child, so no line can carry a key.
  const logger = redactingLogger(options.logger ?? defaultLogger());
  const log = logger.child({ component: "gateway" });
  const bodyLimit = options.bodyLimit ?? 32 * 1024 * 1024;
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1) throw new ValidationError("options.bodyLimit must be a positive integer of bytes");
  const graceMs = durationToMs(options.shutdownGrace ?? 30, "options.shutdownGrace", { allowZero: true });
  const resultTtl = options.resultTtl ?? 3600;
  durationToMs(resultTtl, "options.resultTtl");
  const queueOptions: ResolvedQueueOptions | undefined = options.queue === undefined ? undefined : resolveQueueOptions(options.queue);
  if (queueOptions && options.createQueue) throw new ValidationError("options.queue and options.createQueue cannot both be set: the Redis queue makes its own");
  const statusKeepAliveMs = durationToMs(options.statusKeepAliveMs ?? 15_000, "options.statusKeepAliveMs", { unit: "ms" });
  const streamHoldMs = durationToMs(options.streamHoldMs ?? 10_000, "options.streamHoldMs", { unit: "ms", allowZero: true });
  // Checked here, before anything starts; the pool itself starts with the runners' table below.
  if (options.rankPool !== undefined && !(options.rankPool instanceof RankPool)) {
    check(typeof options.rankPool === "object" && options.rankPool !== null, "options.rankPool must be an object such as { size: 2 }");
    nonNegativeInteger(options.rankPool.size ?? 2, "options.rankPool.size");
    const nodeArgs: unknown = options.rankPool.nodeArgs ?? [];
    check(Array.isArray(nodeArgs) && nodeArgs.every((a) => typeof a === "string"), "options.rankPool.nodeArgs must be a list of strings");
  }
  const host = hostInfo(options);
  const apps = options.apps.map((app) => resolveApp(isDefinition(app) ? app : defineApp(app), host));
  const names = new Set<string>();
  for (const app of apps) {
    if (names.has(app.name)) throw new ValidationError(`options.apps has two apps named ${app.name}`);
    names.add(app.name);
  }
  // A custom runner factory decides what `worker` means; the default one imports it as a module.
  if (!options.createRunner) await Promise.all(apps.map((app) => checkWorkerModule(app)));

  // fastify, prom-client and fast-json-stringify (the protocols' serializers) load here, not when the package is
  // imported: a rank imports it too, and serves no HTTP.
  const [{ createHttpServer }, { GatewayMetrics: Metrics }, { registerFalRoutes, falWebhookBody }, { registerRunpodRoutes, runpodStatusBody }] = await Promise.all([
    import("../gateway/http-server.js"),
    import("../gateway/metrics.js"),
    import("../gateway/protocols/fal.js"),
    import("../gateway/protocols/runpod.js"),
  ]);
  // Redis first: an unreachable or evicting Redis is refused before anything starts.
  // bullmq and ioredis load here, only for a gateway on Redis: a rank imports this package too.
  const redis = queueOptions ? await Promise.all([import("../queue/redis-connection.js"), import("../queue/redis-queue.js")]) : undefined;
  const connections = queueOptions && redis ? await redis[0].RedisConnections.open(queueOptions.url, logger) : undefined;
  const gpus = new GpuAllocator(host.gpuCount);
  const jobs = new JobStore(resultTtl);
  const webhooks = new WebhookSender(options.webhooks ?? {}, logger);
  const onFinished = (job: Job): void => {
    metrics.jobFinished(job);
    if (job.webhookUrl) void webhooks.send(job.webhookUrl, job.protocol === "runpod" ? runpodStatusBody(job) : falWebhookBody(job), job.id);
  };
  let redisQueue: RedisJobQueue | undefined;
  // A pool we make is ours to close; one we are given is its owner's.
  const ownPool = options.rankPool && !(options.rankPool instanceof RankPool) && options.rankPool.size !== 0 ? new RankPool({ ...options.rankPool, logger }) : undefined;
  const rankPool = options.rankPool instanceof RankPool ? options.rankPool : ownPool;
  const table = new AppTable({
    logger,
    gpus,
    onFinished,
    createRunner: options.createRunner,
    rankPool,
    createQueue: options.createQueue,
    handBackOnRetire: queueOptions !== undefined,
    onChange: () => void redisQueue?.syncApps().catch((error: unknown) => log.warn({ err: error }, "could not start taking an app's jobs from Redis")),
  });
  for (const app of apps) table.add(app);
  const metrics = new Metrics(() => table.dispatchers.values(), { defaultMetrics: options.defaultMetrics ?? false });
  const functionKeys = options.functionServer ? functionServerKeys(options.functionServer) : undefined;
  const keyChecker = new KeyChecker(keys, functionKeys?.callerKeys ?? []);
  const highWaterMark = chunkHighWaterMark(options.streamHighWaterMark);
  let core: ProtocolCore;
  if (connections && queueOptions && redis) {
    try {
      redisQueue = await redis[1].RedisJobQueue.start({ connections, options: queueOptions, table, keys: keyChecker, logger, resultTtlMs: resultTtl * 1000, chunkHighWaterMark: highWaterMark, onFinished });
    } catch (error) {
      connections.disconnect();
      await table.close(0);
      await ownPool?.close();
      throw error;
    }
    core = redisQueue;
  } else core = new GatewayCore(table.dispatchers, jobs, keyChecker, highWaterMark);
  const queueHealth = redisQueue ? (): ReturnType<RedisJobQueue["queueHealth"]> => redisQueue!.queueHealth() : undefined;

  const server = createHttpServer({ logger, bodyLimit, metrics });
  let closing: Promise<void> | undefined;
  registerOpsRoutes(server, { core, table, metrics, requireKeyForOps: options.requireKeyForOps === true, page: options.page ?? true, closing: () => closing !== undefined, ...(queueHealth ? { queue: queueHealth } : {}) });
  registerFalRoutes(server, core, { keepAliveMs: statusKeepAliveMs });
  registerRunpodRoutes(server, core, { maxStreamHoldMs: streamHoldMs });
  let deployments: Deployments | undefined;
  let functions: ServedFunctions | undefined;
  /** Apps (name -> digest) and functions that `update` added. */
  const managedApps = new Map<string, string>();
  const managedFunctions = new Set<string>();
  if (options.functionServer && functionKeys) {
    functions = registerFunctionRoutes(server, { ...options.functionServer, keys: functionKeys, core, table, gpuCount: host.gpuCount, logger, graceMs });
    deployments = new Deployments({
      dir: resolve(options.functionServer.deploymentsDir ?? join(functions.dataDir, ".multirank", "deployments")),
      functions,
      table,
      cacheDir: functions.cacheDir,
      gpuCount: host.gpuCount,
      graceMs,
      logger,
      ...(options.functionServer.maxArtifactBytes !== undefined ? { maxArtifactBytes: options.functionServer.maxArtifactBytes } : {}),
    });
    const served = functions;
    registerDeployRoutes(server, { deployments, core, authorizeAdmin: (request) => served.authorizeAdmin(request) });
  }
  await server.ready();

  const close = (): Promise<void> => {
    closing ??= (async () => {
      log.info({ graceMs }, "shutting down: no new requests; finishing the ones in flight");
      // On a shared queue, what is queued stays in Redis, and what could not finish in the grace goes back to it.
      if (redisQueue) await redisQueue.close(() => table.close(graceMs, { handBack: true }));
      else await table.close(graceMs);
      await ownPool?.close();
      await webhooks.close(5000);
      jobs.close();
      await server.close();
      log.info("gateway stopped");
    })();
    return closing;
  };

  return {
    server,
    get apps() {
      return table.apps;
    },
    metrics,
    async listen({ port = 8000, host: address = "127.0.0.1" } = {}) {
      await server.listen({ port, host: address });
      // Deployments come back once the server's own URL is known (a function that calls another calls it there).
      await deployments?.restore();
      const bound = server.server.address();
      const actualPort = typeof bound === "object" && bound ? bound.port : port;
      return `http://${address.includes(":") ? `[${address}]` : address}:${actualPort}`;
    },
    async warm() {
      await table.warm();
    },
    async update(project) {
      const changes: UpdateChange[] = [];
      const nextApps = new Map<string, { app: ResolvedApp; digest: string }>();
      for (const raw of project.apps) {
        const app = resolveApp(isDefinition(raw) ? raw : defineApp(raw), host);
        if (nextApps.has(app.name)) throw new ValidationError(`two apps are named ${app.name}`);
        if (!managedApps.has(app.name) && table.get(app.name)) throw new ValidationError(`app ${app.name} is already served here (from the config or a deployment)`);
        // The worker's code is part of the digest: an edit to it (or to a file it imports) restarts the app.
        const bundle = await bundleModule({ entry: app.workerPath, dependencies: [], anyPackage: true });
        nextApps.set(app.name, { app, digest: createHash("sha256").update(bundle.hash).update(stableJson(app)).digest("hex") });
      }
      const nextFunctions = [];
      for (const fn of project.functions ?? []) {
        const { registration } = await packageFunction(fn.options, fn.module, { source: `config:${fn.module}` });
        nextFunctions.push({ registration, unchanged: functions ? functions.unchanged(registration) : false });
      }
      if (nextFunctions.length > 0 && !functions) throw new StateError("serving functions needs the gateway's functionServer option");
      const prepared = [];
      for (const next of nextFunctions) if (!next.unchanged) prepared.push(await functions!.prepare(next.registration, next.registration.secrets));
      // Everything that can fail has: now swap.
      for (const [name, next] of nextApps) {
        const before = managedApps.get(name);
        if (before === next.digest) changes.push({ kind: "app", name, change: "unchanged" });
        else {
          table.replace(next.app, graceMs);
          changes.push({ kind: "app", name, change: before === undefined ? "added" : "updated" });
        }
      }
      for (const name of [...managedApps.keys()]) {
        if (nextApps.has(name)) continue;
        table.remove(name, graceMs);
        managedApps.delete(name);
        changes.push({ kind: "app", name, change: "removed" });
      }
      for (const [name, next] of nextApps) managedApps.set(name, next.digest);
      if (functions) {
        functions.commit(prepared);
        for (const next of nextFunctions) {
          const name = next.registration.name;
          changes.push({ kind: "function", name, change: next.unchanged ? "unchanged" : managedFunctions.has(name) ? "updated" : "added" });
        }
        const listed = new Set(nextFunctions.map((n) => n.registration.name));
        for (const name of [...managedFunctions]) {
          if (listed.has(name)) continue;
          functions.remove(name);
          managedFunctions.delete(name);
          changes.push({ kind: "function", name, change: "removed" });
        }
        for (const name of listed) managedFunctions.add(name);
      }
      return changes;
    },
    async serveFunctions(list, { signal } = {}) {
      if (!functions) throw new StateError("serveFunctions needs the gateway's functionServer option");
      const prepared = [];
      for (const fn of list) {
        const { registration } = await packageFunction(fn.options, fn.module, { source: `config:${fn.module}`, signal });
        prepared.push(await functions.prepare(registration, registration.secrets, signal ? { signal } : {}));
      }
      functions.commit(prepared);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function isDefinition(app: AppDefinition | AppOptions): app is AppDefinition {
  return Object.isFrozen(app) && typeof (app as AppDefinition).keepAlive === "number" && typeof (app as AppDefinition).retries === "object";
}

function hostInfo(options: GatewayOptions): HostInfo {
  const baseDir = options.baseDir ?? process.cwd();
  if (options.host?.gpuCount !== undefined) return { ...options.host, baseDir, gpuCount: options.host.gpuCount };
  const cuda = cudaAvailability();
  if (!cuda.available) return { ...options.host, baseDir, gpuCount: 0, noGpuReason: cuda.reason };
  let gpuCount = 0;
  try {
    gpuCount = listDevices().length;
  } catch (error) {
    return { ...options.host, baseDir, gpuCount: 0, noGpuReason: error instanceof Error ? error.message : String(error) };
  }
  return { ...options.host, baseDir, gpuCount };
}

function chunkHighWaterMark(value: number | undefined): number {
  if (value === undefined) return DEFAULT_CHUNK_HIGH_WATER_MARK;
  if (!Number.isInteger(value) || value < 1024) throw new ValidationError(`options.streamHighWaterMark must be an integer number of bytes of at least 1024, got ${String(value)}`);
  return value;
}
