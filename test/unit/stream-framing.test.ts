import { describe, expect, it } from "vitest";
import { bodyLength, encodeMessage, encodePrefix, MessageDecoder } from "../../src/transport/stream-framing.js";

function decoder(maxBytes?: number): { messages: string[][]; malformed: number; why: string[]; push(b: Buffer): void } {
  const out = { messages: [] as string[][], malformed: 0, why: [] as string[], push: (b: Buffer) => d.push(b) };
  const d = new MessageDecoder(
    (frames) => out.messages.push(frames.map((f) => f.toString())),
    (why) => {
      out.malformed++;
      out.why.push(why);
    },
    maxBytes,
  );
  return out;
}

const msg = (...frames: string[]): Buffer => encodeMessage(frames.map((f) => Buffer.from(f)));

describe("stream framing", () => {
  it("round-trips messages of several frames, empty frames and no frames", () => {
    const d = decoder();
    d.push(Buffer.concat([msg("header", "payload"), msg("", "x", ""), msg()]));
    expect(d.messages).toEqual([["header", "payload"], ["", "x", ""], []]);
    expect(d.malformed).toBe(0);
  });

  it("reassembles messages cut at every possible byte", () => {
    const stream = Buffer.concat([msg("alpha", "b".repeat(300)), msg("gamma")]);
    for (let cut = 1; cut < stream.byteLength; cut++) {
      const d = decoder();
      d.push(stream.subarray(0, cut));
      d.push(stream.subarray(cut));
      expect(d.messages, `cut at ${cut}`).toEqual([["alpha", "b".repeat(300)], ["gamma"]]);
    }
  });

  it("reassembles a message fed one byte at a time", () => {
    const d = decoder();
    for (const byte of msg("one", "two")) d.push(Buffer.from([byte]));
    expect(d.messages).toEqual([["one", "two"]]);
  });

  it("writes a prefix that matches the copied encoding", () => {
    const frames = [Buffer.from("head"), Buffer.alloc(70_000, 7)];
    const body = bodyLength(frames);
    expect(body).toBe(2 + 8 + 4 + 70_000);
    expect(Buffer.concat([encodePrefix(frames, body), ...frames])).toEqual(encodeMessage(frames));
  });

  it("reports a body whose frame table does not add up, and stops reading", () => {
    const d = decoder();
    const bad = Buffer.alloc(4 + 6);
    bad.writeUInt32LE(6, 0);
    bad.writeUInt16LE(1, 4);
    bad.writeUInt32LE(99, 6); // one frame of 99 bytes in a 6-byte body
    d.push(Buffer.concat([bad, msg("after")]));
    expect(d.malformed).toBe(1);
    expect(d.messages).toEqual([]);
  });

  it("refuses a message announced over the limit before allocating it, whole or cut", () => {
    const big = msg("x".repeat(100));
    for (const cut of [big.byteLength, 2]) {
      const d = decoder(50);
      d.push(big.subarray(0, cut));
      d.push(big.subarray(cut));
      expect(d.messages).toEqual([]);
      expect(d.why).toEqual([`a message of ${big.byteLength - 4} bytes is over the limit of 50`]);
    }
  });
});
