/**
 * A GGUF (version 3) writer in plain TypeScript: the header, typed metadata,
 * tensor infos and aligned float32 tensor data, in one buffer. It exists so
 * the tests and the demo can make a real model file without a Python
 * toolchain or a download; it writes what llama.cpp's `gguf_init_from_file`
 * reads. Layout (all little-endian):
 *
 *   magic u32 · version u32 · tensor count u64 · metadata count u64
 *   metadata: key (u64 length + UTF-8) · type u32 · value
 *   tensor infos: name · n_dims u32 · dims u64[n_dims] · type u32 · offset u64
 *   padding to the alignment · tensor data, each tensor at an aligned offset
 */
import { ValidationError } from "../errors.js";
import {
  GGML_TYPE_F32,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_TYPE_CODES,
  GGUF_VERSION,
  type GgufScalar,
  type GgufScalarType,
  type GgufTensor,
  type GgufValue,
} from "./gguf-types.js";

/** What a GGUF file holds: metadata in the order given, and tensors in the order given. */
export interface GgufContents {
  /** Keys to typed values; `general.alignment` (uint32), when present, sets the alignment. */
  readonly metadata: Readonly<Record<string, GgufValue>>;
  readonly tensors: readonly GgufTensor[];
}

/** ggml's `GGML_MAX_NAME` counts the terminating NUL. */
const MAX_TENSOR_NAME_BYTES = 63;
const MAX_DIMS = 4;

const INTEGER_RANGES: Partial<Record<GgufScalarType, readonly [bigint, bigint]>> = {
  uint8: [0n, 0xffn],
  int8: [-0x80n, 0x7fn],
  uint16: [0n, 0xffffn],
  int16: [-0x8000n, 0x7fffn],
  uint32: [0n, 0xffffffffn],
  int32: [-0x80000000n, 0x7fffffffn],
  uint64: [0n, 0xffffffffffffffffn],
  int64: [-0x8000000000000000n, 0x7fffffffffffffffn],
};

/**
 * Encodes `contents` as a GGUF v3 file. Tensors are stored as F32.
 * @throws {ValidationError} naming the metadata key or tensor when a value does
 *   not fit its type, a tensor's data does not match its dims, a name repeats
 *   or is too long, or the alignment is not a power of two.
 * @example
 * const bytes = encodeGguf({
 *   metadata: { "general.architecture": { type: "string", value: "llama" } },
 *   tensors: [{ name: "output_norm.weight", dims: [4], data: new Float32Array(4).fill(1) }],
 * });
 */
export function encodeGguf(contents: GgufContents): Buffer {
  const alignment = alignmentOf(contents.metadata);
  const out = new ByteSink();
  const entries = Object.entries(contents.metadata);
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(BigInt(contents.tensors.length));
  out.u64(BigInt(entries.length));
  for (const [key, value] of entries) {
    const field = `metadata[${JSON.stringify(key)}]`;
    if (key.length === 0) throw new ValidationError("metadata keys must be non-empty strings");
    out.string(key);
    writeValue(out, value, field);
  }

  const names = new Set<string>();
  let offset = 0;
  for (const [index, tensor] of contents.tensors.entries()) {
    checkTensor(tensor, index, names);
    out.string(tensor.name);
    out.u32(tensor.dims.length);
    for (const dim of tensor.dims) out.u64(BigInt(dim));
    out.u32(GGML_TYPE_F32);
    out.u64(BigInt(offset));
    offset = alignUp(offset + tensor.data.byteLength, alignment);
  }

  out.pad(alignment);
  const dataStart = out.length;
  for (const tensor of contents.tensors) {
    out.floats(tensor.data);
    // Pad relative to the data section: offsets are relative to it, and it starts aligned.
    out.zeros(alignUp(out.length - dataStart, alignment) - (out.length - dataStart));
  }
  return out.toBuffer();
}

