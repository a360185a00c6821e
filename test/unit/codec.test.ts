import { describe, expect, it } from "vitest";
import { Codec, PackedReference, pack, unpack } from "../../src/codec/packer.js";
import { encodeImage, encodeImagesIn, isEncodedImage, isRawImage } from "../../src/codec/images.js";
import { formatTextEvent, parseTextEvent, toJsonSafe } from "../../src/codec/text-events.js";
import { decodeValue, encodeValue } from "../../src/collectives/wire.js";
import { MessageTooLargeError, SerializationError } from "../../src/errors.js";

describe("pack/unpack", () => {
  it("round-trips typed arrays, Buffers, dates and bigints as the same types", () => {
    const value = { f64: new Float64Array([Math.PI]), u8: new Uint8Array([9]), buf: Buffer.from("x"), when: new Date(5), big: 2n ** 70n };
    const back = unpack<typeof value>(pack(value));
    expect(back.f64).toBeInstanceOf(Float64Array);
    expect(back.u8).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(back.buf)).toBe(true);
    expect(back.when).toEqual(new Date(5));
    expect(back.big).toBe(2n ** 70n);
  });

  it("refuses functions and symbols, naming what was packed", () => {
    expect(() => pack({ handler: function onData() {} }, "payload")).toThrow(SerializationError);
    expect(() => pack({ handler: function onData() {} }, "payload")).toThrow(/payload: cannot pack a function "onData"/);
    expect(() => pack({ s: Symbol("x") }, "payload")).toThrow(/payload cannot be packed/);
  });

  it("refuses a message over the limit with its size and the limit", () => {
    try {
      pack(Buffer.alloc(2000), "payload", 1024);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(MessageTooLargeError);
      expect(error).toMatchObject({ code: "MULTIRANK_ERR_MESSAGE_TOO_LARGE", limit: 1024 });
      expect((error as MessageTooLargeError).size).toBeGreaterThan(2000);
      expect((error as Error).message).toMatch(/^payload is \d+ bytes, over the limit of 1024 bytes/);
    }
  });

  it("turns corrupt bytes into a SerializationError", () => {
    expect(() => unpack(Buffer.from([0x92, 0x01]))).toThrow(SerializationError);
  });
});

// What crosses between runner and ranks (and in collectives' broadcast,
// allGather, send) unchanged, what changes, and what is refused: the table in
// the README's "Payloads" section. Both codecs are checked against each row.
const roundTrips: [string, (value: unknown) => unknown][] = [
  ["pack/unpack", (value) => unpack(pack(value))],
  ["collectives encodeValue/decodeValue", (value) => {
    const { meta, frame } = encodeValue(value, true);
    return decodeValue(meta, frame);
  }],
];

const cycle: Record<string, unknown> = {};
cycle.self = cycle;

class NamedRef extends PackedReference {
  constructor(readonly name: string) {
    super();
  }
  encode(): Uint8Array {
    return Buffer.from(this.name);
  }
}

describe("Codec instances", () => {
  it("resolve references only through the resolver they were given, one unpack at a time", () => {
    const rounds: string[][] = [];
    const owning = new Codec({
      references: {
        around(unpackOnce) {
          rounds.push([]);
          return unpackOnce();
        },
        resolve: (bytes) => {
          rounds.at(-1)!.push(Buffer.from(bytes).toString());
          return `value of ${Buffer.from(bytes).toString()}`;
        },
      },
    });
    const bytes = owning.pack({ a: new NamedRef("seg-1"), b: [new NamedRef("seg-2")] });
    expect(owning.unpack(bytes)).toEqual({ a: "value of seg-1", b: ["value of seg-2"] });
    expect(rounds).toEqual([["seg-1", "seg-2"]]);
  });

  it("refuse a reference when they cannot resolve it, and the plain codec is one of those", () => {
    const bytes = new Codec().pack({ a: new NamedRef("seg-1") });
    expect(() => unpack(bytes, "reply")).toThrow(SerializationError);
    expect(() => unpack(bytes, "reply")).toThrow(/reply could not be unpacked: a shared-memory reference/);
  });
});

