/**
 * The operations routes: `/healthz` (503 while shutting down), `/metrics`
 * (Prometheus), `/apps`, and the web page's routes. Public unless
 * `requireKeyForOps` (a load balancer's probe or a scraper usually has no key).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AppTable } from "./app-table.js";
import type { ProtocolCore } from "./core.js";
import type { GatewayMetrics } from "./metrics.js";
import type { RunnerPool } from "./runner-pool.js";
import { registerPageRoutes } from "./page/page-routes.js";

/** What {@link registerOpsRoutes} reads. */
export interface OpsRoutesInit {
  core: ProtocolCore;
  /** The apps and their dispatchers, for health. */
  table: AppTable;
  metrics: GatewayMetrics;
  /** Ask for a key on `/healthz`, `/metrics` and `/apps` (when the gateway has keys). */
  requireKeyForOps: boolean;
  /** Serve the web page at `/`. */
  page: boolean;
  /** True once the gateway is shutting down. */
  closing: () => boolean;
  /** The shared queue's state, when there is one: `/healthz` answers 503 with the reason while it is not ok. */
  queue?: () => { backend: string; ok: boolean; reason?: string };
}

/** Registers `/healthz`, `/metrics`, `/apps` and the page routes on `server`. */
export function registerOpsRoutes(server: FastifyInstance, init: OpsRoutesInit): void {
  const { core, table, metrics } = init;
  const opsAuth = init.requireKeyForOps ? (request: FastifyRequest): void => core.authorize(request) : (): void => {};
  server.get("/healthz", async (request, reply) => {
    opsAuth(request);
    const closing = init.closing();
    const queue = init.queue?.();
    const status = closing ? "shutting_down" : queue && !queue.ok ? "queue_unavailable" : "ok";
    const body = {
      status,
      ...(queue ? { queue } : {}),
      apps: Object.fromEntries([...table.dispatchers].map(([name, d]) => [name, appHealth(d.pool, d.queueLength, d.runningCount)])),
    };
    return reply.code(status === "ok" ? 200 : 503).send(body);
  });
  server.get("/metrics", async (request, reply) => {
    opsAuth(request);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  server.get("/apps", async (request) => {
    opsAuth(request);
    return {
      apps: table.apps.map((app) => ({
        name: app.name,
        title: app.title,
        exampleInput: app.exampleInput,
        worldSize: app.worldSize,
        machineType: app.machineType ?? null,
        ...(app.attach ? { launcher: "external" } : {}),
      })),
    };
  });
  registerPageRoutes(server, core, { page: init.page, opsNeedKey: init.requireKeyForOps && core.keysRequired });
}

/** One app's line in `/healthz`; an app in attach mode adds `ranks`, which says whether it waits for its launcher's ranks. */
function appHealth(pool: RunnerPool, queue: number, running: number): Record<string, unknown> {
  const ranks = pool.attachStatus?.();
  return { queue, running, runners: pool.counts(), ...(pool.failures ? { failures: pool.failures() } : {}), ...(ranks ? { ranks } : {}) };
}
