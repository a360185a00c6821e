/**
 * Runpod's serverless protocol, as `runpod-sdk` 1.1.2 speaks it, under
 * `/v2/{endpoint}`. The endpoint id is the app name with `/` written `--`
 * (`acme--echo`), or the alias alone when no other app shares it. Job
 * answers are always HTTP 200 (the SDK drops the body of any other status);
 * only protocol errors (unknown endpoint or job, bad key, bad body) are not.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ProtocolCore } from "../core.js";
import { durationToMs } from "../../util/timers.js";
import { AppNotFoundError, BadRequestError } from "../errors.js";
import type { Job } from "../job.js";

/** Options of {@link registerRunpodRoutes}. */
export interface RunpodRouteOptions {
  /** Longest `/stream` and `?wait=` hold, ms. @default 10000 for stream, 90000 for wait */
  maxStreamHoldMs?: number;
}

type EndpointParams = { endpoint: string };
type JobParams = { endpoint: string; id: string };
type WaitQuery = { wait?: string };

interface RunpodBody {
  input?: unknown;
  webhook?: unknown;
  policy?: { executionTimeout?: unknown; lowPriority?: unknown };
}

/** Registers the Runpod routes on `server`. */
export function registerRunpodRoutes(server: FastifyInstance, core: ProtocolCore, options: RunpodRouteOptions = {}): void {
  const streamHoldMs = options.maxStreamHoldMs ?? 10_000;

  /** The app the request names, once its key is checked. */
  const endpoint = (request: FastifyRequest<{ Params: EndpointParams }>): string => {
    core.authorize(request);
    return runpodApp(core, request.params.endpoint);
  };

  const submit = (request: FastifyRequest<{ Params: EndpointParams }>): Job => {
    const app = endpoint(request);
    const body = request.body as RunpodBody | undefined;
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new BadRequestError('the body must be a JSON object like {"input": {...}}', 422);
    if (!("input" in body) || body.input === undefined) throw new BadRequestError('the body must have an "input" field', 400);
    const policy = body.policy ?? {};
    // Runpod gives it in ms; like every duration, it is refused above MAX_DURATION_SECONDS.
    const executionTimeout = policy.executionTimeout === undefined ? undefined : durationToMs(policy.executionTimeout, "policy.executionTimeout", { unit: "ms" });
    if (body.webhook !== undefined && (typeof body.webhook !== "string" || !/^https?:\/\//.test(body.webhook))) throw new BadRequestError("webhook must be an http(s) URL", 422);
    return core.submit(app, {
      input: body.input,
      streaming: true,
      protocol: "runpod",
      priority: policy.lowPriority === true ? "low" : "normal",
      ...(executionTimeout === undefined ? {} : { timeoutMs: executionTimeout }),
      ...(typeof body.webhook === "string" ? { webhookUrl: body.webhook } : {}),
    });
  };

  server.post("/v2/:endpoint/run", async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const job = submit(request);
    return sendJson(reply, `{"id":${JSON.stringify(job.id)},"status":"IN_QUEUE"}`);
  });

  server.post("/v2/:endpoint/runsync", async (request: FastifyRequest<{ Params: EndpointParams; Querystring: WaitQuery }>, reply) => {
    const job = submit(request);
    await waitDone(job, waitMs(request.query.wait, 90_000));
    return sendJson(reply, runpodStatusBody(job));
  });

  const status = (wait: boolean) => async (request: FastifyRequest<{ Params: JobParams; Querystring: WaitQuery }>, reply: FastifyReply) => {
    const job = core.job(endpoint(request), request.params.id);
    if (wait) await waitDone(job, waitMs(request.query.wait, 90_000));
    return sendJson(reply, runpodStatusBody(job));
  };
  server.get("/v2/:endpoint/status/:id", status(false));
  server.post("/v2/:endpoint/status/:id", status(false));
  server.get("/v2/:endpoint/status-sync/:id", status(true));
  server.post("/v2/:endpoint/status-sync/:id", status(true));

  // The SDK polls /stream with no delay: hold the answer until there are new chunks, the job ends, or the hold passes.
  server.get("/v2/:endpoint/stream/:id", async (request: FastifyRequest<{ Params: JobParams; Querystring: WaitQuery }>, reply) => {
    const job = core.job(endpoint(request), request.params.id);
    if (job.unreadChunks === 0 && !job.finished) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitMs(request.query.wait, streamHoldMs));
        function done(): void {
          clearTimeout(timer);
          job.off("chunk", done);
          job.off("status", done);
          reply.raw.off("close", done);
          resolve();
        }
        job.on("chunk", done);
        job.on("status", done);
        reply.raw.once("close", done);
      });
    }
    const chunks = job.takeChunks();
    const stream = chunks.map((json) => `{"output":${json}}`).join(",");
    const error = job.error ? `,"error":${JSON.stringify(job.error.message)}` : "";
    return sendJson(reply, `{"id":${JSON.stringify(job.id)},"status":"${job.status}","stream":[${stream}]${error}}`);
  });

  server.post("/v2/:endpoint/cancel/:id", async (request: FastifyRequest<{ Params: JobParams }>, reply) => {
    const job = core.job(endpoint(request), request.params.id);
    if (core.cancel(job)) await waitDone(job, 5000);
    return sendJson(reply, runpodStatusBody(job));
  });

  server.post("/v2/:endpoint/retry/:id", async (request: FastifyRequest<{ Params: JobParams }>, reply) => {
    const job = core.job(endpoint(request), request.params.id);
    if (!core.retry(job)) {
      return sendJson(reply, JSON.stringify({ id: job.id, status: job.status, error: `only FAILED, TIMED_OUT or CANCELLED jobs can be retried; this one is ${job.status}` }));
    }
    return sendJson(reply, `{"id":${JSON.stringify(job.id)},"status":"IN_QUEUE"}`);
  });

  server.post("/v2/:endpoint/purge-queue", async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const removed = core.purge(endpoint(request));
    return sendJson(reply, JSON.stringify({ removed, status: "completed" }));
  });

  server.get("/v2/:endpoint/health", async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const { jobs, runners: counts } = core.health(endpoint(request));
    return reply.send({
      jobs,
      workers: { idle: counts.idle, initializing: counts.starting, ready: counts.idle + counts.busy, running: counts.busy, throttled: 0, unhealthy: 0 },
    });
  });
}

