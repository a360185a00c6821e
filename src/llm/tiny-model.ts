/**
 * A tiny llama model with random weights, written as GGUF, so tests and the
 * demo run the real llama.cpp path (file → load → tokenize → decode → sample →
 * text) without downloading a model. Weights come from a seeded PRNG: the same
 * options give the same bytes.
 *
 * The vocabulary is byte-level (llama.cpp's SentencePiece `llama` tokenizer
 * with only byte tokens), so any UTF-8 text tokenizes: `<unk>`, `<s>`, `</s>`,
 * the 256 tokens `<0x00>`..`<0xFF>` typed as bytes, and `▁` (the
 * SentencePiece space) as a normal token so a space in a prompt is one token.
 *
 * Random weights would sample random bytes, most of them not printable, and
 * half of those not valid UTF-8. So the weights are shaped: every embedding
 * carries one large constant component, the final norm keeps it, and each
 * output row's weight on it says how much that token is wanted: lowercase
 * letters and the space most, other printable ASCII less, everything else
 * (control tokens, `</s>`, bytes outside 0x20..0x7E) strongly not. The
 * layers' weights are small, so the text stays printable whatever the prompt.
 */
import { writeFileAtomicSync } from "../util/atomic-write.js";
import { check, integerInRange, nonEmptyString, positiveInteger } from "../util/validate.js";
import type { GgufTensor, GgufValue } from "./gguf-types.js";
import { encodeGguf } from "./gguf-writer.js";

/** Options of {@link buildTinyLlamaModel} and {@link writeTinyLlamaModel}; all optional. */
export interface TinyLlamaOptions {
  /** Seed of the weights (an integer from 0 to 2^32 - 1). @default 0 */
  seed?: number;
  /** Transformer blocks (1 to 32). @default 2 */
  layers?: number;
  /** Width of the residual stream (8 to 1024); a multiple of `heads` with an even head size. @default 64 */
  embeddingLength?: number;
  /** Attention heads. @default 4 */
  heads?: number;
  /** Key/value heads (grouped-query attention); divides `heads`. @default 2 */
  kvHeads?: number;
  /** Hidden width of each block's feed-forward network (1 to 8192). @default 128 */
  feedForwardLength?: number;
  /** The context length the model says it was trained with (16 to 1048576). @default 2048 */
  contextLength?: number;
  /** `general.name` in the file. @default "multirank tiny llama" */
  name?: string;
}

/** {@link TinyLlamaOptions} with every default filled in. */
export type ResolvedTinyLlamaOptions = Readonly<Required<TinyLlamaOptions>>;

/** The defaults of {@link TinyLlamaOptions}. */
export const TINY_LLAMA_DEFAULTS: ResolvedTinyLlamaOptions = Object.freeze({
  seed: 0,
  layers: 2,
  embeddingLength: 64,
  heads: 4,
  kvHeads: 2,
  feedForwardLength: 128,
  contextLength: 2048,
  name: "multirank tiny llama",
});

/** Token ids of the tiny model's vocabulary. */
export const TINY_LLAMA_TOKENS = Object.freeze({
  unknown: 0,
  bos: 1,
  eos: 2,
  /** `<0x00>`; byte `b` is token `firstByte + b`. */
  firstByte: 3,
  /** `▁`, the SentencePiece space. */
  space: 259,
  /** How many tokens there are. */
  count: 260,
});

const RMS_EPSILON = 1e-5;
const ROPE_FREQ_BASE = 10000;
// llama.cpp's llama_token_type numbers.
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;
// The shaping described in the file comment: the constant embedding component,
// the noise around it, and each kind of token's weight on that component.
const PRINTABLE_DIRECTION = 4;
const EMBEDDING_NOISE = 0.5;
const PREFERENCE = { lower: 1.2, space: 1.45, upperOrDigit: 0.8, punctuation: 0.6, unwanted: -1.5 } as const;

/**
 * Fills in and checks `options`.
 * @throws {ValidationError} naming the field ("options.heads must be ...").
 */
