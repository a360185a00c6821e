/**
 * The GGUF writer and reader, and the tiny llama model on top: files parse
 * back to what was written (header, typed metadata, tensor infos, aligned
 * data), the model's bytes depend on the seed and nothing else, options are
 * checked, and the weights make printable ASCII the likely output.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decodeGguf, readF32Tensor } from "../../src/llm/gguf-reader.js";
import { GGML_TYPE_F32, type GgufValue } from "../../src/llm/gguf-types.js";
import { encodeGguf } from "../../src/llm/gguf-writer.js";
import {
  buildTinyLlamaModel,
  resolveTinyLlamaOptions,
  TINY_LLAMA_DEFAULTS,
  TINY_LLAMA_TOKENS,
  tinyLlamaPreference,
  writeTinyLlamaModel,
  type TinyLlamaOptions,
} from "../../src/llm/tiny-model.js";

const invalid = (message: string | RegExp) => expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringMatching(message) });
const value = (metadata: ReadonlyMap<string, GgufValue>, key: string) => metadata.get(key)?.value;

describe("encodeGguf and decodeGguf", () => {
  const metadata: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: "llama" },
    u8: { type: "uint8", value: 255 },
    i8: { type: "int8", value: -128 },
    u16: { type: "uint16", value: 65535 },
    i16: { type: "int16", value: -32768 },
    u32: { type: "uint32", value: 0xffffffff },
    i32: { type: "int32", value: -5 },
    f32: { type: "float32", value: 1.5 },
    f64: { type: "float64", value: Math.PI },
    b: { type: "bool", value: true },
    u64: { type: "uint64", value: 0xffffffffffffffffn },
    i64: { type: "int64", value: -(2n ** 63n) },
    unicode: { type: "string", value: "▁ héllo 🙂" },
    strings: { type: "array", itemType: "string", value: ["<s>", "", "▁"] },
    floats: { type: "array", itemType: "float32", value: [0, -1.25, 3] },
    ints: { type: "array", itemType: "int32", value: [1, -2, 3] },
    empty: { type: "array", itemType: "uint8", value: [] },
  };
  const a = Float32Array.from({ length: 3 * 5 }, (_, i) => i / 7);
  const b = Float32Array.of(1, -2, 3);

  it("reads back the header, every metadata type in order, and tensors at aligned offsets", () => {
    const bytes = encodeGguf({ metadata, tensors: [{ name: "a", dims: [3, 5], data: a }, { name: "b", dims: [3], data: b }] });
    expect(bytes.readUInt32LE(0)).toBe(0x46554747);
    expect(bytes.subarray(0, 4).toString("latin1")).toBe("GGUF");
    const file = decodeGguf(bytes);
    expect(file.version).toBe(3);
    expect([...file.metadata.keys()]).toEqual(Object.keys(metadata));
    expect(Object.fromEntries(file.metadata)).toEqual({ ...metadata, f32: { type: "float32", value: 1.5 } });
    expect(file.alignment).toBe(32);
    expect(file.dataOffset % 32).toBe(0);
    expect(file.tensors).toEqual([
      { name: "a", dims: [3, 5], type: GGML_TYPE_F32, offset: 0 },
      // 60 bytes of `a`, padded to 64.
      { name: "b", dims: [3], type: GGML_TYPE_F32, offset: 64 },
    ]);
    expect(readF32Tensor(bytes, file, "a")).toEqual(new Float32Array(a));
    expect(readF32Tensor(bytes, file, "b")).toEqual(b);
    expect(bytes.length).toBe(file.dataOffset + 64 + 32);
  });

  it("honours general.alignment", () => {
    const bytes = encodeGguf({
      metadata: { "general.alignment": { type: "uint32", value: 256 } },
      tensors: [{ name: "a", dims: [3], data: b }, { name: "b", dims: [3], data: b }],
    });
    const file = decodeGguf(bytes);
    expect(file.alignment).toBe(256);
    expect(file.dataOffset % 256).toBe(0);
    expect(file.tensors.map((t) => t.offset)).toEqual([0, 256]);
    expect(readF32Tensor(bytes, file, "b")).toEqual(b);
  });

  it.each<[string, Parameters<typeof encodeGguf>[0], RegExp]>([
    ["a uint32 out of range", { metadata: { k: { type: "uint32", value: -1 } }, tensors: [] }, /^metadata\["k"\] must be an integer from 0 to 4294967295/],
    ["a fraction for an integer type", { metadata: { k: { type: "int32", value: 1.5 } }, tensors: [] }, /^metadata\["k"\] must be an integer/],
    ["a number for a string", { metadata: { k: { type: "string", value: 1 } }, tensors: [] }, /^metadata\["k"\] must be a string/],
    ["a bad array item", { metadata: { k: { type: "array", itemType: "float32", value: [1, "x"] } }, tensors: [] }, /^metadata\["k"\]\.value\[1\] must be a number/],
    ["an alignment that is no power of two", { metadata: { "general.alignment": { type: "uint32", value: 24 } }, tensors: [] }, /general\.alignment"\] must be a uint32 power of two/],
    ["data that does not match the dims", { metadata: {}, tensors: [{ name: "t", dims: [2, 2], data: new Float32Array(3) }] }, /^tensors\[0\]\.data \(t\) must be a Float32Array of 4 values/],
    ["a zero dim", { metadata: {}, tensors: [{ name: "t", dims: [0], data: new Float32Array(0) }] }, /^tensors\[0\]\.dims \(t\) must be/],
    ["a repeated name", { metadata: {}, tensors: [{ name: "t", dims: [1], data: new Float32Array(1) }, { name: "t", dims: [1], data: new Float32Array(1) }] }, /^tensors\[1\]\.name repeats "t"/],
    ["a name over 63 bytes", { metadata: {}, tensors: [{ name: "x".repeat(64), dims: [1], data: new Float32Array(1) }] }, /^tensors\[0\]\.name must be a string of 1 to 63 bytes/],
  ])("rejects %s with a ValidationError naming it", (_name, contents, message) => {
    expect(() => encodeGguf(contents)).toThrow(invalid(message));
  });

  it("decodeGguf rejects other files and files that end early", () => {
    expect(() => decodeGguf(Buffer.from("not a gguf file at all"))).toThrow(invalid(/magic is not GGUF/));
    const bytes = encodeGguf({ metadata, tensors: [{ name: "b", dims: [3], data: b }] });
    const file = decodeGguf(bytes);
    // Cut inside the metadata, and inside the tensor data.
    expect(() => decodeGguf(bytes.subarray(0, 100))).toThrow(invalid(/ends early/));
    expect(() => readF32Tensor(bytes.subarray(0, file.dataOffset + 8), file, "b")).toThrow(invalid(/runs past the end/));
    expect(() => readF32Tensor(bytes, file, "c")).toThrow(invalid(/"c" is not in the file/));
  });
});

describe("the tiny llama model", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("is a llama GGUF with the hyperparameters, byte vocabulary and tensors llama.cpp needs", () => {
    const bytes = buildTinyLlamaModel();
    const file = decodeGguf(bytes);
    const m = file.metadata;
    expect(file.version).toBe(3);
    expect(value(m, "general.architecture")).toBe("llama");
    expect(m.get("llama.block_count")).toEqual({ type: "uint32", value: 2 });
    expect(value(m, "llama.embedding_length")).toBe(64);
    expect(value(m, "llama.feed_forward_length")).toBe(128);
    expect(value(m, "llama.context_length")).toBe(2048);
    expect(value(m, "llama.attention.head_count")).toBe(4);
    expect(value(m, "llama.attention.head_count_kv")).toBe(2);
    expect(value(m, "llama.rope.dimension_count")).toBe(16);
    expect(m.get("llama.attention.layer_norm_rms_epsilon")?.type).toBe("float32");
    expect(value(m, "tokenizer.ggml.model")).toBe("llama");

    const tokens = m.get("tokenizer.ggml.tokens");
    const types = m.get("tokenizer.ggml.token_type");
    expect(tokens).toMatchObject({ type: "array", itemType: "string" });
    expect(types).toMatchObject({ type: "array", itemType: "int32" });
    expect(m.get("tokenizer.ggml.scores")).toMatchObject({ type: "array", itemType: "float32" });
    const list = tokens!.value as string[];
    expect(list).toHaveLength(TINY_LLAMA_TOKENS.count);
    expect(list.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(list[TINY_LLAMA_TOKENS.firstByte + 0x41]).toBe("<0x41>");
    expect(list[TINY_LLAMA_TOKENS.firstByte + 0xff]).toBe("<0xFF>");
    expect(list[TINY_LLAMA_TOKENS.space]).toBe("\u2581");
    // 2 unknown, 3 control, 6 byte, 1 normal (llama_token_type).
    const typeList = types!.value as number[];
    expect(typeList.slice(0, 3)).toEqual([2, 3, 3]);
    expect(typeList.slice(3, 259).every((t) => t === 6)).toBe(true);
    expect(typeList[259]).toBe(1);
    expect(value(m, "tokenizer.ggml.bos_token_id")).toBe(1);
    expect(value(m, "tokenizer.ggml.eos_token_id")).toBe(2);

    const shapes = Object.fromEntries(file.tensors.map((t) => [t.name, t.dims]));
    expect(shapes).toEqual({
      "token_embd.weight": [64, 260],
      ...Object.fromEntries(
        [0, 1].flatMap((i) => [
          [`blk.${i}.attn_norm.weight`, [64]],
          [`blk.${i}.attn_q.weight`, [64, 64]],
          [`blk.${i}.attn_k.weight`, [64, 32]],
          [`blk.${i}.attn_v.weight`, [64, 32]],
          [`blk.${i}.attn_output.weight`, [64, 64]],
          [`blk.${i}.ffn_norm.weight`, [64]],
          [`blk.${i}.ffn_gate.weight`, [64, 128]],
          [`blk.${i}.ffn_up.weight`, [64, 128]],
          [`blk.${i}.ffn_down.weight`, [128, 64]],
        ]),
      ),
      "output_norm.weight": [64],
      "output.weight": [64, 260],
    });
    // Every tensor starts aligned, right after the one before it, and the last ends the file.
    let next = 0;
    for (const t of file.tensors) {
      expect(t.type).toBe(GGML_TYPE_F32);
      expect(t.offset, t.name).toBe(next);
      next = Math.ceil((t.offset + t.dims.reduce((x, y) => x * y, 1) * 4) / 32) * 32;
    }
    expect(bytes.length).toBe(file.dataOffset + next);
  });

  it("gives the same bytes for the same seed and different weights for another seed", () => {
    const a = buildTinyLlamaModel({ seed: 7 });
    expect(buildTinyLlamaModel({ seed: 7 }).equals(a)).toBe(true);
    const b = buildTinyLlamaModel({ seed: 8 });
    expect(b.length).toBe(a.length);
    expect(b.equals(a)).toBe(false);
    const fa = decodeGguf(a);
    const fb = decodeGguf(b);
    expect(fb.tensors).toEqual(fa.tensors);
    expect(readF32Tensor(b, fb, "blk.0.attn_q.weight")).not.toEqual(readF32Tensor(a, fa, "blk.0.attn_q.weight"));
    // Pinned, so a change to the default model (which the demo shows) is a decision, not an accident.
    expect(createHash("sha256").update(buildTinyLlamaModel()).digest("hex")).toBe(DEFAULT_MODEL_SHA256);
  });

  it("follows the options", () => {
    const file = decodeGguf(buildTinyLlamaModel({ layers: 3, embeddingLength: 96, heads: 6, kvHeads: 3, feedForwardLength: 40, contextLength: 512 }));
    expect(value(file.metadata, "llama.block_count")).toBe(3);
    expect(value(file.metadata, "llama.rope.dimension_count")).toBe(16);
    expect(value(file.metadata, "llama.context_length")).toBe(512);
    const shapes = new Map(file.tensors.map((t) => [t.name, t.dims]));
    expect(shapes.get("blk.2.attn_k.weight")).toEqual([96, 48]);
    expect(shapes.get("blk.2.ffn_down.weight")).toEqual([40, 96]);
    expect(shapes.has("blk.3.attn_q.weight")).toBe(false);
  });

  it.each<[TinyLlamaOptions, RegExp]>([
    [{ seed: -1 }, /^options\.seed must be an integer from 0 to 4294967295, got -1$/],
    [{ seed: 1.5 }, /^options\.seed must be/],
    [{ layers: 0 }, /^options\.layers must be a positive integer up to 32, got 0$/],
    [{ embeddingLength: 4 }, /^options\.embeddingLength must be an integer from 8 to 1024/],
    [{ embeddingLength: 60, heads: 8 }, /^options\.embeddingLength \(60\) must be options\.heads \(8\) times an even head size$/],
    [{ embeddingLength: 24, heads: 8, kvHeads: 8 }, /^options\.embeddingLength \(24\) must be options\.heads/],
    [{ heads: 4, kvHeads: 3 }, /^options\.kvHeads \(3\) must divide options\.heads \(4\)$/],
    [{ feedForwardLength: "128" as unknown as number }, /^options\.feedForwardLength must be a positive integer/],
    [{ contextLength: 8 }, /^options\.contextLength must be an integer from 16/],
    [{ name: "" }, /^options\.name must be a non-empty string/],
  ])("rejects %o with a ValidationError naming the field", (options, message) => {
    expect(() => buildTinyLlamaModel(options)).toThrow(invalid(message));
  });

  it("fills in the documented defaults", () => {
    expect(resolveTinyLlamaOptions()).toEqual(TINY_LLAMA_DEFAULTS);
    expect(resolveTinyLlamaOptions({ seed: undefined, layers: 4 })).toEqual({ ...TINY_LLAMA_DEFAULTS, layers: 4 });
    expect(Object.isFrozen(TINY_LLAMA_DEFAULTS)).toBe(true);
  });

  it("writeTinyLlamaModel writes the same bytes to a file and returns the options it used", () => {
    const dir = mkdtempSync(join(tmpdir(), "multirank-gguf-"));
    dirs.push(dir);
    const path = join(dir, "nested", "tiny.gguf");
    expect(writeTinyLlamaModel(path, { seed: 3 })).toEqual({ ...TINY_LLAMA_DEFAULTS, seed: 3 });
    expect(readFileSync(path).equals(buildTinyLlamaModel({ seed: 3 }))).toBe(true);
    expect(() => writeTinyLlamaModel("", {})).toThrow(invalid(/^path must be a non-empty string/));
  });

  it("makes printable ASCII, mostly letters and spaces, the likely next token", () => {
    // The path from an embedding straight to the logits (the blocks' outputs are kept small
    // so they do not change the picture; the real llama.cpp run is checked where it is installed).
    for (const seed of [0, 1, 2]) {
      const bytes = buildTinyLlamaModel({ seed });
      const file = decodeGguf(bytes);
      const n = 64;
      const embedding = readF32Tensor(bytes, file, "token_embd.weight");
      const output = readF32Tensor(bytes, file, "output.weight");
      for (let t = 0; t < TINY_LLAMA_TOKENS.count; t++) {
        const x = embedding.subarray(t * n, (t + 1) * n);
        const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / n + 1e-5);
        const logits = Array.from({ length: TINY_LLAMA_TOKENS.count }, (_, o) => x.reduce((s, v, i) => s + (v / rms) * output[o * n + i]!, 0));
        const max = Math.max(...logits);
        const weights = logits.map((l) => Math.exp(l - max));
        const total = weights.reduce((s, w) => s + w, 0);
        const printable = weights.reduce((s, w, o) => s + (tinyLlamaPreference(o) > 0 ? w : 0), 0);
        expect(printable / total, `seed ${seed}, after token ${t}`).toBeGreaterThan(0.999);
      }
    }
    expect(tinyLlamaPreference(TINY_LLAMA_TOKENS.firstByte + 0x61)).toBeGreaterThan(tinyLlamaPreference(TINY_LLAMA_TOKENS.firstByte + 0x21));
    expect(tinyLlamaPreference(TINY_LLAMA_TOKENS.eos)).toBeLessThan(0);
    expect(tinyLlamaPreference(TINY_LLAMA_TOKENS.firstByte + 0x80)).toBeLessThan(0);
    expect(tinyLlamaPreference(TINY_LLAMA_TOKENS.firstByte + 0x0a)).toBeLessThan(0);
  });
});

const DEFAULT_MODEL_SHA256 = "4239774d51643d0251c006212f39e6a139a3ac3c0a643d962ca1d3ad5b79b6c2";
