/** Webhook delivery: POST a finished job's result, retried with backoff. */
import type { Logger } from "pino";

/** Options of {@link WebhookSender}. */
export interface WebhookOptions {
  /** Attempts in all, the first included. @default 5 */
  attempts?: number;
  /** Wait before the first retry, ms; doubles each time. @default 1000 */
  baseDelayMs?: number;
  /** Per-attempt time limit, ms. @default 10000 */
  timeoutMs?: number;
}

const DEFAULTS = Object.freeze({ attempts: 5, baseDelayMs: 1000, timeoutMs: 10_000 });

/** Sends webhooks; `close()` waits for deliveries in flight (retries cut short). */
export class WebhookSender {
  readonly #options: Required<WebhookOptions>;
  readonly #log: Logger;
  readonly #inFlight = new Set<Promise<boolean>>();
  readonly #closing = new AbortController();

  constructor(options: WebhookOptions, logger: Logger) {
    this.#options = { ...DEFAULTS, ...options };
    this.#log = logger.child({ component: "webhook" });
  }

  /** POSTs `body` (JSON text) to `url` until a 2xx answer or the attempts run out. Resolves to whether it was delivered. */
  send(url: string, body: string, requestId: string): Promise<boolean> {
    const delivery = this.#deliver(url, body, requestId).finally(() => this.#inFlight.delete(delivery));
    this.#inFlight.add(delivery);
    return delivery;
  }

  /** Waits up to `graceMs` for deliveries, then abandons their retries. */
  async close(graceMs = 5000): Promise<void> {
    const all = Promise.all(this.#inFlight);
    const timer = setTimeout(() => this.#closing.abort(), graceMs);
    await all;
    clearTimeout(timer);
  }

  async #deliver(url: string, body: string, requestId: string): Promise<boolean> {
    const { attempts, baseDelayMs, timeoutMs } = this.#options;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let failure: string;
      try {
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", "x-fal-webhook-request-id": requestId },
          body,
          signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#closing.signal]),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) {
          this.#log.info({ requestId, url, attempt }, "webhook delivered");
          return true;
        }
        failure = `HTTP ${response.status}`;
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      this.#log.warn({ requestId, url, attempt, failure }, "webhook delivery failed");
      if (attempt === attempts || this.#closing.signal.aborted) break;
      await sleep(baseDelayMs * 2 ** (attempt - 1), this.#closing.signal);
    }
    this.#log.error({ requestId, url }, "webhook not delivered; giving up");
    return false;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