export function resolveTinyLlamaOptions(options: TinyLlamaOptions = {}): ResolvedTinyLlamaOptions {
  check(typeof options === "object" && options !== null, "options must be an object");
  const o = { ...TINY_LLAMA_DEFAULTS, ...definedOnly(options) };
  const resolved = {
    seed: integerInRange(o.seed, "options.seed", 0, 0xffffffff),
    layers: positiveInteger(o.layers, "options.layers", 32),
    embeddingLength: integerInRange(o.embeddingLength, "options.embeddingLength", 8, 1024),
    heads: positiveInteger(o.heads, "options.heads", 64),
    kvHeads: positiveInteger(o.kvHeads, "options.kvHeads", 64),
    feedForwardLength: positiveInteger(o.feedForwardLength, "options.feedForwardLength", 8192),
    contextLength: integerInRange(o.contextLength, "options.contextLength", 16, 1 << 20),
    name: nonEmptyString(o.name, "options.name"),
  };
  const { embeddingLength, heads, kvHeads } = resolved;
  check(embeddingLength % heads === 0 && (embeddingLength / heads) % 2 === 0, `options.embeddingLength (${embeddingLength}) must be options.heads (${heads}) times an even head size`);
  check(heads % kvHeads === 0, `options.kvHeads (${kvHeads}) must divide options.heads (${heads})`);
  return Object.freeze(resolved);
}

/**
 * The tiny model's GGUF bytes.
 * @throws {ValidationError} for bad options (see {@link resolveTinyLlamaOptions}).
 * @example const bytes = buildTinyLlamaModel({ seed: 7, layers: 3 });
 */
export function buildTinyLlamaModel(options: TinyLlamaOptions = {}): Buffer {
  const o = resolveTinyLlamaOptions(options);
  return encodeGguf({ metadata: metadataOf(o), tensors: tensorsOf(o) });
}

/**
 * Writes the tiny model to `path` (atomically: a reader sees the old file or
 * the whole new one) and returns the options it used.
 * @throws {ValidationError} for bad options; the file system's errors as they are.
 * @example writeTinyLlamaModel("/tmp/tiny.gguf", { seed: 1 });
 */
export function writeTinyLlamaModel(path: string, options: TinyLlamaOptions = {}): ResolvedTinyLlamaOptions {
  nonEmptyString(path, "path");
  const resolved = resolveTinyLlamaOptions(options);
  writeFileAtomicSync(path, buildTinyLlamaModel(resolved));
  return resolved;
}

/** How much the model wants each token: the output rows' weight on the printable direction. */
export function tinyLlamaPreference(token: number): number {
  const byte = token - TINY_LLAMA_TOKENS.firstByte;
  if (byte < 0 || byte > 0xff) return PREFERENCE.unwanted;
  if (byte === 0x20) return PREFERENCE.space;
  if (byte >= 0x61 && byte <= 0x7a) return PREFERENCE.lower;
  if ((byte >= 0x41 && byte <= 0x5a) || (byte >= 0x30 && byte <= 0x39)) return PREFERENCE.upperOrDigit;
  if (byte > 0x20 && byte < 0x7f) return PREFERENCE.punctuation;
  return PREFERENCE.unwanted;
}

