/**
 * The server side of remote functions, on a gateway (`multirank serve`):
 *
 * - `POST /fn/v1/functions` registers a function (msgpack: its bundle, npm
 *   specs with any `file:` tarballs, options, secret values). It builds the
 *   environment, then serves the function as the app `fn/<name>`, so fal's and
 *   Runpod's routes reach it too. Anything wrong answers 4xx and leaves what
 *   was registered before untouched. Registering needs an admin key; a server
 *   without one takes code only while it listens on loopback.
 * - `POST /fn/v1/functions/<name>/call` calls it (msgpack in and out) and
 *   `.../stream` streams a generator's values as Server-Sent Events; closing
 *   the connection cancels the call at every rank.
 * - A function declared with `method` and `path` is served there directly
 *   (no queue), its JSON body (a query for GET and DELETE) the argument.
 * - `/fn/data/*` receives `syncDir` uploads into the data root.
 */
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { resolve } from "node:path";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { pack, unpack } from "../codec/packer.js";
import {
  AbortError,
  ArtifactError,
  BundleError,
  DependencyInstallError,
  errorKinds,
  MultirankError,
  RemoteExecutionError,
  SerializationError,
  TimeoutError,
  UndeclaredDependencyError,
  ValidationError,
  VersionMismatchError,
} from "../errors.js";
import type { AppTable, ServedApp } from "../gateway/app-table.js";
import { KeyChecker } from "../gateway/auth.js";
import type { ProtocolCore } from "../gateway/core.js";
import { ConfigError, ForbiddenError, GatewayError, UnauthorizedError } from "../gateway/errors.js";
import { acquireWhenFree, type RunnerLease } from "../gateway/runner-pool.js";
import { multirankCacheDir } from "../util/cache-dir.js";
import { isLoopback } from "../util/loopback.js";
import { durationToMs } from "../util/timers.js";
import { MULTIRANK_VERSION } from "../version.js";
import { dataRoutes } from "./data-routes.js";
import { dataRoot } from "./data-root.js";
import type { ResolvedRemoteOptions } from "./options.js";
import { directRoute, ServedFunctions, type Registered } from "./served-functions.js";
import { toRemoteError } from "./remote-error.js";
import { FN_HEADERS, FN_ROUTES, functionAppName, MSGPACK, type RegistrationRequest, type RegistrationResponse, type WireError } from "./wire.js";

/** Options of a gateway's function server (`GatewayOptions.functions`). */
export interface FunctionServerOptions {
  /**
   * Keys that may register functions and upload data (`multirank serve
   * --admin-key`, `MULTIRANK_ADMIN_KEYS`), apart from callers' keys; an admin
   * key may also call. With none, uploads are taken only while the server
   * listens on loopback only. @default []
   */
  adminKeys?: readonly string[];
  /** The data root: `syncDir` uploads land here, and functions see it through `dataPath()`. @default MULTIRANK_DATA_DIR or ~/.local/share/multirank */
  dataDir?: string;
  /** Environments and uploaded tarballs. @default MULTIRANK_CACHE_DIR or ~/.cache/multirank */
  cacheDir?: string;
  /** Largest registration body, bytes (the bundle and its tarballs). @default 268435456 (256 MiB) */
  maxUploadBytes?: number;
  /** Where deployments (artifacts and revisions) are kept and brought back from after a restart. @default <dataDir>/.multirank/deployments */
  deploymentsDir?: string;
  /** Largest deployment artifact, bytes, compressed and once decompressed. @default 1073741824 (1 GiB) */
  maxArtifactBytes?: number;
}

/** The keys a function server checks. */
export interface FunctionServerKeys {
  readonly admin: KeyChecker;
  /** Given to the server's own function processes, so a function can call another on the same server. */
  readonly internalKey: string;
  /** Keys accepted as callers' besides the gateway's own: the admin keys and the internal key. */
  readonly callerKeys: readonly string[];
}

/** Validates the admin keys and makes the internal key. @throws {ValidationError} */
export function functionServerKeys(options: FunctionServerOptions): FunctionServerKeys {
  if (typeof options !== "object" || options === null) throw new ValidationError("options.functionServer must be an object");
  const adminKeys = options.adminKeys ?? [];
  if (!Array.isArray(adminKeys) || adminKeys.some((key) => typeof key !== "string" || key.length < 8 || /\s/.test(key))) {
    throw new ValidationError("options.functionServer.adminKeys must be keys of at least 8 characters without spaces");
  }
  const internalKey = `internal-${randomBytes(24).toString("base64url")}`;
  return { admin: new KeyChecker(adminKeys), internalKey, callerKeys: [...adminKeys, internalKey] };
}

