/**
 * A server's deployment routes, for `multirank deploy` and `multirank apps`:
 *
 * - `POST /deploy/v1/deployments` (admin; the artifact as `application/gzip`):
 *   a bad artifact answers 4xx and changes nothing; otherwise the answer is
 *   200 and streams the build as NDJSON lines (`{"type":"log",...}`), ending
 *   with `{"type":"done","result":...}` or `{"type":"error","error":...}`.
 * - `GET /deploy/v1/apps`, `GET /deploy/v1/apps/<name>`: the projects and their revisions.
 * - `POST /deploy/v1/apps/<name>/rollback` (admin; `{ "revision": n }` or `{}`),
 *   `DELETE /deploy/v1/apps/<name>` (admin).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { pino } from "pino";
import { ValidationError } from "../errors.js";
import type { ProtocolCore } from "../gateway/core.js";
import { wireError, sendWireError } from "../functions/function-server.js";
import { FN_HEADERS } from "../functions/wire.js";
import { MULTIRANK_VERSION } from "../version.js";
import type { Deployments } from "./deployments.js";

/** Routes of the deployment API. */
export const DEPLOY_ROUTES = Object.freeze({
  deployments: "/deploy/v1/deployments",
  apps: "/deploy/v1/apps",
  app: (name: string) => `/deploy/v1/apps/${encodeURIComponent(name)}`,
  rollback: (name: string) => `/deploy/v1/apps/${encodeURIComponent(name)}/rollback`,
});

/** What {@link registerDeployRoutes} needs. */
export interface DeployRoutesInit {
  deployments: Deployments;
  core: ProtocolCore;
  authorizeAdmin: (request: FastifyRequest) => void;
}

/** Registers the deployment routes (before the server is ready). */
export function registerDeployRoutes(server: FastifyInstance, init: DeployRoutesInit): void {
  const { deployments, core, authorizeAdmin } = init;
  void server.register(async (scope) => {
    scope.addContentTypeParser("application/gzip", { parseAs: "buffer", bodyLimit: deployments.maxArtifactBytes }, (_request, body, done) => done(null, body));
    scope.addHook("onRequest", async (_request, reply) => {
      reply.header(FN_HEADERS.version, MULTIRANK_VERSION);
    });
    scope.setErrorHandler((error, request, reply) => sendWireError(error, request, reply));

    scope.post(DEPLOY_ROUTES.deployments, { bodyLimit: deployments.maxArtifactBytes }, async (request, reply) => {
      authorizeAdmin(request);
      if (!Buffer.isBuffer(request.body)) throw new ValidationError("a deployment's body must be the artifact, as application/gzip (multirank build makes it)");
      const artifact = request.body;
      // Checked before the answer starts: a bad artifact is a 4xx and nothing changes.
      const checked = deployments.check(artifact);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache", [FN_HEADERS.version]: MULTIRANK_VERSION });
      const line = (value: unknown): void => {
        if (!raw.destroyed) raw.write(`${JSON.stringify(value)}\n`);
      };
      // The build's log goes to the deploying terminal too.
      const buildLog = pino({ level: "info", base: null, timestamp: false }, { write: (text: string) => line({ type: "log", ...(JSON.parse(text) as object) }) });
      try {
        const result = await deployments.deploy(artifact, checked, buildLog);
        line({ type: "done", result });
      } catch (error) {
        request.log.info({ err: error }, "a deployment failed; nothing changed");
        line({ type: "error", error: wireError(error) });
      } finally {
        raw.end();
      }
    });
    scope.get(DEPLOY_ROUTES.apps, async (request) => {
      core.authorize(request);
      return { apps: deployments.list() };
    });
    scope.get("/deploy/v1/apps/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
      core.authorize(request);
      return deployments.info(request.params.name);
    });
    scope.post("/deploy/v1/apps/:name/rollback", async (request: FastifyRequest<{ Params: { name: string }; Body: { revision?: unknown } | undefined }>) => {
      authorizeAdmin(request);
      const revision = request.body?.revision;
      if (revision !== undefined && (!Number.isInteger(revision) || (revision as number) < 1)) throw new ValidationError("revision must be a positive integer");
      return deployments.rollback(request.params.name, revision as number | undefined);
    });
    scope.delete("/deploy/v1/apps/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
      authorizeAdmin(request);
      const info = await deployments.delete(request.params.name);
      return { deleted: info.project };
    });
  });
}
