/**
 * Prometheus metrics (prom-client, on a registry of the gateway's own, so two
 * gateways in one process do not collide): queue depth, runners by state,
 * request latency, HTTP latency.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Dispatcher } from "./dispatcher.js";
import type { Job } from "./job.js";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The gateway's metrics. */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<"app" | "status">;
  readonly #latency: Histogram<"app" | "status">;
  readonly #queueWait: Histogram<"app">;
  readonly #http: Histogram<"method" | "route" | "status_code">;

  /** @param dispatchers read at each scrape for queue depth and runner counts. */
  constructor(dispatchers: () => Iterable<Dispatcher>, options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "multirank_gateway_queue_depth",
      help: "Requests waiting for a runner",
      labelNames: ["app"],
      registers,
      collect() {
        for (const d of dispatchers()) this.set({ app: d.app.name }, d.queueLength);
      },
    });
    new Gauge({
      name: "multirank_gateway_requests_running",
      help: "Requests running on a runner",
      labelNames: ["app"],
      registers,
      collect() {
        for (const d of dispatchers()) this.set({ app: d.app.name }, d.runningCount);
      },
    });
    new Gauge({
      name: "multirank_gateway_runners",
      help: "Runners by state",
      labelNames: ["app", "state"],
      registers,
      collect() {
        for (const d of dispatchers()) {
          for (const [state, count] of Object.entries(d.pool.counts())) this.set({ app: d.app.name, state }, count);
        }
      },
    });
    this.#requests = new Counter({ name: "multirank_gateway_requests_total", help: "Finished requests by final status", labelNames: ["app", "status"], registers });
    this.#latency = new Histogram({
      name: "multirank_gateway_request_duration_seconds",
      help: "Submission to finish, by final status",
      labelNames: ["app", "status"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#queueWait = new Histogram({ name: "multirank_gateway_queue_wait_seconds", help: "Submission to start on a runner", labelNames: ["app"], buckets: LATENCY_BUCKETS, registers });
    this.#http = new Histogram({
      name: "multirank_gateway_http_request_duration_seconds",
      help: "HTTP response time by route",
      labelNames: ["method", "route", "status_code"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
  }

  /** Records a finished job. */
  jobFinished(job: Job): void {
    const labels = { app: job.app, status: job.status };
    this.#requests.inc(labels);
    this.#latency.observe(labels, (Date.now() - job.createdAt) / 1000);
    if (job.attempts > 0) this.#queueWait.observe({ app: job.app }, job.delayTimeMs / 1000);
  }

  /** Records one HTTP response. */
  httpResponse(method: string, route: string, statusCode: number, seconds: number): void {
    this.#http.observe({ method, route, status_code: String(statusCode) }, seconds);
  }
}