describe.each(roundTrips)("what crosses %s", (_, roundTrip) => {
  it.each<[string, unknown]>([
    ["Map, keys of any type, nested", new Map<unknown, unknown>([["a", 1], [2, "b"], [{ k: 1 }, new Map([[1n, [2]]])]])],
    ["an empty Map", new Map()],
    ["plain objects (as plain objects, not Maps)", { a: 1, b: { c: [1, { d: "e" }] }, "1": "numeric key", "": "empty key" }],
    ["Set", new Set([1, "a", { b: 2 }])],
    ["Date, invalid Date", [new Date(5), new Date(Number.NaN)]],
    ["bigint, within and beyond 64 bits", [5n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 70n, -(2n ** 300n)]],
    ["undefined in arrays and objects", [1, undefined, { a: undefined, b: 1 }]],
    ["NaN, Infinity, -Infinity, large integers", [Number.NaN, Infinity, -Infinity, 2 ** 53 - 1, -(2 ** 40), 0.1]],
    ["nested typed arrays (same class), -0 inside a Float64Array", { a: [new Float32Array([1, 2])], b: new BigInt64Array([1n]), c: new Float64Array([-0]) }],
    ["Buffer, ArrayBuffer, DataView", [Buffer.from("x"), new Uint8Array([1, 2, 3]).buffer, new DataView(new Uint8Array([4, 5]).buffer)]],
    ["RegExp", /ab+/gi],
    ["strings, booleans, null", ["héllo", true, null]],
  ])("%s: unchanged", (_name, value) => {
    const back = roundTrip(value);
    expect(back).toStrictEqual(value);
    expect(Object.is(back, value)).toBe(false);
  });

  it("plain objects come back with Object.prototype, Maps as Maps", () => {
    const back = roundTrip({ o: { a: 1 }, m: new Map([["a", 1]]) }) as { o: object; m: unknown };
    expect(Object.getPrototypeOf(back.o)).toBe(Object.prototype);
    expect(back.m).toBeInstanceOf(Map);
  });

  it("changes what the README says it changes", () => {
    expect(Object.is(roundTrip(-0), 0)).toBe(true); // msgpack has no integer -0
    const error = roundTrip(Object.assign(new TypeError("boom", { cause: new Error("why") }), { code: "E_X" })) as TypeError;
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toMatchObject({ message: "boom", cause: { message: "why" } });
    expect((error as { code?: string }).code).toBeUndefined(); // own fields and the stack stay behind
    const instance = roundTrip(new (class Point { x = 1 })());
    expect(Object.getPrototypeOf(instance)).toBe(Object.prototype);
    expect(instance).toEqual({ x: 1 });
    expect(Object.getPrototypeOf(roundTrip(Object.assign(Object.create(null), { a: 1 })))).toBe(Object.prototype);
  });

  it.each<[string, unknown]>([
    ["a function", { f: function handler() {} }],
    ["a symbol", { s: Symbol("x") }],
    ["a cycle", cycle],
  ])("refuses %s with a SerializationError", (_name, value) => {
    expect(() => roundTrip(value)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_SERIALIZATION" }));
  });
});

describe("images", () => {
  const raw = { width: 4, height: 2, channels: 3 as const, pixels: new Uint8Array(4 * 2 * 3).fill(200) };

  it("recognises raw and encoded images by shape", () => {
    expect(isRawImage(raw)).toBe(true);
    expect(isRawImage({ ...raw, width: 5 })).toBe(false);
    expect(isEncodedImage({ content_type: "image/jpeg", data: new Uint8Array(1) })).toBe(true);
    expect(isEncodedImage({ content_type: "text/plain", data: new Uint8Array(1) })).toBe(false);
  });

  it("encodes JPEG, PNG and WebP with the right content type and magic bytes", async () => {
    const jpeg = await encodeImage(raw, { quality: 60 });
    expect(jpeg).toMatchObject({ content_type: "image/jpeg", width: 4, height: 2 });
    expect([...jpeg.data.subarray(0, 2)]).toEqual([0xff, 0xd8]);
    const png = await encodeImage(raw, { quality: 60, format: "png" });
    expect(png.content_type).toBe("image/png");
    expect(Buffer.from(png.data.subarray(1, 4)).toString()).toBe("PNG");
    const webp = await encodeImage(raw, { quality: 60, format: "webp" });
    expect(Buffer.from(webp.data.subarray(8, 12)).toString()).toBe("WEBP");
  });

  it("higher quality gives more bytes on a detailed picture", async () => {
    const pixels = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7919) % 251);
    const image = { width: 64, height: 64, channels: 3 as const, pixels };
    const low = await encodeImage(image, { quality: 60 });
    const high = await encodeImage(image, { quality: 95 });
    expect(high.data.length).toBeGreaterThan(low.data.length);
  });

  it("replaces images deep in a value and leaves values without images untouched", async () => {
    const plain = { a: [1, { b: "c" }], buf: Buffer.from("x") };
    expect(await encodeImagesIn(plain, { quality: 60 })).toBe(plain);
    const withImages = { frames: [raw, { nested: raw }], caption: "hi" };
    const out = (await encodeImagesIn(withImages, { quality: 60 })) as { frames: [{ content_type: string }, { nested: { content_type: string } }]; caption: string };
    expect(out.frames[0].content_type).toBe("image/jpeg");
    expect(out.frames[1].nested.content_type).toBe("image/jpeg");
    expect(out.caption).toBe("hi");
    expect(withImages.frames[0]).toBe(raw); // input not mutated
  });

  it("rejects bad geometry with a ValidationError", async () => {
    await expect(encodeImage({ width: 0, height: 0, channels: 3, pixels: new Uint8Array(0) }, { quality: 60 })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
  });
});

describe("text events", () => {
  it("formats data: <json> events and parses them back", () => {
    const event = formatTextEvent({ token: "hi", n: 1 });
    expect(event.toString()).toBe('data: {"token":"hi","n":1}\n\n');
    expect(parseTextEvent(event)).toEqual({ token: "hi", n: 1 });
  });

  it("turns encoded images into fal's image shape with a data URL, and binary into base64", () => {
    const safe = toJsonSafe({ image: { content_type: "image/jpeg", width: 1, height: 1, data: Buffer.from([0xff, 0xd8]) }, raw: Buffer.from("hi"), f: new Float32Array([1.5]), big: 3n });
    expect(safe).toEqual({ image: { content_type: "image/jpeg", width: 1, height: 1, url: "data:image/jpeg;base64,/9g=" }, raw: "aGk=", f: [1.5], big: "3" });
  });
});