/** What {@link registerFunctionRoutes} works with. */
export interface FunctionRoutesInit extends FunctionServerOptions {
  keys: FunctionServerKeys;
  core: ProtocolCore;
  table: AppTable;
  gpuCount: number;
  logger: Logger;
  /** Milliseconds a replaced function's runners get to finish their calls. */
  graceMs: number;
}

const RESERVED_PREFIXES = ["/fal/", "/v2/", "/fn/", "/deploy/", "/healthz", "/metrics", "/apps"];
const DIRECT_METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE"]);

/** Registers the function routes on a gateway's server (before it is ready); returns the functions it serves. */
export function registerFunctionRoutes(server: FastifyInstance, init: FunctionRoutesInit): ServedFunctions {
  const { core, keys, logger } = init;
  const maxUploadBytes = init.maxUploadBytes ?? 256 * 1024 * 1024;
  if (!Number.isSafeInteger(maxUploadBytes) || maxUploadBytes < 1024) throw new ValidationError("options.functionServer.maxUploadBytes must be an integer number of bytes of at least 1024");
  const dataDir = resolve(init.dataDir ?? dataRoot());

  const address = (): { loopback: boolean; url: string | undefined } => {
    const bound = server.server.address();
    if (bound === null || typeof bound === "string") return { loopback: true, url: undefined };
    const host = bound.address === "0.0.0.0" ? "127.0.0.1" : bound.address === "::" ? "::1" : bound.address;
    return { loopback: isLoopback(bound.address), url: `http://${host.includes(":") ? `[${host}]` : host}:${bound.port}` };
  };
  const functions = new ServedFunctions({
    table: init.table,
    cacheDir: resolve(init.cacheDir ?? multirankCacheDir()),
    dataDir,
    gpuCount: init.gpuCount,
    graceMs: init.graceMs,
    logger,
    internalKey: keys.internalKey,
    selfUrl: () => address().url,
    isTaken: (method, url) => isReserved(url) || server.hasRoute({ method: method as "GET", url }),
  });

  const authorizeAdmin = (request: FastifyRequest): void => {
    if (keys.admin.open) {
      if (!address().loopback) {
        throw new ForbiddenError("this server has no admin key, so it takes code and data uploads only while it listens on loopback; start it with --admin-key (or MULTIRANK_ADMIN_KEYS)");
      }
      core.authorize(request);
      return;
    }
    const header = request.headers.authorization;
    if (header === undefined) throw new UnauthorizedError("registering functions and uploading data need an admin key: send Authorization: Key <admin key>");
    if (!keys.admin.check(header)) throw new ForbiddenError("this key may call functions but not register them or upload data; that needs an admin key (multirank serve --admin-key)");
  };
  functions.authorizeAdmin = authorizeAdmin;
  /** Registrations of one name run one at a time. */
  const inFlight = new Map<string, Promise<unknown>>();

  const register = async (request: FastifyRequest, body: RegistrationRequest): Promise<RegistrationResponse> => {
    const app = functionAppName(body.name);
    if (functions.unchanged(body)) return { name: body.name, status: "unchanged", app };
    authorizeAdmin(request);
    const prepared = await functions.prepare(body, body.secrets);
    functions.commit([prepared]);
    return { name: body.name, status: prepared.replaces ? "replaced" : "registered", app };
  };
  const served = (name: string): { entry: Registered; app: ServedApp } => functions.get(name);

  const scope = async (fn: FastifyInstance): Promise<void> => {
    fn.addContentTypeParser(MSGPACK, { parseAs: "buffer", bodyLimit: maxUploadBytes }, (_request, body, done) => done(null, body));
    fn.addHook("onRequest", async (request, reply) => {
      reply.header(FN_HEADERS.version, MULTIRANK_VERSION);
      const theirs = request.headers[FN_HEADERS.version];
      if (typeof theirs === "string" && theirs !== MULTIRANK_VERSION && request.url.startsWith("/fn/v1/")) {
        throw new GatewayError("MULTIRANK_ERR_VERSION_MISMATCH", `multirank version mismatch: the client is ${theirs}, this server is ${MULTIRANK_VERSION}; install the same version on both`, 409);
      }
    });
    fn.setErrorHandler((error, request, reply) => sendWireError(error, request, reply));

    fn.get(FN_ROUTES.info, async (request) => {
      core.authorize(request);
      return { version: MULTIRANK_VERSION, functions: functions.list().length };
    });
    fn.get(FN_ROUTES.functions, async (request) => {
      core.authorize(request);
      return {
        functions: functions.list().map(({ name, options }) => ({
          name,
          app: functionAppName(name),
          machineType: options.machineType ?? null,
          worldSize: options.worldSize ?? null,
          route: directRoute(options) ?? null,
        })),
      };
    });
    fn.post(FN_ROUTES.functions, { bodyLimit: maxUploadBytes }, async (request) => {
      core.authorize(request);
      const body = parseRegistration(request.body);
      const previous = inFlight.get(body.name) ?? Promise.resolve();
      const run = previous.catch(() => {}).then(() => register(request, body));
      inFlight.set(body.name, run);
      try {
        return await run;
      } finally {
        if (inFlight.get(body.name) === run) inFlight.delete(body.name);
      }
    });
    fn.post("/fn/v1/functions/:name/call", async (request: FastifyRequest<{ Params: { name: string } }>, reply) => {
      core.authorize(request);
      const { entry, app } = served(request.params.name);
      const payload = decodePayload(request.body);
      const timeout = timeoutOf(request, entry.options);
      const value = await onRunner(app, reply, entry.name, (runner, signal) => runner.invoke(payload, { timeout, signal }));
      return reply.type(MSGPACK).send(pack({ value }, `result of ${entry.name}`));
    });
    fn.post("/fn/v1/functions/:name/stream", async (request: FastifyRequest<{ Params: { name: string } }>, reply) => {
      core.authorize(request);
      const { entry, app } = served(request.params.name);
      const payload = decodePayload(request.body);
      const timeout = timeoutOf(request, entry.options);
      const raw = reply.raw;
      await onRunner(app, reply, entry.name, async (runner, signal) => {
        reply.hijack();
        raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", [FN_HEADERS.version]: MULTIRANK_VERSION });
        for await (const item of runner.stream(payload, { timeout, signal })) {
          // Backpressure: a slow reader holds the rank through the runner's stream window.
          if (!raw.write(`event: item\ndata: ${pack(item, `a value of ${entry.name}`).toString("base64")}\n\n`)) await drained(raw, signal);
        }
        raw.end("event: end\ndata: {}\n\n");
      }).catch((error: unknown) => {
        // Before the stream began, the error handler answers; after, the stream ends with the error.
        if (!reply.sent) throw error;
        if (!raw.destroyed) raw.end(`event: error\ndata: ${JSON.stringify(wireError(error))}\n\n`);
      });
    });
    fn.route({
      method: [...DIRECT_METHODS],
      url: "/*",
      handler: async (request, reply) => {
        const path = request.url.split("?")[0]!;
        const name = functions.directRoute(`${request.method} ${path}`);
        if (name === undefined) return reply.callNotFound();
        core.authorize(request);
        const { entry, app } = served(name);
        // Untagged, as from fal's and Runpod's routes: the function worker takes it as the one argument (a class, as its input).
        const payload = request.method === "GET" || request.method === "DELETE" ? { ...(request.query as object) } : (request.body ?? null);
        const value = await onRunner(app, reply, entry.name, (runner, signal) => runner.invoke(payload, { timeout: entry.options.timeout, signal }));
        return reply.type("application/json").send(JSON.stringify(value ?? null));
      },
    });
    await fn.register(dataRoutes, { root: dataDir, authorizeAdmin });
  };
  void server.register(scope);
  return functions;
}

