import { describe, expect, it } from "vitest";
import { parseTextEvent } from "../../src/index.js";
import { cleanUpRunners, example, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe("stream()", () => {
  it("yields rank 0's items in order, then the result", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const seen: unknown[] = [];
    for await (const item of runner.stream({ op: "stream", count: 5, result: { final: true } })) seen.push(item);
    expect(seen).toEqual([...Array.from({ length: 5 }, (_, i) => ({ i, rank: 0 })), { final: true }]);
  });

  it("yields ready-to-send text events with asTextEvents, whether the rank or the runner formats them", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    for (const text of [true, false]) {
      const events: Buffer[] = [];
      for await (const event of runner.stream({ op: "stream", count: 3, text }, { asTextEvents: true })) events.push(event);
      expect(events).toHaveLength(4);
      for (const event of events) {
        expect(Buffer.isBuffer(event)).toBe(true);
        expect(event.toString()).toMatch(/^data: \{.*\}\n\n$/);
      }
      expect(parseTextEvent(events[1]!)).toEqual({ i: 1, rank: 0 });
      expect(parseTextEvent(events[3]!)).toEqual({ count: 3 });
    }
  });

  it("keeps the order of batched items, encoded images and progress", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    const seen: Array<{ n: number; image?: { content_type: string } }> = [];
    const progress: unknown[] = [];
    for await (const item of runner.stream<(typeof seen)[number]>({ op: "mixed" }, { onProgress: (p) => progress.push(p) })) seen.push(item);
    expect(seen.map((item) => item.n)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(seen[2]!.image!.content_type).toBe("image/jpeg");
    expect(progress).toEqual([{ after: 3 }]);
  });

  it("keeps the order of images that encode in parallel, the slow before the fast, and of items between them", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await runner.start();
    const seen: Array<{ n: number; image?: { width: number } }> = [];
    for await (const item of runner.stream<(typeof seen)[number]>({ op: "images", count: 9 })) seen.push(item);
    expect(seen.map((item) => item.n)).toEqual([0, 1, 2, 2.5, 3, 4, 5, 5.5, 6, 7, 8, 8.5, 9]);
    expect(seen.filter((item) => item.image).map((item) => item.image!.width)).toEqual([768, 4, 768, 4, 768, 4, 768, 4, 768]);
  });

  it("delivers 10,000 events, all of them, in order", async () => {
    const runner = makeRunner({ worker: fixture("many-events"), worldSize: 2 });
    await runner.start();
    let expected = 0;
    let result: unknown;
    for await (const item of runner.stream<{ i?: number; count?: number }>({ count: 10_000 })) {
      if (item.i === undefined) result = item;
      else expect(item.i).toBe(expected++);
    }
    expect(expected).toBe(10_000);
    expect(result).toEqual({ count: 10_000 });
  });

  it("streams 512x512 JPEG frames encoded in the rank and returns the final image", async () => {
    const runner = makeRunner({ worker: example("image-stream"), worldSize: 2 });
    await runner.start();
    const frames: Array<{ image: { content_type: string; width: number; height: number; data: Buffer }; step?: number }> = [];
    for await (const item of runner.stream<(typeof frames)[number]>({ steps: 3, size: 512 })) frames.push(item);
    expect(frames).toHaveLength(3);
    for (const frame of frames) {
      expect(frame.image.content_type).toBe("image/jpeg");
      expect(frame.image.width).toBe(512);
      expect(frame.image.height).toBe(512);
      expect([...frame.image.data.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    }
    // Final result at quality 95 is larger than the quality-60 previews of a similar picture.
    expect(frames[2]!.image.data.length).toBeGreaterThan(frames[1]!.image.data.length);

    const events: string[] = [];
    for await (const event of runner.stream({ steps: 2, size: 64 }, { asTextEvents: true })) events.push(event.toString());
    const last = parseTextEvent(Buffer.from(events.at(-1)!)) as { image: { url: string; content_type: string } };
    expect(last.image.content_type).toBe("image/jpeg");
    expect(last.image.url).toMatch(/^data:image\/jpeg;base64,\/9j\//);
  });

  it("fails the stream with addStreamingError's error, naming the rank", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const seen: unknown[] = [];
    const error = await (async () => {
      for await (const item of runner.stream({ op: "streamError", after: 2 })) seen.push(item);
    })().catch((e: unknown) => e);
    expect(seen).toHaveLength(2);
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 0, remoteName: "RangeError" });
    expect(await runner.invoke({ op: "echo", value: 1 })).toBe(1);
  });
});
