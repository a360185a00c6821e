/**
 * fal's protocol, as `@fal-ai/client` 1.10.1 speaks it, under `/fal/run/...`
 * (synchronous and SSE stream) and `/fal/queue/...` (submit, status, status
 * stream, result, cancel). Failed and cancelled requests end `COMPLETED` in
 * status, as fal's do, and their error comes from the result URL.
 */
import fastJson, { type ObjectSchema } from "fast-json-stringify";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { secondsHeaderMs, type ProtocolCore } from "../core.js";
import { BadRequestError } from "../errors.js";
import type { Job, JobErrorType, JobLog, JobPriority } from "../job.js";
import { SseWriter } from "../sse.js";
import { placeRawJson } from "./raw-json.js";

/** Options of {@link registerFalRoutes}. */
export interface FalRouteOptions {
  /** Interval of `:` keep-alive comments on status streams, ms. @default 15000 */
  keepAliveMs?: number;
}

type AppParams = { owner: string; alias: string; "*"?: string };
type RequestParams = { owner: string; alias: string; id: string };

/** fal's HTTP status and `error_type` for each way a job can fail. */
export const FAL_ERROR_STATUS: Readonly<Record<JobErrorType, number>> = Object.freeze({
  validation_error: 422,
  worker_error: 500,
  runner_crash: 500,
  startup_failed: 500,
  request_timeout: 504,
  start_timeout: 504,
  cancelled: 400,
  shutdown: 400,
});

const WEBHOOK_IDS = { request_id: { type: "string" }, gateway_request_id: { type: "string" }, status: { type: "string" } } as const;

/** The body of fal's webhook for a completed request: `status: "OK"`, `payload` the output. */
export const FAL_WEBHOOK_OK_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: { ...WEBHOOK_IDS, payload: {} },
  required: ["request_id", "gateway_request_id", "status", "payload"],
});

/** The body of fal's webhook for a failed request: `status: "ERROR"`, `error`, and `payload` `{detail, error_type}`. */
export const FAL_WEBHOOK_ERROR_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: { ...WEBHOOK_IDS, error: { type: "string" }, payload: { type: "object", properties: { detail: { type: "string" }, error_type: { type: "string" } }, required: ["detail", "error_type"] } },
  required: ["request_id", "gateway_request_id", "status", "error", "payload"],
});

// The output's JSON text is placed as it is (see raw-json.ts).
const serializeWebhookOk = fastJson(FAL_WEBHOOK_OK_SCHEMA);
const serializeWebhookError = fastJson(FAL_WEBHOOK_ERROR_SCHEMA);

