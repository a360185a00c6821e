/**
 * A GGUF (version 3) reader for what {@link encodeGguf} writes and for
 * checking a model file's header before handing it to llama.cpp: metadata
 * values with their types, tensor infos, and where the data section starts.
 * It reads tensor data only on request ({@link readF32Tensor}).
 */
import { ValidationError } from "../errors.js";
import {
  GGML_TYPE_F32,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_TYPE_CODES,
  type GgufScalar,
  type GgufScalarType,
  type GgufTensorInfo,
  type GgufValue,
} from "./gguf-types.js";

/** A parsed GGUF file. */
export interface GgufFile {
  readonly version: number;
  /** Metadata in file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Byte offset of the data section in the file; tensor offsets are relative to it. */
  readonly dataOffset: number;
}

const TYPE_NAMES = new Map(Object.entries(GGUF_TYPE_CODES).map(([name, code]) => [code, name as GgufScalarType | "array"]));

/**
 * Parses the header, metadata and tensor infos of a GGUF file.
 * @throws {ValidationError} when the bytes are not GGUF v2/v3, or end early.
 * @example const { metadata } = decodeGguf(readFileSync("model.gguf"));
 */
export function decodeGguf(bytes: Uint8Array): GgufFile {
  const r = new ByteReader(bytes);
  if (r.u32() !== GGUF_MAGIC) throw new ValidationError("not a GGUF file: the magic is not GGUF");
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new ValidationError(`GGUF version ${version} is not supported (2 or 3)`);
  const tensorCount = r.count();
  const metadataCount = r.count();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < metadataCount; i++) {
    const key = r.string();
    metadata.set(key, readValue(r, r.u32()));
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string();
    const nDims = r.u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.count());
    tensors.push({ name, dims, type: r.u32(), offset: r.count() });
  }
  const alignmentEntry = metadata.get("general.alignment");
  const alignment = alignmentEntry?.type === "uint32" ? (alignmentEntry.value as number) : GGUF_DEFAULT_ALIGNMENT;
  const dataOffset = Math.ceil(r.position / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataOffset };
}

/**
 * Reads one F32 tensor's values out of the file bytes `decodeGguf` parsed.
 * @throws {ValidationError} when the tensor is missing, not F32, or runs past the end.
 */
export function readF32Tensor(bytes: Uint8Array, file: GgufFile, name: string): Float32Array {
  const info = file.tensors.find((t) => t.name === name);
  if (info === undefined) throw new ValidationError(`tensor ${JSON.stringify(name)} is not in the file`);
  if (info.type !== GGML_TYPE_F32) throw new ValidationError(`tensor ${JSON.stringify(name)} is type ${info.type}, not F32`);
  const count = info.dims.reduce((a, b) => a * b, 1);
  const start = file.dataOffset + info.offset;
  if (start + count * 4 > bytes.length) throw new ValidationError(`tensor ${JSON.stringify(name)} runs past the end of the file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, count * 4);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

function readValue(r: ByteReader, code: number): GgufValue {
  const type = TYPE_NAMES.get(code);
  if (type === undefined) throw new ValidationError(`unknown GGUF value type ${code} at byte ${r.position - 4}`);
  if (type !== "array") return { type, value: readScalar(r, type) };
  const itemCode = r.u32();
  const itemType = TYPE_NAMES.get(itemCode);
  if (itemType === undefined || itemType === "array") throw new ValidationError(`unsupported GGUF array item type ${itemCode}`);
  const length = r.count();
  const value: GgufScalar[] = [];
  for (let i = 0; i < length; i++) value.push(readScalar(r, itemType));
  return { type: "array", itemType, value };
}

function readScalar(r: ByteReader, type: GgufScalarType): GgufScalar {
  switch (type) {
    case "uint8":
      return r.view(1).getUint8(0);
    case "int8":
      return r.view(1).getInt8(0);
    case "uint16":
      return r.view(2).getUint16(0, true);
    case "int16":
      return r.view(2).getInt16(0, true);
    case "uint32":
      return r.u32();
    case "int32":
      return r.view(4).getInt32(0, true);
    case "float32":
      return r.view(4).getFloat32(0, true);
    case "bool":
      return r.view(1).getUint8(0) !== 0;
    case "string":
      return r.string();
    case "uint64":
      return r.view(8).getBigUint64(0, true);
    case "int64":
      return r.view(8).getBigInt64(0, true);
    case "float64":
      return r.view(8).getFloat64(0, true);
  }
}

/** A cursor over the bytes that fails with a ValidationError instead of reading past the end. */
class ByteReader {
  #bytes: Uint8Array;
  #position = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get position(): number {
    return this.#position;
  }

  view(size: number): DataView {
    if (this.#position + size > this.#bytes.length) throw new ValidationError(`GGUF file ends early at byte ${this.#bytes.length}`);
    const view = new DataView(this.#bytes.buffer, this.#bytes.byteOffset + this.#position, size);
    this.#position += size;
    return view;
  }

  u32(): number {
    return this.view(4).getUint32(0, true);
  }

  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(): number {
    const value = this.view(8).getBigUint64(0, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ValidationError(`GGUF count ${value} is too large`);
    return Number(value);
  }

  string(): string {
    const length = this.count();
    const view = this.view(length);
    return Buffer.from(view.buffer, view.byteOffset, length).toString("utf8");
  }
}
