/** Webhook delivery: POST a finished job's result, retried with backoff. */
import type { Logger } from "pino";
import { AbortError, ValidationError } from "../errors.js";
import { durationToMs, MAX_DURATION_MS, setLongTimeout } from "../util/timers.js";
import { redactUrl } from "./redact.js";

/** Options of {@link WebhookSender}. Times are at most 365 days (`MAX_DURATION_SECONDS`). */
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

  /** @throws {ValidationError} naming the field of `options` that is wrong. */
  constructor(options: WebhookOptions, logger: Logger) {
    this.#options = { ...DEFAULTS, ...stripUndefined(options) };
    const { attempts, baseDelayMs, timeoutMs } = this.#options;
    if (!Number.isInteger(attempts) || attempts < 1) throw new ValidationError(`options.webhooks.attempts must be a positive integer, got ${String(attempts)}`);
    durationToMs(baseDelayMs, "options.webhooks.baseDelayMs", { unit: "ms", allowZero: true });
    durationToMs(timeoutMs, "options.webhooks.timeoutMs", { unit: "ms" });
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
    const timer = setLongTimeout(graceMs, () => this.#closing.abort(new AbortError("the gateway closed before the webhook was delivered")));
    await all;
    timer.cancel();
  }

  async #deliver(url: string, body: string, requestId: string): Promise<boolean> {
    const { attempts, baseDelayMs, timeoutMs } = this.#options;
    // The URL is the caller's: a token in its query must not reach the log.
    const shownUrl = redactUrl(url);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let failure: string;
      // Not AbortSignal.timeout: it is a native timer, which fires at once above 2^31-1 ms.
      const attemptTimeout = new AbortController();
      const timer = setLongTimeout(timeoutMs, () => attemptTimeout.abort(new AbortError(`no answer within ${timeoutMs} ms`))).unref();
      try {
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", "x-fal-webhook-request-id": requestId },
          body,
          signal: AbortSignal.any([attemptTimeout.signal, this.#closing.signal]),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) {
          this.#log.info({ requestId, url: shownUrl, attempt }, "webhook delivered");
          return true;
        }
        failure = `HTTP ${response.status}`;
      } catch (error) {
        failure = redactUrl(error instanceof Error ? error.message : String(error));
      } finally {
        timer.cancel();
      }
      this.#log.warn({ requestId, url: shownUrl, attempt, failure }, "webhook delivery failed");
      if (attempt === attempts || this.#closing.signal.aborted) break;
      await sleep(Math.min(baseDelayMs * 2 ** (attempt - 1), MAX_DURATION_MS), this.#closing.signal);
    }
    this.#log.error({ requestId, url: shownUrl }, "webhook not delivered; giving up");
    return false;
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // Doubling backoff passes 2^31-1 ms after a few dozen attempts.
    const timer = setLongTimeout(ms, done);
    function done(): void {
      timer.cancel();
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