function alignmentOf(metadata: Readonly<Record<string, GgufValue>>): number {
  const entry = metadata["general.alignment"];
  if (entry === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const value = entry.value;
  if (entry.type !== "uint32" || typeof value !== "number" || !Number.isInteger(value) || value < 1 || (value & (value - 1)) !== 0) {
    throw new ValidationError(`metadata["general.alignment"] must be a uint32 power of two, got ${String(value)}`);
  }
  return value;
}

function checkTensor(tensor: GgufTensor, index: number, names: Set<string>): void {
  const field = `tensors[${index}]`;
  if (typeof tensor.name !== "string" || tensor.name.length === 0 || Buffer.byteLength(tensor.name) > MAX_TENSOR_NAME_BYTES) {
    throw new ValidationError(`${field}.name must be a string of 1 to ${MAX_TENSOR_NAME_BYTES} bytes, got ${JSON.stringify(tensor.name)}`);
  }
  if (names.has(tensor.name)) throw new ValidationError(`${field}.name repeats ${JSON.stringify(tensor.name)}`);
  names.add(tensor.name);
  const dims = tensor.dims;
  if (!Array.isArray(dims) || dims.length < 1 || dims.length > MAX_DIMS || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new ValidationError(`${field}.dims (${tensor.name}) must be 1 to ${MAX_DIMS} positive integers`);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (!(tensor.data instanceof Float32Array) || tensor.data.length !== count) {
    throw new ValidationError(`${field}.data (${tensor.name}) must be a Float32Array of ${count} values (dims ${dims.join("x")})`);
  }
}

function writeValue(out: ByteSink, entry: GgufValue, field: string): void {
  if (entry.type === "array") {
    if (!(entry.itemType in GGUF_TYPE_CODES) || (entry.itemType as string) === "array") {
      throw new ValidationError(`${field}.itemType must be a scalar GGUF type, got ${JSON.stringify(entry.itemType)}`);
    }
    if (!Array.isArray(entry.value)) throw new ValidationError(`${field}.value must be an array`);
    out.u32(GGUF_TYPE_CODES.array);
    out.u32(GGUF_TYPE_CODES[entry.itemType]);
    out.u64(BigInt(entry.value.length));
    for (const [i, item] of entry.value.entries()) writeScalar(out, entry.itemType, item, `${field}.value[${i}]`);
    return;
  }
  if (!(entry.type in GGUF_TYPE_CODES)) throw new ValidationError(`${field}.type must be a GGUF type, got ${JSON.stringify(entry.type)}`);
  out.u32(GGUF_TYPE_CODES[entry.type]);
  writeScalar(out, entry.type, entry.value, field);
}

function writeScalar(out: ByteSink, type: GgufScalarType, value: GgufScalar, field: string): void {
  switch (type) {
    case "string":
      if (typeof value !== "string") throw new ValidationError(`${field} must be a string for type string`);
      out.string(value);
      return;
    case "bool":
      if (typeof value !== "boolean") throw new ValidationError(`${field} must be a boolean for type bool`);
      out.u8(value ? 1 : 0);
      return;
    case "float32":
    case "float64":
      if (typeof value !== "number") throw new ValidationError(`${field} must be a number for type ${type}`);
      if (type === "float32") out.f32(value);
      else out.f64(value);
      return;
    default: {
      const [min, max] = INTEGER_RANGES[type]!;
      const big = typeof value === "bigint" ? value : typeof value === "number" && Number.isSafeInteger(value) ? BigInt(value) : undefined;
      if (big === undefined || big < min || big > max) throw new ValidationError(`${field} must be an integer from ${min} to ${max} for type ${type}, got ${String(value)}`);
      out.integer(type, big);
    }
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** An append-only little-endian byte builder: chunks joined once at the end. */
class ByteSink {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  u8(v: number): void {
    this.#push(Buffer.of(v));
  }

  u32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v);
    this.#push(b);
  }

  u64(v: bigint): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(v);
    this.#push(b);
  }

  integer(type: GgufScalarType, v: bigint): void {
    const size = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, uint64: 8, int64: 8 }[type as "uint8"];
    const b = Buffer.allocUnsafe(size);
    const n = Number(v);
    if (type === "uint8") b.writeUInt8(n);
    else if (type === "int8") b.writeInt8(n);
    else if (type === "uint16") b.writeUInt16LE(n);
    else if (type === "int16") b.writeInt16LE(n);
    else if (type === "uint32") b.writeUInt32LE(n);
    else if (type === "int32") b.writeInt32LE(n);
    else if (type === "uint64") b.writeBigUInt64LE(v);
    else b.writeBigInt64LE(v);
    this.#push(b);
  }

  f32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeFloatLE(v);
    this.#push(b);
  }

  f64(v: number): void {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v);
    this.#push(b);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(BigInt(bytes.length));
    this.#push(bytes);
  }

  floats(data: Float32Array): void {
    // writeFloatLE, not the array's own bytes: the file is little-endian whatever the host's order.
    const b = Buffer.allocUnsafe(data.length * 4);
    for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i]!, i * 4);
    this.#push(b);
  }

  zeros(n: number): void {
    if (n > 0) this.#push(Buffer.alloc(n));
  }

  pad(alignment: number): void {
    this.zeros(alignUp(this.#length, alignment) - this.#length);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }
}
