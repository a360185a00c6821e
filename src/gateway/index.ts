/**
 * The serverless gateway: fal's and Runpod's HTTP protocols over runner
 * pools. Re-exports only.
 */
export { defineApp, resolveApp, type AppAttachment, type AppDefinition, type AppOptions, type HostInfo, type ResolvedApp, type RetryPolicy, type RetryReason } from "./app.js";
export { defineGatewayConfig, loadGatewayConfig, type GatewayConfig } from "./config.js";
export { exampleApps } from "./example-apps.js";
export {
  AppNotFoundError,
  BadRequestError,
  ConfigError,
  ConflictError,
  ForbiddenError,
  GATEWAY_ERROR_CODES,
  GatewayError,
  JobNotFoundError,
  QueueFullError,
  QueueUnavailableError,
  ShuttingDownError,
  UnauthorizedError,
} from "./errors.js";
export type { GatewayOptions, UpdateChange } from "./options.js";
export type { Job, JobError, JobErrorType, JobLog, JobPriority, JobStatus } from "./job.js";
export { MemoryJobQueue, type JobQueue } from "./job-queue.js";
export { isMachineType, parseMachineType, type MachineSpec, type MachineType } from "./machine-types.js";
export type { AttachStatus, PoolCounts, PoolRunner, RunnerFactory, RunnerLease, RunnerPool } from "./runner-pool.js";
export type { WebhookOptions } from "./webhook.js";
