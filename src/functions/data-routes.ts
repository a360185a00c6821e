/**
 * The server side of `syncDir`: two admin-only routes under `/fn/data/`.
 *
 * - `POST /fn/data/plan` `{ remoteDir, files: [{ path, size, sha256, mode? }] }`
 *   answers `{ path, need }`: the directory's absolute path on the server and
 *   the files whose content (or mode) it does not already hold.
 * - `PUT /fn/data/file?remoteDir=&path=&sha256=[&size=&mode=]` with an
 *   `application/octet-stream` body streams one file to a temporary name,
 *   checks its SHA-256 (422 on a mismatch, nothing left behind) and renames
 *   it into place; it answers `{ path, size, sha256 }`.
 *
 * Both run the caller's `authorizeAdmin` before anything else, the body
 * included. Paths that leave the data root answer 400 before anything is
 * written.
 */
import { Readable } from "node:stream";
import { mkdir } from "node:fs/promises";
import { dirname, isAbsolute } from "node:path";
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from "fastify";
import { ValidationError } from "../errors.js";
import { BadRequestError, GATEWAY_ERROR_CODES, GatewayError } from "../gateway/errors.js";
import { targetMatches, writeFileAtomic } from "./data-files.js";
import { resolveDataFile, resolveDataPath } from "./data-root.js";

/** Options of {@link registerDataRoutes}. */
export interface DataRoutesOptions {
  /** The data root (`multirank serve --data-dir`); an absolute path. Created on the first upload. */
  root: string;
  /**
   * Throws when the request may not upload: a {@link GatewayError} such as
   * `UnauthorizedError` (401), which the server answers with its status. Runs
   * before the body is read.
   */
  authorizeAdmin: (request: FastifyRequest) => void | Promise<void>;
  /** Largest file accepted, bytes; over it the upload answers 413. @default 68719476736 (64 GiB) */
  maxFileBytes?: number;
  /** Most files one plan may list. @default 100000 */
  maxPlanFiles?: number;
}

const DEFAULTS = Object.freeze({ maxFileBytes: 64 * 1024 ** 3, maxPlanFiles: 100_000 });
const SHA256 = /^[0-9a-f]{64}$/;

interface PlanFile {
  path: string;
  size: number;
  sha256: string;
  mode?: number;
}

/**
 * The data routes as a fastify plugin, encapsulated: its
 * `application/octet-stream` parser (which hands the raw stream to the
 * upload route) does not leak to the server's other routes.
 */
export const dataRoutes: FastifyPluginAsync<DataRoutesOptions> = async (scope, options) => {
  const { root, authorizeAdmin, maxFileBytes, maxPlanFiles } = validate(options);
  const authorize = async (request: FastifyRequest): Promise<void> => {
    await authorizeAdmin(request);
  };

  if (scope.hasContentTypeParser("application/octet-stream")) scope.removeContentTypeParser("application/octet-stream");
  // Pass the request stream through untouched: the route streams it to disk and enforces its own limit.
  scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));

  scope.post("/fn/data/plan", { onRequest: authorize, bodyLimit: Math.max(1024 * 1024, maxPlanFiles * 512) }, async (request) => {
    const { remoteDir, files } = planBody(request.body, maxPlanFiles);
    const path = refuseAsBadRequest(() => resolveDataPath(root, remoteDir));
    const destinations = files.map((file) => refuseAsBadRequest(() => resolveDataFile(root, remoteDir, file.path)));
    const need: string[] = [];
    for (const [index, file] of files.entries()) {
      if (!(await targetMatches(destinations[index]!, file))) need.push(file.path);
    }
    return { path, need };
  });

  scope.put("/fn/data/file", { onRequest: authorize }, async (request) => {
    const query = fileQuery(request.query);
    const dest = refuseAsBadRequest(() => resolveDataFile(root, query.remoteDir, query.path));
    const declared = Number(request.headers["content-length"] ?? query.size ?? 0);
    if (declared > maxFileBytes || (query.size ?? 0) > maxFileBytes) throw tooLarge(maxFileBytes);
    await mkdir(dirname(dest), { recursive: true });
    // mkdir created plain directories only, but a link could have appeared meanwhile: check again.
    refuseAsBadRequest(() => resolveDataFile(root, query.remoteDir, query.path));
    const body = request.body;
    const source = body instanceof Readable ? body : Readable.from(Buffer.isBuffer(body) ? [body] : []);
    const written = await writeFileAtomic(dest, source, {
      ...(query.mode !== undefined ? { mode: query.mode } : {}),
      maxBytes: Math.min(maxFileBytes, query.size ?? Number.POSITIVE_INFINITY),
      tooLarge: (limit) => (limit < maxFileBytes ? new BadRequestError(`${query.path} is longer than its declared size of ${limit} bytes`) : tooLarge(limit)),
      verify: ({ sha256, size }) => {
        if (query.size !== undefined && size !== query.size) throw new BadRequestError(`${query.path} is ${size} bytes, not the declared ${query.size}`, 422);
        if (sha256 !== query.sha256) throw new BadRequestError(`${query.path} arrived with SHA-256 ${sha256}, not the declared ${query.sha256}; nothing was written`, 422);
      },
    });
    return { path: dest, ...written };
  });
};

