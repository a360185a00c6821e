/**
 * What gateways on one Redis tell each other, on one pub/sub channel
 * (`<prefix>:events`): a job's status changed, it logged a line, a chunk
 * arrived or was taken, or someone asked to cancel it. Status messages carry
 * no state (a gateway reads the record): a message lost while a gateway was
 * reconnecting costs a moment's delay, since it re-reads what it watches.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { JobLog } from "../gateway/job.js";

/** One message between gateways. */
export type BusMessage =
  | { kind: "status"; id: string }
  | { kind: "log"; id: string; log: JobLog; seq: number }
  | { kind: "chunk"; id: string }
  | { kind: "taken"; id: string }
  | { kind: "cancel"; id: string };

type Envelope = BusMessage & { from: string };

/** Sends and receives {@link BusMessage}s. */
export class EventBus {
  /** This gateway, so it can ignore its own messages. */
  readonly gatewayId = randomUUID();
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #log: Logger;
  #handler: ((message: BusMessage) => void) | undefined;
  #onResubscribed: (() => void) | undefined;

  constructor(publisher: Redis, subscriber: Redis, prefix: string, logger: Logger) {
    this.#publisher = publisher;
    this.#subscriber = subscriber;
    this.#channel = `${prefix}:events`;
    this.#log = logger.child({ component: "queue-events" });
  }

  /** Subscribes; `handler` gets every other gateway's messages, `onResubscribed` runs after a reconnect. */
  async start(handler: (message: BusMessage) => void, onResubscribed: () => void): Promise<void> {
    this.#handler = handler;
    this.#onResubscribed = onResubscribed;
    this.#subscriber.on("message", (channel: string, text: string) => {
      if (channel !== this.#channel) return;
      let envelope: Envelope;
      try {
        envelope = JSON.parse(text) as Envelope;
      } catch {
        return;
      }
      if (envelope.from === this.gatewayId) return;
      try {
        this.#handler?.(envelope);
      } catch (error) {
        this.#log.warn({ err: error, kind: envelope.kind, job: envelope.id }, "handling a queue event failed");
      }
    });
    // ioredis subscribes again by itself after a reconnect; what was sent meanwhile is gone, so watchers re-read.
    let first = true;
    this.#subscriber.on("ready", () => {
      if (first) return;
      this.#onResubscribed?.();
    });
    await this.#subscriber.subscribe(this.#channel);
    first = false;
  }

  /** Publishes; a failure (Redis away) is logged, not thrown: readers re-read records. */
  publish(message: BusMessage): void {
    this.#publisher.publish(this.#channel, JSON.stringify({ ...message, from: this.gatewayId })).catch((error: unknown) => {
      this.#log.debug({ err: error, kind: message.kind }, "could not publish a queue event");
    });
  }
}
