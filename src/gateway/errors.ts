/**
 * Gateway errors. Each is a {@link MultirankError} with a stable `code` and
 * the HTTP status the gateway answers with, so route handlers map errors to
 * responses in one place.
 */
import { MultirankError, type MultirankErrorOptions } from "../errors.js";

/** Codes of the gateway's own errors. */
export const GATEWAY_ERROR_CODES = Object.freeze({
  appNotFound: "MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND",
  jobNotFound: "MULTIRANK_ERR_GATEWAY_JOB_NOT_FOUND",
  unauthorized: "MULTIRANK_ERR_GATEWAY_UNAUTHORIZED",
  badRequest: "MULTIRANK_ERR_GATEWAY_BAD_REQUEST",
  queueFull: "MULTIRANK_ERR_GATEWAY_QUEUE_FULL",
  shuttingDown: "MULTIRANK_ERR_GATEWAY_SHUTTING_DOWN",
  config: "MULTIRANK_ERR_GATEWAY_CONFIG",
  forbidden: "MULTIRANK_ERR_GATEWAY_FORBIDDEN",
  conflict: "MULTIRANK_ERR_GATEWAY_CONFLICT",
  queueUnavailable: "MULTIRANK_ERR_GATEWAY_QUEUE_UNAVAILABLE",
} as const);

/** An error the gateway answers with `statusCode`. */
export class GatewayError extends MultirankError {
  /** Every code in {@link GATEWAY_ERROR_CODES} starts with it. */
  static override readonly brand: string = "MULTIRANK_ERR_GATEWAY";
  /** HTTP status the gateway answers with. */
  readonly statusCode: number;
  constructor(code: string, message: string, statusCode: number, options?: MultirankErrorOptions) {
    super(code, message, options);
    this.statusCode = statusCode;
  }
}

/** No app has that name (404). */
export class AppNotFoundError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.appNotFound;
  constructor(name: string) {
    super(GATEWAY_ERROR_CODES.appNotFound, `no app named "${name}"`, 404);
  }
}

/** No request has that id, or it expired (404). */
export class JobNotFoundError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.jobNotFound;
  constructor(id: string) {
    super(GATEWAY_ERROR_CODES.jobNotFound, `no request with id "${id}"`, 404);
  }
}

/** Missing or wrong API key (401). */
export class UnauthorizedError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.unauthorized;
  constructor(message = "missing or invalid API key") {
    super(GATEWAY_ERROR_CODES.unauthorized, message, 401);
  }
}

/** The request itself is malformed (400, or 422 for a well-formed body of the wrong shape). */
export class BadRequestError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.badRequest;
  constructor(message: string, statusCode: 400 | 422 = 400) {
    super(GATEWAY_ERROR_CODES.badRequest, message, statusCode);
  }
}

/** The app's queue is at `maxQueueLength` (429). */
export class QueueFullError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.queueFull;
  constructor(app: string, limit: number) {
    super(GATEWAY_ERROR_CODES.queueFull, `the queue of ${app} is full (${limit} requests); retry later`, 429);
  }
}

/** The gateway is shutting down and takes no new work (503). */
export class ShuttingDownError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.shuttingDown;
  constructor() {
    super(GATEWAY_ERROR_CODES.shuttingDown, "the gateway is shutting down", 503);
  }
}

/** The app configuration cannot run on this host (a machine type asks for missing GPUs, a secret is unset). */
export class ConfigError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.config;
  constructor(message: string, options?: MultirankErrorOptions) {
    super(GATEWAY_ERROR_CODES.config, message, 500, options);
  }
}

/** The key is valid but may not do this: registering code needs an admin key (403). */
export class ForbiddenError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.forbidden;
  constructor(message: string) {
    super(GATEWAY_ERROR_CODES.forbidden, message, 403);
  }
}

/** The request clashes with what the server holds: a function name defined elsewhere, a path in use (409). */
export class ConflictError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.conflict;
  constructor(message: string) {
    super(GATEWAY_ERROR_CODES.conflict, message, 409);
  }
}

/**
 * The shared queue's Redis cannot be reached or refused the work (503): at
 * start the message names the URL; while serving, new requests get it until
 * Redis is back, and `/healthz` says why.
 */
export class QueueUnavailableError extends GatewayError {
  static override readonly brand = GATEWAY_ERROR_CODES.queueUnavailable;
  constructor(message: string, options?: MultirankErrorOptions) {
    super(GATEWAY_ERROR_CODES.queueUnavailable, message, 503, options);
  }
}