/**
 * Registers the data routes ({@link dataRoutes}) on `server`. Call it before
 * `server.ready()` or `listen()`, as with any fastify plugin.
 *
 * @example registerDataRoutes(server, { root: "/srv/data", authorizeAdmin: (request) => adminKeys.authorize(request) });
 * @throws ValidationError (when the server starts) for a relative `root` or a bad limit.
 */
export function registerDataRoutes(server: FastifyInstance, options: DataRoutesOptions): void {
  validate(options);
  void server.register(dataRoutes, options);
}

function validate(options: DataRoutesOptions): Required<DataRoutesOptions> {
  if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object");
  const merged = { ...DEFAULTS, ...options };
  if (typeof merged.root !== "string" || !isAbsolute(merged.root)) throw new ValidationError(`options.root must be an absolute path, got ${JSON.stringify(merged.root)}`);
  if (typeof merged.authorizeAdmin !== "function") throw new ValidationError("options.authorizeAdmin must be a function that throws when the request may not upload");
  if (!Number.isSafeInteger(merged.maxFileBytes) || merged.maxFileBytes < 1) throw new ValidationError("options.maxFileBytes must be a positive integer of bytes");
  if (!Number.isSafeInteger(merged.maxPlanFiles) || merged.maxPlanFiles < 1) throw new ValidationError("options.maxPlanFiles must be a positive integer");
  return merged;
}

function planBody(body: unknown, maxFiles: number): { remoteDir: string; files: PlanFile[] } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new BadRequestError('the body must be a JSON object like {"remoteDir": "/data/x", "files": [...]}', 422);
  const { remoteDir, files } = body as { remoteDir?: unknown; files?: unknown };
  if (typeof remoteDir !== "string" || remoteDir === "") throw new BadRequestError("remoteDir must be a non-empty string", 422);
  if (!Array.isArray(files)) throw new BadRequestError("files must be an array of {path, size, sha256}", 422);
  if (files.length > maxFiles) throw new BadRequestError(`files lists ${files.length} files, over the limit of ${maxFiles}`, 422);
  return {
    remoteDir,
    files: files.map((file: unknown, index) => {
      const { path, size, sha256, mode } = (typeof file === "object" && file !== null ? file : {}) as Record<string, unknown>;
      if (typeof path !== "string") throw new BadRequestError(`files[${index}].path must be a string`, 422);
      if (!Number.isSafeInteger(size) || (size as number) < 0) throw new BadRequestError(`files[${index}].size must be a non-negative integer`, 422);
      if (typeof sha256 !== "string" || !SHA256.test(sha256)) throw new BadRequestError(`files[${index}].sha256 must be 64 lowercase hex digits`, 422);
      if (mode !== undefined && !isMode(mode)) throw new BadRequestError(`files[${index}].mode must be an integer from 0 to 0o777`, 422);
      return { path, size: size as number, sha256, ...(mode !== undefined ? { mode: mode as number } : {}) };
    }),
  };
}

function fileQuery(query: unknown): { remoteDir: string; path: string; sha256: string; size?: number; mode?: number } {
  const q = (typeof query === "object" && query !== null ? query : {}) as Record<string, unknown>;
  const one = (name: string): string | undefined => {
    const value = q[name];
    if (value === undefined) return undefined;
    if (typeof value !== "string") throw new BadRequestError(`the query parameter ${name} must be given once`);
    return value;
  };
  const remoteDir = one("remoteDir");
  const path = one("path");
  const sha256 = one("sha256");
  const size = one("size");
  const mode = one("mode");
  if (!remoteDir) throw new BadRequestError("the query parameter remoteDir is required");
  if (!path) throw new BadRequestError("the query parameter path is required");
  if (!sha256 || !SHA256.test(sha256)) throw new BadRequestError("the query parameter sha256 must be 64 lowercase hex digits");
  if (size !== undefined && !/^\d{1,16}$/.test(size)) throw new BadRequestError("the query parameter size must be a non-negative integer");
  if (mode !== undefined && !/^[0-7]{1,3}$/.test(mode)) throw new BadRequestError("the query parameter mode must be octal permission bits, 0 to 777");
  return {
    remoteDir,
    path,
    sha256,
    ...(size !== undefined ? { size: Number(size) } : {}),
    ...(mode !== undefined ? { mode: Number.parseInt(mode, 8) } : {}),
  };
}

function isMode(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0o777;
}

/** A refused path is the caller's mistake: 400, on this server's error handler or fastify's own. */
function refuseAsBadRequest<T>(resolve: () => T): T {
  try {
    return resolve();
  } catch (error) {
    if (error instanceof ValidationError) throw new BadRequestError(error.message);
    throw error;
  }
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError(GATEWAY_ERROR_CODES.badRequest, `the file is over the server's limit of ${limit} bytes (maxFileBytes)`, 413);
}