/** The app behind a Runpod endpoint id: `owner--alias`, or a unique alias. @throws {AppNotFoundError} */
export function runpodApp(core: ProtocolCore, endpointId: string): string {
  const names = core.appNames();
  const exact = endpointId.replace("--", "/");
  if (names.includes(exact)) return exact;
  const matches = names.filter((name) => name.split("/")[1] === endpointId);
  if (matches.length === 1) return matches[0]!;
  throw new AppNotFoundError(endpointId);
}

/** Runpod's job body: `id, status, delayTime, executionTime, workerId, output, error` (times in integer ms). */
export function runpodStatusBody(job: Job): string {
  const head = `{"id":${JSON.stringify(job.id)},"status":"${job.status}","delayTime":${job.delayTimeMs},"executionTime":${job.executionTimeMs}`;
  const worker = `,"workerId":${job.workerId === undefined ? "null" : JSON.stringify(job.workerId)}`;
  if (!job.finished) return `${head}${worker}}`;
  const output = job.status === "COMPLETED" ? (job.outputJson ?? "null") : "null";
  const error = job.error ? JSON.stringify(job.error.message) : "null";
  return `${head}${worker},"output":${output},"error":${error}}`;
}

function sendJson(reply: FastifyReply, json: string): FastifyReply {
  return reply.code(200).type("application/json").send(json);
}

function waitMs(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0) throw new BadRequestError("wait must be a number of milliseconds");
  return Math.min(ms, 300_000);
}

async function waitDone(job: Job, ms: number): Promise<void> {
  if (job.finished) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([job.done, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