function isReserved(path: string): boolean {
  return path === "/" || RESERVED_PREFIXES.some((prefix) => path === prefix.replace(/\/$/, "") || path.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`));
}

/**
 * Runs `body` on a runner of `app` (waiting for one), cancelled when the
 * client goes away; a rank's error comes out as a RemoteExecutionError.
 */
async function onRunner<T>(app: ServedApp, reply: FastifyReply, functionName: string, body: (runner: RunnerLease["runner"], signal: AbortSignal) => Promise<T>): Promise<T> {
  const cancel = cancelOnDisconnect(reply);
  try {
    const lease = await acquireWhenFree(app.pool, cancel.signal);
    try {
      return await body(lease.runner, cancel.signal);
    } finally {
      lease.release();
    }
  } catch (error) {
    throw toRemoteError(error, functionName, "server");
  } finally {
    cancel.done();
  }
}

/** Aborts when the client goes away before the answer is sent. */
function cancelOnDisconnect(reply: FastifyReply): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableEnded) controller.abort(new AbortError("the client closed the connection before the call finished"));
  };
  reply.raw.on("close", onClose);
  return { signal: controller.signal, done: () => reply.raw.off("close", onClose) };
}

async function drained(stream: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
  await once(stream as unknown as import("node:events").EventEmitter, "drain", { signal });
}

function timeoutOf(request: FastifyRequest, options: ResolvedRemoteOptions): number {
  const header = request.headers[FN_HEADERS.timeout];
  if (header === undefined) return options.timeout;
  const seconds = Number(Array.isArray(header) ? header[0] : header);
  durationToMs(seconds, `header ${FN_HEADERS.timeout}`);
  return seconds;
}

function decodePayload(body: unknown): unknown {
  if (!Buffer.isBuffer(body)) throw new ValidationError(`a call's body must be ${MSGPACK}`);
  return unpack(body, "the call's arguments");
}

function parseRegistration(body: unknown): RegistrationRequest {
  if (!Buffer.isBuffer(body)) throw new ValidationError(`a registration's body must be ${MSGPACK}`);
  const value = unpack<Partial<RegistrationRequest>>(body, "the registration");
  const fail = (field: string, what: string): never => {
    throw new ValidationError(`registration field ${field} must be ${what}`);
  };
  if (typeof value !== "object" || value === null) fail("(body)", "an object");
  if (typeof value.name !== "string") fail("name", "a string");
  if (typeof value.source !== "string" || value.source === "") fail("source", "a non-empty string");
  if (typeof value.hash !== "string" || !/^[0-9a-f]{64}$/.test(value.hash)) fail("hash", "a sha256 hex string");
  if (typeof value.code !== "string") fail("code", "the bundle's source text");
  if (!Array.isArray(value.dependencies) || value.dependencies.some((d) => typeof d !== "string")) fail("dependencies", "a list of npm specs");
  const tarballs = value.tarballs ?? {};
  if (typeof tarballs !== "object" || Object.values(tarballs).some((t) => !(t instanceof Uint8Array))) fail("tarballs", "a map of sha256 to bytes");
  if (typeof value.options !== "object" || value.options === null) fail("options", "an object");
  const secrets = value.secrets ?? {};
  if (typeof secrets !== "object" || Object.values(secrets).some((s) => typeof s !== "string")) fail("secrets", "a map of names to strings");
  for (const [sha, bytes] of Object.entries(tarballs as Record<string, Uint8Array>)) {
    if (createHash("sha256").update(bytes).digest("hex") !== sha) throw new ValidationError(`the tarball sent as ${sha} does not match that sha256`);
  }
  return { ...(value as RegistrationRequest), tarballs: tarballs as Record<string, Uint8Array>, secrets: secrets as Record<string, string> };
}

/** The HTTP status of an error, for a client's call or registration. */
function statusOf(error: unknown): number {
  if (error instanceof ConfigError) return 422; // the function asks for what this host lacks
  if (error instanceof GatewayError) return error.statusCode;
  if (error instanceof ValidationError || error instanceof SerializationError) return 422;
  if (error instanceof DependencyInstallError || error instanceof BundleError || error instanceof UndeclaredDependencyError) return 422;
  if (error instanceof TimeoutError) return 504;
  if (error instanceof ArtifactError) return /over the limit|over \d+ bytes/.test(error.message) ? 413 : 422;
  if (error instanceof VersionMismatchError) return 409;
  if (error instanceof AbortError) return 499;
  const status = (error as { statusCode?: unknown })?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) return status;
  return 500;
}

/** An error as the body a client decodes back into an error. */
export function wireError(error: unknown): WireError {
  if (error instanceof RemoteExecutionError) {
    return {
      error: error.message,
      code: error.code,
      kinds: errorKinds(error),
      remote: { name: error.remoteName, message: error.remoteMessage, stack: error.remoteStack, rank: error.rank },
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof MultirankError ? error.code : typeof (error as { code?: unknown })?.code === "string" && String((error as { code: string }).code).startsWith("MULTIRANK_ERR_") ? (error as { code: string }).code : "MULTIRANK_ERR_HOST";
  return { error: message, code, kinds: errorKinds(error) };
}

/** Answers an error as a {@link WireError} with its HTTP status. */
export function sendWireError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const status = statusOf(error);
  // A remote function's own error is the caller's to see, and 503 is the expected answer while shutting down: neither is a server fault.
  if (status >= 500 && status !== 503 && !(error instanceof RemoteExecutionError)) request.log.error({ err: error }, "function request failed in the server");
  else request.log.info({ status, reason: error instanceof Error ? error.message.split("\n")[0] : String(error) }, "function request refused or failed");
  return reply.code(status).type("application/json").send(JSON.stringify(wireError(error)));
}
