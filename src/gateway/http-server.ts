/**
 * The gateway's HTTP server, before any route: a fastify instance with the
 * proxy-form URL rewrite (keys taken off the URL first), the JSON body
 * parser, error and not-found answers in each protocol's shape, and request
 * metrics. Loaded only by `createGateway` (a rank imports the package and
 * serves no HTTP).
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ValidationError, type MultirankError } from "../errors.js";
import { GatewayError, QueueUnavailableError, ShuttingDownError } from "./errors.js";
import type { GatewayMetrics } from "./metrics.js";
import { proxyTarget } from "./proxy.js";
import { rememberQueryKey, takeQuerySecrets } from "./redact.js";
import { lazyChildLoggerFactory } from "./request-logger.js";

/** What {@link createHttpServer} needs. */
export interface HttpServerInit {
  /** The gateway's redacting logger; requests log through its `http` child. */
  logger: Logger;
  /** Largest request body, bytes. */
  bodyLimit: number;
  /** Counts every response. */
  metrics: GatewayMetrics;
}

/** A fastify instance set up for the gateway, with no routes yet. */
export function createHttpServer(init: HttpServerInit): FastifyInstance {
  const { metrics } = init;
  const server = Fastify({
    loggerInstance: init.logger.child({ component: "http" }) as FastifyBaseLogger,
    childLoggerFactory: lazyChildLoggerFactory,
    bodyLimit: init.bodyLimit,
    rewriteUrl: (request) => {
      // fal's proxy form: one URL, the real target in x-fal-target-url.
      const target = takeQuerySecrets(proxyTarget(request.url ?? "/", request.headers["x-fal-target-url"]));
      // A key in the query (EventSource's ?fal_key=) leaves the URL here, before fastify or an error can quote it;
      // the key check reads it from the side. fastify saved the URL as it came in originalUrl: redact that too.
      if (target.falKey !== undefined) rememberQueryKey(request, target.falKey);
      const raw = request as typeof request & { originalUrl?: string };
      if (typeof raw.originalUrl === "string") raw.originalUrl = takeQuerySecrets(raw.originalUrl).url;
      return target.url;
    },
    forceCloseConnections: "idle",
    return503OnClosing: true,
  });
  server.removeContentTypeParser("application/json");
  server.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = (body as string).trim();
    if (text === "") return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      const failure = new Error(`malformed JSON body: ${(error as Error).message}`) as Error & { statusCode: number };
      failure.statusCode = 400;
      done(failure, undefined);
    }
  });
  server.setErrorHandler((error: FastifyError | MultirankError, request, reply) => sendError(error, request, reply));
  server.setNotFoundHandler((request, reply) => {
    const status = 404;
    const message = `no route ${request.method} ${request.url.split("?")[0]}`;
    if (request.url.startsWith("/fal/")) return reply.code(status).header("x-fal-error-type", "not_found").send({ detail: message, error_type: "not_found" });
    return reply.code(status).send({ error: message });
  });
  // A callback hook, not an async one: no promise and no extra turn per response.
  server.addHook("onResponse", (request, reply, done) => {
    metrics.httpResponse(request.method, request.routeOptions.url ?? "unmatched", reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  return server;
}

/** An error as an answer: fal's `{detail, error_type}` under `/fal/`, `{error, code}` elsewhere. */
function sendError(error: FastifyError | MultirankError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  let status: number;
  let type: string;
  if (error instanceof GatewayError) {
    status = error.statusCode;
    type = error.code.replace("MULTIRANK_ERR_GATEWAY_", "").toLowerCase();
  } else if (error instanceof ValidationError) {
    status = 422;
    type = "validation_error";
  } else {
    const fastifyStatus = (error as FastifyError).statusCode;
    status = typeof fastifyStatus === "number" && fastifyStatus >= 400 && fastifyStatus < 500 ? fastifyStatus : 500;
    type = status === 413 ? "payload_too_large" : status === 415 ? "unsupported_media_type" : status < 500 ? "bad_request" : "internal_error";
  }
  // A 503 while shutting down is the gateway doing what it was told, not a failure: no stack, no error level.
  // Nor one while the queue's Redis is away: the lost connection is logged once, not once per request refused.
  if (status >= 500 && !(error instanceof ShuttingDownError) && !(error instanceof QueueUnavailableError)) request.log.error({ err: error }, "request failed in the gateway");
  else request.log.info({ status, reason: error.message }, "request refused");
  if (request.url.startsWith("/fal/")) return reply.code(status).header("x-fal-error-type", type).send({ detail: error.message, error_type: type });
  return reply.code(status).send({ error: error.message, code: (error as { code?: string }).code ?? type });
}
