import { containsRawImage, encodeImagesIn, type ImageFormat } from "../codec/images.js";
import type { Codec } from "../codec/packer.js";
import { formatTextEvent } from "../codec/text-events.js";
import { AbortError, MessageTooLargeError } from "../errors.js";
import type { RankMessage, StreamItem } from "../transport/messages.js";
import { deferred, type Deferred } from "../util/deferred.js";
import { walkData } from "../util/walk-data.js";

/** Items per message at most; a burst of small events travels in few messages. */
export const MAX_BATCH = 256;
/** Images a request may have encoding ahead of their turn to be sent. */
export const MAX_EARLY_ENCODES = 4;
/** Items holding more binary than this go alone, so batches stay small. */
export const LARGE_ITEM_BYTES = 64 * 1024;

/** How one request's stream is set up. */
export interface StreamOutboxOptions {
  /** The request's id. */
  id: number;
  /** The request's signal: once it aborts, nothing more is sent and sends waiting for credit reject with its reason. */
  signal: AbortSignal;
  /** Bytes of streamed results the request may send before the runner's first credit. */
  window: number;
  /** Largest message, bytes: a batch over it is split, an item over it alone fails the stream. */
  maxMessageBytes: number;
  /**
   * The request's `asTextEvents`: `true` sends every result as a ready
   * Server-Sent Event, `false` every result as its value, `undefined` each as
   * its `addStreamingResult` call asked.
   */
  textEvents: boolean | undefined;
  /** Packs the messages (the control channel's codec). */
  codec: Codec;
  /** Hands one packed message to the control channel. */
  send(bytes: Buffer): Promise<void>;
}

/** One streamed result's options, defaults already filled in from the worker. */
export interface OutboxResultOptions {
  /** The worker asked for a text event (`addStreamingResult(x, { asTextEvent: true })`). */
  asTextEvent: boolean;
  /** Quality for raw images in the result. */
  quality: number;
  /** Encoding for raw images in the result. */
  imageFormat: ImageFormat;
}

/**
 * The outgoing stream of one request on rank 0: its results, progress and
 * item errors, sent in the order they were added.
 *
 * - Ready results (tokens, small JSON) wait in an outbox for the rest of the
 *   tick and leave together, at most {@link MAX_BATCH} to a message.
 * - Results with raw images are encoded here; a few start encoding at once
 *   ({@link MAX_EARLY_ENCODES}), but they are sent in their turn.
 * - Flow control is a credit window over the control channel: the request
 *   may have `window` bytes of results not yet taken by the runner's
 *   consumer; past it sends wait for the runner's `credit` message.
 *
 * The first failure (an item that cannot be encoded or packed) fails the
 * stream: later steps are skipped and {@link drain} throws it.
 */
export class StreamOutbox {
  readonly #options: StreamOutboxOptions;
  /** Every step of the stream, in order; `drain` waits for it. */
  #chain: Promise<void> = Promise.resolve();
  #failure: unknown = undefined;
  /** Ready items waiting to go out together (see #queue). */
  #outbox: StreamItem[] = [];
  #outboxSent: Deferred<void> | undefined;
  /** Images being encoded ahead of their turn. */
  #encoding = 0;
  #credit: number;
  /** Sends waiting for credit; woken by a credit, the signal, or the request's end. */
  #creditWaiters: Array<() => void> = [];
  #ended = false;

