import { describe, expect, it } from "vitest";
import { plainCodec, unpack } from "../../src/codec/packer.js";
import type { RankMessage, StreamItem } from "../../src/transport/messages.js";
import { LARGE_ITEM_BYTES, MAX_BATCH, StreamOutbox, type OutboxResultOptions, type StreamOutboxOptions } from "../../src/worker/stream-outbox.js";

const plain: OutboxResultOptions = { asTextEvent: false, quality: 60, imageFormat: "jpeg" };
const asText: OutboxResultOptions = { ...plain, asTextEvent: true };

/** An outbox whose messages land in `sent`, unpacked; `gate` (when given) holds each send until released. */
function outbox(options: Partial<StreamOutboxOptions> = {}) {
  const controller = new AbortController();
  const sent: Array<Extract<RankMessage, { t: "items" }>> = [];
  const stream = new StreamOutbox({
    id: 7,
    signal: controller.signal,
    window: 1024 * 1024,
    maxMessageBytes: 1024 * 1024,
    textEvents: undefined,
    codec: plainCodec,
    send: async (bytes) => {
      sent.push(unpack(bytes) as Extract<RankMessage, { t: "items" }>);
    },
    ...options,
  });
  return { stream, sent, controller };
}

function text(item: StreamItem): string {
  if (!("event" in item)) throw new Error(`expected an event, got ${JSON.stringify(item)}`);
  return Buffer.from(item.event).toString("utf8");
}

describe("StreamOutbox", () => {
  it("sends the ready results of one tick in one message, at most MAX_BATCH to a message", async () => {
    const { stream, sent } = outbox();
    const count = MAX_BATCH + 10;
    await Promise.all(Array.from({ length: count }, (_, i) => stream.addResult({ i }, plain)));
    expect(sent.map((m) => m.items.length)).toEqual([MAX_BATCH, 10]);
    expect(sent.every((m) => m.t === "items" && m.id === 7)).toBe(true);
    expect(sent.flatMap((m) => m.items)).toEqual(Array.from({ length: count }, (_, i) => ({ data: { i } })));
  });

  it("keeps order: a progress step added after results goes after them, and results holding large binary go alone", async () => {
    const order: string[] = [];
    const { stream, sent } = outbox({
      send: async (bytes) => {
        const message = unpack(bytes) as Extract<RankMessage, { t: "items" }>;
        sent.push(message);
        order.push(`items:${message.items.length}`);
      },
    });
    const a = stream.addResult("a", plain);
    const big = stream.addResult({ pixels: new Uint8Array(LARGE_ITEM_BYTES + 1) }, plain);
    const progress = stream.enqueue(async () => void order.push("progress"));
    const b = stream.addResult("b", plain);
    await Promise.all([a, big, progress, b]);
    await stream.drain();
    expect(order).toEqual(["items:1", "items:1", "progress", "items:1"]);
    expect(sent[0]!.items).toEqual([{ data: "a" }]);
    expect((sent[1]!.items[0] as { data: { pixels: Uint8Array } }).data.pixels.byteLength).toBe(LARGE_ITEM_BYTES + 1);
    expect(sent[2]!.items).toEqual([{ data: "b" }]);
  });

  it("splits a batch over the message limit; an item over it alone fails the stream", async () => {
    const { stream, sent } = outbox({ maxMessageBytes: 4096 });
    await Promise.all(Array.from({ length: 8 }, (_, i) => stream.addResult("x".repeat(1000) + i, plain)));
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.flatMap((m) => m.items)).toHaveLength(8);
    const tooLarge = stream.addResult("y".repeat(10_000), plain);
    await expect(tooLarge).rejects.toMatchObject({ code: "MULTIRANK_ERR_MESSAGE_TOO_LARGE" });
    // Later items are dropped, and the request learns of the failure from drain().
    await stream.addResult("after", plain).catch(() => {});
    await expect(stream.drain()).rejects.toMatchObject({ code: "MULTIRANK_ERR_MESSAGE_TOO_LARGE" });
    expect(sent.flatMap((m) => m.items)).toHaveLength(8);
  });

  it("waits for credit once the window is used up, and goes on when credit comes", async () => {
    const { stream, sent } = outbox({ window: 1 });
    await stream.addResult("first", plain); // the window had room: it may overshoot by one message
    let secondSent = false;
    const second = stream.addResult("second", plain).then(() => (secondSent = true));
    // A macrotask later every microtask of the send has run: it is parked on the credit.
    await new Promise((resolve) => setImmediate(resolve));
    expect(secondSent).toBe(false);
    expect(sent).toHaveLength(1);
    stream.credit(0); // nothing
    stream.credit(1024);
    await second;
    expect(sent.flatMap((m) => m.items)).toEqual([{ data: "first" }, { data: "second" }]);
  });

  it("a send waiting for credit rejects when the request is cancelled, or ends", async () => {
    const cancelled = outbox({ window: 1 });
    await cancelled.stream.addResult(1, plain);
    const waiting = cancelled.stream.addResult(2, plain);
    await new Promise((resolve) => setImmediate(resolve));
    const reason = new Error("cancelled by the runner");
    cancelled.controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);

    const ended = outbox({ window: 1 });
    await ended.stream.addResult(1, plain);
    const waiting2 = ended.stream.addResult(2, plain);
    await new Promise((resolve) => setImmediate(resolve));
    ended.stream.end();
    await expect(waiting2).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
  });

  it("without the request's textEvents, each result is sent as its addStreamingResult asked", async () => {
    const { stream, sent } = outbox({ textEvents: undefined });
    await Promise.all([stream.addResult({ n: 1 }, plain), stream.addResult({ n: 2 }, asText)]);
    const [first, second] = sent.flatMap((m) => m.items);
    expect(first).toEqual({ data: { n: 1 } });
    expect(text(second!)).toBe('data: {"n":2}\n\n');
  });

  it("with textEvents true, every result is a text event formatted here, large binary ones too", async () => {
    const { stream, sent } = outbox({ textEvents: true });
    const bytes = new Uint8Array(LARGE_ITEM_BYTES + 3).fill(1);
    await Promise.all([stream.addResult({ n: 1 }, plain), stream.addResult({ n: 2 }, asText), stream.addResult({ bytes }, plain)]);
    const items = sent.flatMap((m) => m.items);
    expect(items.map((item) => "event" in item)).toEqual([true, true, true]);
    expect(text(items[0]!)).toBe('data: {"n":1}\n\n');
    expect(text(items[1]!)).toBe('data: {"n":2}\n\n');
    expect(text(items[2]!)).toBe(`data: ${JSON.stringify({ bytes: Buffer.from(bytes).toString("base64") })}\n\n`);
  });

  it("with textEvents false, every result is sent as its value, even one the worker asked to send as a text event", async () => {
    const { stream, sent } = outbox({ textEvents: false });
    const when = new Date(0);
    await Promise.all([stream.addResult({ n: 1 }, plain), stream.addResult({ n: 2, when }, asText)]);
    // Not formatted and parsed back: the Date stays a Date (a text event would make it a string).
    expect(sent.flatMap((m) => m.items)).toEqual([{ data: { n: 1 } }, { data: { n: 2, when } }]);
  });

  it("drops what is added after the request was cancelled", async () => {
    const { stream, sent, controller } = outbox();
    controller.abort(new Error("gone"));
    await stream.addResult("late", plain);
    await stream.drain();
    expect(sent).toEqual([]);
  });
});
