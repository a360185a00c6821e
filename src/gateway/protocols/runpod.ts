/**
 * Runpod's serverless protocol, as `runpod-sdk` 1.1.2 speaks it, under
 * `/v2/{endpoint}`. The endpoint id is the app name with `/` written `--`
 * (`acme--echo`), or the alias alone when no other app shares it. Job
 * answers are always HTTP 200 (the SDK drops the body of any other status);
 * only protocol errors (unknown endpoint or job, bad key, bad body) are not.
 */
import fastJson, { type ObjectSchema } from "fast-json-stringify";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ProtocolCore } from "../core.js";
import { durationToMs } from "../../util/timers.js";
import { AppNotFoundError, BadRequestError } from "../errors.js";
import type { Job } from "../job.js";
import { placeRawJson } from "./raw-json.js";

/** Options of {@link registerRunpodRoutes}. */
export interface RunpodRouteOptions {
  /** Longest `/stream` and `?wait=` hold, ms. @default 10000 for stream, 90000 for wait */
  maxStreamHoldMs?: number;
}

type EndpointParams = { endpoint: string };
type JobParams = { endpoint: string; id: string };
type WaitQuery = { wait?: string };

/** A job's answer: `output` and `error` once it is finished. Times in integer ms. */
export const RUNPOD_JOB_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: {
    id: { type: "string" },
    status: { type: "string" },
    delayTime: { type: "integer" },
    executionTime: { type: "integer" },
    workerId: { type: ["string", "null"] },
    output: {},
    error: { type: ["string", "null"] },
  },
  required: ["id", "status", "delayTime", "executionTime", "workerId"],
});

/** One chunk in `/stream`. */
const RUNPOD_STREAM_ITEM_SCHEMA: ObjectSchema = { type: "object", properties: { output: {} }, required: ["output"] };

/** `/stream`: the chunks not read before, each as `{output}`. */
export const RUNPOD_STREAM_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: {
    id: { type: "string" },
    status: { type: "string" },
    stream: { type: "array", items: RUNPOD_STREAM_ITEM_SCHEMA },
    error: { type: "string" },
  },
  required: ["id", "status", "stream"],
});

/** `/run` and `/retry`: the job's id and state, and why a retry was refused. */
export const RUNPOD_ACK_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: { id: { type: "string" }, status: { type: "string" }, error: { type: "string" } },
  required: ["id", "status"],
});

/** `/purge-queue`. */
export const RUNPOD_PURGE_SCHEMA: Readonly<ObjectSchema> = Object.freeze({
  type: "object",
  properties: { removed: { type: "integer" }, status: { type: "string" } },
  required: ["removed", "status"],
});

// The bodies that carry a job's JSON text are written here, with that text placed as it is (see raw-json.ts).
const serializeJob = fastJson(RUNPOD_JOB_SCHEMA);
const serializeStream = fastJson(RUNPOD_STREAM_SCHEMA);
const EMPTY_STREAM_ITEM = fastJson(RUNPOD_STREAM_ITEM_SCHEMA)({ output: null });

const jobRoute = { schema: { response: { 200: RUNPOD_JOB_SCHEMA } } };

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

  const submit = (request: FastifyRequest<{ Params: EndpointParams }>): Promise<Job> => {
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

  const ackRoute = { schema: { response: { 200: RUNPOD_ACK_SCHEMA } } };
  server.post("/v2/:endpoint/run", ackRoute, async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const job = await submit(request);
    return reply.code(200).send({ id: job.id, status: "IN_QUEUE" });
  });

  server.post("/v2/:endpoint/runsync", jobRoute, async (request: FastifyRequest<{ Params: EndpointParams; Querystring: WaitQuery }>, reply) => {
    const job = await submit(request);
    await waitDone(job, waitMs(request.query.wait, 90_000));
    return sendJson(reply, runpodStatusBody(job));
  });

  const status = (wait: boolean) => async (request: FastifyRequest<{ Params: JobParams; Querystring: WaitQuery }>, reply: FastifyReply) => {
    const job = await core.job(endpoint(request), request.params.id);
    if (wait) await waitDone(job, waitMs(request.query.wait, 90_000));
    return sendJson(reply, runpodStatusBody(job));
  };
  server.get("/v2/:endpoint/status/:id", jobRoute, status(false));
  server.post("/v2/:endpoint/status/:id", jobRoute, status(false));
  server.get("/v2/:endpoint/status-sync/:id", jobRoute, status(true));
  server.post("/v2/:endpoint/status-sync/:id", jobRoute, status(true));

  // The SDK polls /stream with no delay: hold the answer until there are new chunks, the job ends, or the hold passes.
  server.get("/v2/:endpoint/stream/:id", { schema: { response: { 200: RUNPOD_STREAM_SCHEMA } } }, async (request: FastifyRequest<{ Params: JobParams; Querystring: WaitQuery }>, reply) => {
    const job = await core.job(endpoint(request), request.params.id);
    if (!job.finished && (await job.unreadChunks()) === 0) {
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
    return sendJson(reply, runpodStreamBody(job, await job.takeChunks()));
  });

  server.post("/v2/:endpoint/cancel/:id", jobRoute, async (request: FastifyRequest<{ Params: JobParams }>, reply) => {
    const job = await core.job(endpoint(request), request.params.id);
    if (await core.cancel(job)) await waitDone(job, 5000);
    return sendJson(reply, runpodStatusBody(job));
  });

  server.post("/v2/:endpoint/retry/:id", ackRoute, async (request: FastifyRequest<{ Params: JobParams }>, reply) => {
    const job = await core.job(endpoint(request), request.params.id);
    if (!(await core.retry(job))) {
      return reply.code(200).send({ id: job.id, status: job.status, error: `only FAILED, TIMED_OUT or CANCELLED jobs can be retried; this one is ${job.status}` });
    }
    return reply.code(200).send({ id: job.id, status: "IN_QUEUE" });
  });

  server.post("/v2/:endpoint/purge-queue", { schema: { response: { 200: RUNPOD_PURGE_SCHEMA } } }, async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const removed = await core.purge(endpoint(request));
    return reply.code(200).send({ removed, status: "completed" });
  });

  server.get("/v2/:endpoint/health", async (request: FastifyRequest<{ Params: EndpointParams }>, reply) => {
    const { jobs, runners: counts } = await core.health(endpoint(request));
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
  const head = { id: job.id, status: job.status, delayTime: job.delayTimeMs, executionTime: job.executionTimeMs, workerId: job.workerId ?? null };
  if (!job.finished) return serializeJob(head);
  const body = serializeJob({ ...head, output: null, error: job.error?.message ?? null });
  return job.status === "COMPLETED" && job.outputJson !== undefined ? placeRawJson(body, "output", job.outputJson) : body;
}

/** Runpod's `/stream` body: `id, status, stream: [{output}], error` (when failed), each chunk's JSON as it came. */
export function runpodStreamBody(job: Job, chunks: readonly string[]): string {
  const body = serializeStream({ id: job.id, status: job.status, stream: [], ...(job.error ? { error: job.error.message } : {}) });
  return placeRawJson(body, "stream", `[${chunks.map((json) => placeRawJson(EMPTY_STREAM_ITEM, "output", json)).join(",")}]`, "[]");
}

/** Sends a body the serializers above wrote (fastify sends JSON text as it is, whatever the route's schema). */
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