  constructor(options: StreamOutboxOptions) {
    this.#options = options;
    this.#credit = options.window;
    // However the request ends, nothing may stay parked waiting for credit.
    options.signal.addEventListener("abort", () => this.#wake(), { once: true });
  }

  /** The first error of the stream (encoding, packing, sending), if any. */
  get failure(): unknown {
    return this.#failure;
  }

  /**
   * Adds one streamed result. Resolves once it is handed to the control
   * channel; waits while the credit window is used up; rejects when the
   * request was cancelled or the stream failed.
   */
  addResult(result: unknown, options: OutboxResultOptions): Promise<void> {
    const image = containsRawImage(result);
    if (!image && !holdsLargeBinary(result)) {
      // The common case: no async work, so the item joins the outbox now and
      // leaves with whatever else this tick produced.
      let item: StreamItem;
      try {
        item = this.#item(result, options.asTextEvent);
      } catch (error) {
        this.#failure ??= error;
        const failed = Promise.reject(error);
        // Awaiting is optional: the request fails through drain() either way.
        failed.catch(() => {});
        return failed;
      }
      return this.#queue(item);
    }
    const encode = (): Promise<unknown> => (image ? encodeImagesIn(result, { quality: options.quality, format: options.imageFormat }) : Promise.resolve(result));
    // Up to a few images start encoding now, so frames a worker keeps in
    // flight encode in parallel and while earlier ones are sent; only sending
    // keeps the order. More than that wait for their turn in the chain.
    let early: Promise<unknown> | undefined;
    if (image && this.#encoding < MAX_EARLY_ENCODES && !this.#options.signal.aborted && this.#failure === undefined) {
      this.#encoding++;
      early = encode().finally(() => this.#encoding--);
      // Awaited by the step below; a failure surfaces there, in order.
      early.catch(() => {});
    }
    return this.enqueue(async () => {
      const data = await (early ?? encode());
      await this.#sendItems([this.#item(data, options.asTextEvent)]);
    });
  }

  /**
   * Runs `send` (a progress or item-error message) after everything already
   * on the stream, ready results in the outbox included.
   */
  enqueue(send: () => Promise<void>): Promise<void> {
    // Items already waiting in the outbox go first: the stream keeps its order.
    this.#flush();
    return this.#appendStep(send);
  }

  /** The runner's consumer took `bytes` of this request's results: that much more may go. */
  credit(bytes: number): void {
    if (!(bytes > 0)) return;
    this.#credit += bytes;
    this.#wake();
  }

  /**
   * Sends what the outbox holds and waits until every step of the stream has
   * run. Throws the stream's first failure.
   */
  async drain(): Promise<void> {
    this.#flush();
    await this.#chain;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** The request ended: sends still waiting for credit reject instead of waiting on. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /** The wire form of one result, as the request's `asTextEvents` (or else the worker) decided. */
  #item(value: unknown, asTextEvent: boolean): StreamItem {
    return (this.#options.textEvents ?? asTextEvent) ? { event: formatTextEvent(value) } : { data: value };
  }

  /** Adds a ready item to the outbox; a microtask later the whole outbox goes out in order. */
  #queue(item: StreamItem): Promise<void> {
    this.#outbox.push(item);
    if (!this.#outboxSent) {
      const sent = deferred<void>();
      sent.promise.catch(() => {});
      this.#outboxSent = sent;
      queueMicrotask(() => this.#flush());
    }
    return this.#outboxSent.promise;
  }

  /** Moves the outbox onto the chain (now, so later messages stay behind it). */
  #flush(): void {
    const sent = this.#outboxSent;
    if (!sent) return;
    const items = this.#outbox;
    this.#outbox = [];
    this.#outboxSent = undefined;
    this.#appendStep(async () => {
      for (let start = 0; start < items.length; start += MAX_BATCH) await this.#sendItems(items.slice(start, start + MAX_BATCH));
    }).then(
      () => sent.resolve(),
      (error: unknown) => sent.reject(error),
    );
  }

  /**
   * Runs `work` after everything already on the chain, unless the request was
   * cancelled or the stream failed; a failure fails the stream.
   */
  #appendStep(work: () => Promise<void>): Promise<void> {
    const step = this.#chain.then(async () => {
      if (this.#options.signal.aborted || this.#failure !== undefined) return;
      try {
        await work();
      } catch (error) {
        this.#failure ??= error;
        throw error;
      }
    });
    this.#chain = step.catch(() => {});
    return step;
  }

  /**
   * Sends items in one message, halving the batch when it is over the size
   * limit. Waits for the credit window first: a consumer that does not keep
   * up makes this (and so `addStreamingResult`) wait.
   */
  async #sendItems(items: StreamItem[]): Promise<void> {
    const { id, maxMessageBytes } = this.#options;
    const message: RankMessage = { t: "items", id, items };
    let bytes: Buffer;
    try {
      bytes = this.#options.codec.pack(message, `streaming results of request ${id}`, maxMessageBytes);
    } catch (error) {
      if (!(error instanceof MessageTooLargeError) || items.length === 1) throw error;
      const half = Math.ceil(items.length / 2);
      await this.#sendItems(items.slice(0, half));
      await this.#sendItems(items.slice(half));
      return;
    }
    await this.#awaitCredit();
    this.#credit -= bytes.byteLength;
    await this.#options.send(bytes);
  }

  /**
   * Waits while the window has no room (one message may overshoot it, so an
   * item larger than the window still goes). Rejects once the request was
   * cancelled or has ended.
   */
  async #awaitCredit(): Promise<void> {
    const { signal, id } = this.#options;
    while (this.#credit <= 0) {
      if (signal.aborted) throw signal.reason;
      if (this.#ended) throw new AbortError(`request ${id} has ended`);
      await new Promise<void>((resolve) => this.#creditWaiters.push(resolve));
    }
  }

  /** Wakes every send waiting for credit (they check again). */
  #wake(): void {
    for (const resolve of this.#creditWaiters.splice(0)) resolve();
  }
}

/** Whether `value` holds typed-array or Buffer data over LARGE_ITEM_BYTES (a few levels deep). */
function holdsLargeBinary(value: unknown): boolean {
  return walkData(value, (v) => (ArrayBuffer.isView(v) && v.byteLength > LARGE_ITEM_BYTES ? "stop" : undefined), 4);
}