/** Registers the fal routes on `server`. */
export function registerFalRoutes(server: FastifyInstance, core: ProtocolCore, options: FalRouteOptions = {}): void {
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  const run = async (request: FastifyRequest<{ Params: AppParams }>, reply: FastifyReply): Promise<FastifyReply> => {
    core.authorize(request);
    const app = appName(request.params);
    core.assertApp(app);
    if (request.params["*"] === "stream") return stream(request, reply, app, request.body, false);
    const job = await core.submit(app, { input: objectInput(request.body), streaming: false, ...queueHeaders(request) });
    cancelWhenClientLeaves(reply, core, job);
    await job.done;
    return sendResult(reply, job);
  };
  // The proxy form with no target: the rewrite (http-server.ts) found no x-fal-target-url to route by.
  server.all("/fal/proxy", async () => {
    throw new BadRequestError("the proxy route needs an x-fal-target-url header pointing at https://fal.run/... or https://queue.fal.run/...");
  });
  server.post("/fal/run/:owner/:alias", run);
  server.post("/fal/run/:owner/:alias/*", run);

  // EventSource can only GET: the input travels as ?input=<json>, the key as ?fal_key=.
  server.get("/fal/run/:owner/:alias/stream", async (request: FastifyRequest<{ Params: AppParams; Querystring: { input?: string } }>, reply) => {
    core.authorize(request, true);
    const app = appName(request.params);
    core.assertApp(app);
    let input: unknown = {};
    if (request.query.input) {
      try {
        input = JSON.parse(request.query.input);
      } catch (error) {
        throw new BadRequestError(`query parameter input is not valid JSON: ${(error as Error).message}`);
      }
    }
    return stream(request, reply, app, input, true);
  });

  async function stream(request: FastifyRequest, reply: FastifyReply, app: string, body: unknown, eventSource: boolean): Promise<FastifyReply> {
    const job = await core.submit(app, { input: objectInput(body), streaming: true, ...queueHeaders(request) });
    const sse = new SseWriter(reply, () => void core.cancel(job).catch(() => {}));
    let firstChunk!: () => void;
    const first = new Promise<void>((resolve) => (firstChunk = resolve));
    job.once("chunk", firstChunk);
    // A chunk may have arrived (on another gateway sharing the queue) before the listener was on.
    if ((await job.unreadChunks()) === 0) await Promise.race([first, job.done]);
    job.off("chunk", firstChunk);
    if (job.finished && job.status !== "COMPLETED" && (await job.unreadChunks()) === 0) {
      return sendResult(reply, job); // Nothing streamed yet: a plain error response.
    }
    let chunks = 0;
    // Chunks move from the job to the socket only as fast as the client reads:
    // while the SSE stream is full they wait in the job, whose high-water mark
    // stops the dispatcher pulling from the runner, whose window stops the rank.
    // One pump at a time (taking a chunk may wait on a shared queue); a chunk that arrives meanwhile asks for another round.
    let pumping: Promise<void> | undefined;
    let again = false;
    const drainOnce = async (): Promise<void> => {
      while (!sse.closed && !sse.full) {
        const frame = await job.takeFrame();
        if (frame === undefined) return;
        chunks++;
        sse.frame(frame);
      }
    };
    const pump = (): Promise<void> => {
      if (pumping) {
        again = true;
        return pumping;
      }
      pumping = (async () => {
        do {
          again = false;
          await drainOnce();
        } while (again && !sse.closed && !sse.full);
      })()
        .catch((error: unknown) => request.log.warn({ err: error, job: job.id }, "reading the stream's chunks failed"))
        .finally(() => (pumping = undefined));
      return pumping;
    };
    const onChunk = (): void => void pump();
    job.on("chunk", onChunk);
    sse.onDrain(onChunk);
    void pump();
    void job.done.then(async () => {
      job.off("chunk", onChunk);
      // The producer is done, so what is left is bounded: write it out.
      while (pumping) await pumping;
      try {
        for (let frame = await job.takeFrame(); frame !== undefined && !sse.closed; frame = await job.takeFrame()) {
          chunks++;
          sse.frame(frame);
        }
      } catch (error) {
        request.log.warn({ err: error, job: job.id }, "reading the stream's last chunks failed");
      }
      if (job.status === "COMPLETED") {
        if (chunks === 0) sse.data(job.outputJson!);
        if (eventSource) sse.data("{}", "done");
      } else {
        sse.data(JSON.stringify(errorBody(job)), "error");
      }
      sse.end();
    });
    return sse.send(reply, { "x-fal-request-id": job.id });
  }

  const submit = async (request: FastifyRequest<{ Params: AppParams }>, reply: FastifyReply): Promise<FastifyReply> => {
    core.authorize(request);
    const app = appName(request.params);
    core.assertApp(app);
    const webhook = (request.query as Record<string, unknown>).fal_webhook;
    if (webhook !== undefined && (typeof webhook !== "string" || !isHttpUrl(webhook))) throw new BadRequestError("fal_webhook must be an http(s) URL");
    const job = await core.submit(app, {
      input: objectInput(request.body),
      streaming: false,
      ...queueHeaders(request),
      ...(typeof webhook === "string" ? { webhookUrl: webhook } : {}),
    });
    return reply.header("x-fal-request-id", job.id).send({ status: "IN_QUEUE", ...urls(request, job), queue_position: await core.position(job) });
  };
  server.post("/fal/queue/:owner/:alias", submit);
  server.post("/fal/queue/:owner/:alias/*", submit);

  server.get("/fal/queue/:owner/:alias/requests/:id/status", async (request: FastifyRequest<{ Params: RequestParams; Querystring: { logs?: string } }>, reply) => {
    core.authorize(request);
    const name = appName(request.params);
    const job = await core.job(name, request.params.id);
    core.assertApp(name);
    const body = statusBody(request, job, await queuePosition(core, job), wantsLogs(request.query.logs) ? job.logs : null);
    return reply.code(job.finished ? 200 : 202).send(body);
  });

  server.get("/fal/queue/:owner/:alias/requests/:id/status/stream", async (request: FastifyRequest<{ Params: RequestParams; Querystring: { logs?: string } }>, reply) => {
    core.authorize(request);
    const name = appName(request.params);
    const job = await core.job(name, request.params.id);
    core.assertApp(name);
    const logs = wantsLogs(request.query.logs);
    const sse = new SseWriter(reply, () => cleanup());
    let sentLogs = 0;
    // Events go out in order: each waits for the one before (a queue position may be a round trip to Redis).
    let last: Promise<void> = Promise.resolve();
    const push = (): void => {
      last = last.then(async () => {
        if (sse.closed) return;
        const position = await queuePosition(core, job).catch(() => 0);
        // Each event carries only the logs not sent before; the client accumulates them.
        const all = job.logs;
        const fresh = logs ? all.slice(Math.min(sentLogs, all.length)) : null;
        sentLogs = all.length;
        sse.data(JSON.stringify(statusBody(request, job, position, fresh)));
        if (job.finished) cleanup();
      });
    };
    const timer = setInterval(() => sse.comment(), keepAliveMs);
    const onLog = (): void => push();
    const onStatus = (): void => push();
    function cleanup(): void {
      clearInterval(timer);
      job.off("log", onLog);
      job.off("status", onStatus);
      sse.end();
    }
    job.on("log", onLog);
    job.on("status", onStatus);
    push();
    return sse.send(reply, { "x-fal-request-id": job.id });
  });

  server.get("/fal/queue/:owner/:alias/requests/:id", async (request: FastifyRequest<{ Params: RequestParams }>, reply) => {
    core.authorize(request);
    const job = await core.job(appName(request.params), request.params.id);
    if (!job.finished) {
      return reply.code(400).header("x-fal-request-id", job.id).send({ detail: `request ${job.id} is ${job.status}; wait for COMPLETED`, error_type: "request_not_completed" });
    }
    return sendResult(reply, job);
  });

  server.put("/fal/queue/:owner/:alias/requests/:id/cancel", async (request: FastifyRequest<{ Params: RequestParams }>, reply) => {
    core.authorize(request);
    const name = appName(request.params);
    const job = await core.findJob(name, request.params.id);
    if (!job) return reply.code(404).send({ status: "NOT_FOUND" });
    core.assertApp(name);
    if (!(await core.cancel(job))) return reply.code(400).send({ status: "ALREADY_COMPLETED" });
    return reply.code(202).send({ status: "CANCELLATION_REQUESTED" });
  });
}

