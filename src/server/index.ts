/**
 * The server, put together: the gateway (fal's and Runpod's protocols over
 * runner pools) with functions and deployments on the same HTTP server. What
 * `multirank/gateway` resolves to. Re-exports only.
 */
export * from "../gateway/index.js";
export { createGateway, type Gateway } from "./gateway.js";