function definedOnly(options: TinyLlamaOptions): TinyLlamaOptions {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

function metadataOf(o: ResolvedTinyLlamaOptions): Record<string, GgufValue> {
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TOKEN_BYTE);
  }
  tokens.push("\u2581");
  types.push(TOKEN_NORMAL);
  const u32 = (value: number): GgufValue => ({ type: "uint32", value });
  return {
    "general.architecture": { type: "string", value: "llama" },
    "general.name": { type: "string", value: o.name },
    // 0 = all tensors F32 (llama_ftype LLAMA_FTYPE_ALL_F32).
    "general.file_type": u32(0),
    "llama.vocab_size": u32(TINY_LLAMA_TOKENS.count),
    "llama.context_length": u32(o.contextLength),
    "llama.embedding_length": u32(o.embeddingLength),
    "llama.block_count": u32(o.layers),
    "llama.feed_forward_length": u32(o.feedForwardLength),
    "llama.rope.dimension_count": u32(o.embeddingLength / o.heads),
    "llama.rope.freq_base": { type: "float32", value: ROPE_FREQ_BASE },
    "llama.attention.head_count": u32(o.heads),
    "llama.attention.head_count_kv": u32(o.kvHeads),
    "llama.attention.layer_norm_rms_epsilon": { type: "float32", value: RMS_EPSILON },
    "tokenizer.ggml.model": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
    "tokenizer.ggml.scores": { type: "array", itemType: "float32", value: tokens.map(() => 0) },
    "tokenizer.ggml.token_type": { type: "array", itemType: "int32", value: types },
    "tokenizer.ggml.bos_token_id": u32(TINY_LLAMA_TOKENS.bos),
    "tokenizer.ggml.eos_token_id": u32(TINY_LLAMA_TOKENS.eos),
    "tokenizer.ggml.unknown_token_id": u32(TINY_LLAMA_TOKENS.unknown),
    "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
    "tokenizer.ggml.add_eos_token": { type: "bool", value: false },
    // No leading space: a prompt's first byte stays its first token.
    "tokenizer.ggml.add_space_prefix": { type: "bool", value: false },
  };
}

function tensorsOf(o: ResolvedTinyLlamaOptions): GgufTensor[] {
  const random = mulberry32(o.seed);
  const n = o.embeddingLength;
  const vocab = TINY_LLAMA_TOKENS.count;
  const kv = (n / o.heads) * o.kvHeads;
  const ff = o.feedForwardLength;
  // A uniform draw in [-a, a] has standard deviation a / sqrt(3).
  const uniform = (count: number, std: number): Float32Array => {
    const a = std * Math.sqrt(3);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = (random() * 2 - 1) * a;
    return out;
  };
  const ones = (count: number): Float32Array => new Float32Array(count).fill(1);

  const embedding = uniform(n * vocab, EMBEDDING_NOISE);
  for (let t = 0; t < vocab; t++) embedding[t * n] = PRINTABLE_DIRECTION;
  const tensors: GgufTensor[] = [{ name: "token_embd.weight", dims: [n, vocab], data: embedding }];
  for (let i = 0; i < o.layers; i++) {
    const blk = `blk.${i}`;
    tensors.push(
      { name: `${blk}.attn_norm.weight`, dims: [n], data: ones(n) },
      { name: `${blk}.attn_q.weight`, dims: [n, n], data: uniform(n * n, 1 / Math.sqrt(n)) },
      { name: `${blk}.attn_k.weight`, dims: [n, kv], data: uniform(n * kv, 1 / Math.sqrt(n)) },
      { name: `${blk}.attn_v.weight`, dims: [n, kv], data: uniform(n * kv, 1 / Math.sqrt(n)) },
      // The blocks' outputs are small next to the printable direction, so the shaping survives them.
      { name: `${blk}.attn_output.weight`, dims: [n, n], data: uniform(n * n, 0.25 / Math.sqrt(n)) },
      { name: `${blk}.ffn_norm.weight`, dims: [n], data: ones(n) },
      { name: `${blk}.ffn_gate.weight`, dims: [n, ff], data: uniform(n * ff, 1 / Math.sqrt(n)) },
      { name: `${blk}.ffn_up.weight`, dims: [n, ff], data: uniform(n * ff, 1 / Math.sqrt(n)) },
      { name: `${blk}.ffn_down.weight`, dims: [ff, n], data: uniform(ff * n, 0.25 / Math.sqrt(ff)) },
    );
  }
  // Output noise scales with 1/sqrt(n) so the spread of the logits is about the same at any width.
  const output = uniform(n * vocab, 1.2 / Math.sqrt(n));
  for (let t = 0; t < vocab; t++) output[t * n] = tinyLlamaPreference(t);
  tensors.push({ name: "output_norm.weight", dims: [n], data: ones(n) }, { name: "output.weight", dims: [n, vocab], data: output });
  return tensors;
}

/** A small seeded PRNG (mulberry32): uniform in [0, 1), the same sequence for the same seed on every platform. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
