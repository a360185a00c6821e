/**
 * The routes behind the web page: the page at `/`, what it must know before
 * it asks for anything (`GET /page/info`: does this gateway check keys?), and
 * its live list of an app's recent requests (`GET /requests?app=NAME`).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ValidationError } from "../../errors.js";
import type { ProtocolCore } from "../core.js";
import type { Job, JobLog } from "../job.js";
import { RECENT_JOBS_PER_APP } from "../job-store.js";
import { PAGE_HTML } from "./page.js";

/** Options of {@link registerPageRoutes}. */
export interface PageRouteOptions {
  /** Serve the page at `/` (the JSON routes are served either way, for other dashboards). */
  page: boolean;
  /** Whether `/healthz`, `/metrics` and `/apps` ask for a key (`requireKeyForOps` with keys). */
  opsNeedKey: boolean;
}

/** One request as the page lists it: no input and no output, which may hold what their senders keep secret. */
export interface RecentRequest {
  id: string;
  status: Job["status"];
  /** When it was submitted, ISO 8601. */
  createdAt: string;
  /** Milliseconds from submission to the start of the last attempt (so far, while queued). */
  queueMs: number;
  /** Milliseconds the last attempt ran (so far, while running). */
  runMs: number;
  attempts: number;
  error: { type: string; message: string } | null;
  /** The last {@link LOG_TAIL} log lines. */
  logs: JobLog[];
}

/** Log lines per request in `/requests`: enough to see what happened, bounded for a page that polls. */
export const LOG_TAIL = 20;
const DEFAULT_LIMIT = 20;

/**
 * Registers `/` (when `options.page`), `GET /page/info` (public: two
 * booleans, never a key) and `GET /requests?app=NAME[&limit=N]` (newest
 * first, at most {@link RECENT_JOBS_PER_APP}). `/requests` needs a key
 * whenever the gateway has keys, as the status routes that show the same
 * logs do, even where `/apps` and `/healthz` are public.
 */
export function registerPageRoutes(server: FastifyInstance, core: ProtocolCore, options: PageRouteOptions): void {
  if (options.page) server.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(PAGE_HTML));
  server.get("/page/info", async () => ({ keys: core.keysRequired, opsNeedKey: options.opsNeedKey }));
  server.get("/requests", async (request: FastifyRequest<{ Querystring: { app?: string; limit?: string } }>) => {
    core.authorize(request);
    const app = request.query.app;
    if (typeof app !== "string" || app === "") throw new ValidationError("query parameter app must name an app");
    const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > RECENT_JOBS_PER_APP) {
      throw new ValidationError(`query parameter limit must be an integer from 1 to ${RECENT_JOBS_PER_APP}, got ${JSON.stringify(request.query.limit)}`);
    }
    // An app that is gone (removed at runtime) still lists the requests it had: no 404.
    return { app, requests: (await core.recentJobs(app, limit)).map(recentRequest) };
  });
}

function recentRequest(job: Job): RecentRequest {
  return {
    id: job.id,
    status: job.status,
    createdAt: new Date(job.createdAt).toISOString(),
    queueMs: job.delayTimeMs,
    runMs: job.executionTimeMs,
    attempts: job.attempts,
    error: job.error ? { type: job.error.type, message: job.error.message } : null,
    logs: job.logs.slice(-LOG_TAIL),
  };
}