/** The fal body of a failed job: `{ detail, error_type }`. */
export function errorBody(job: Job): { detail: string; error_type: string } {
  const error = job.error ?? { type: "worker_error" as const, message: `request ${job.status}` };
  return { detail: error.message, error_type: error.type };
}

/** The body fal's webhooks carry. */
export function falWebhookBody(job: Job): string {
  if (job.status === "COMPLETED") {
    return placeRawJson(serializeWebhookOk({ request_id: job.id, gateway_request_id: job.id, status: "OK", payload: null }), "payload", job.outputJson ?? "null");
  }
  const body = errorBody(job);
  return serializeWebhookError({ request_id: job.id, gateway_request_id: job.id, status: "ERROR", error: body.detail, payload: body });
}

function sendResult(reply: FastifyReply, job: Job): FastifyReply {
  reply.header("x-fal-request-id", job.id);
  if (job.status === "COMPLETED") return reply.type("application/json").send(job.outputJson);
  const body = errorBody(job);
  const type = job.error?.type ?? "worker_error";
  reply.header("x-fal-error-type", type);
  // fal's client does not retry a 504 marked as the user's own timeout.
  if (type === "request_timeout" || type === "start_timeout") reply.header("x-fal-request-timeout-type", "user");
  return reply.code(FAL_ERROR_STATUS[type]).send(body);
}

/** The job's place in its queue, asked for only while it waits. */
function queuePosition(core: ProtocolCore, job: Job): Promise<number> {
  return job.status === "IN_QUEUE" ? core.position(job) : Promise.resolve(0);
}

function statusBody(request: FastifyRequest, job: Job, position: number, logs: readonly JobLog[] | null): Record<string, unknown> {
  const links = urls(request, job);
  if (job.status === "IN_QUEUE") return { status: "IN_QUEUE", ...links, queue_position: position, logs };
  if (job.status === "IN_PROGRESS") return { status: "IN_PROGRESS", ...links, logs };
  const body: Record<string, unknown> = { status: "COMPLETED", ...links, logs, metrics: { inference_time: job.executionTimeMs / 1000 } };
  if (job.status !== "COMPLETED") Object.assign(body, { error: job.error?.message, error_type: job.error?.type });
  return body;
}

function urls(request: FastifyRequest, job: Job): Record<string, string> {
  const base = `${request.protocol}://${request.host}/fal/queue/${job.app}/requests/${job.id}`;
  return { request_id: job.id, response_url: base, status_url: `${base}/status`, cancel_url: `${base}/cancel` };
}

function queueHeaders(request: FastifyRequest): { priority: JobPriority; startTimeoutMs?: number } {
  const raw = request.headers["x-fal-queue-priority"];
  const priority = (Array.isArray(raw) ? raw[0] : raw)?.toLowerCase() ?? "normal";
  if (priority !== "normal" && priority !== "low") throw new BadRequestError(`header x-fal-queue-priority must be "normal" or "low"; got "${priority}"`);
  const startTimeoutMs = secondsHeaderMs(request.headers["x-fal-request-timeout"], "x-fal-request-timeout");
  return { priority, ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }) };
}

function objectInput(body: unknown): unknown {
  if (body === undefined || body === null) return {};
  if (typeof body !== "object" || Array.isArray(body)) throw new BadRequestError("the request body must be a JSON object (the app's input)", 422);
  return body;
}

function cancelWhenClientLeaves(reply: FastifyReply, core: ProtocolCore, job: Job): void {
  reply.raw.once("close", () => {
    if (!reply.raw.writableFinished && !job.finished) void core.cancel(job).catch(() => {});
  });
}

function appName(params: { owner: string; alias: string }): string {
  return `${params.owner}/${params.alias}`;
}

function wantsLogs(value: string | undefined): boolean {
  return value === "1" || value === "true";
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}
