/**
 * The shapes of a GGUF file (version 3), shared by the writer and the reader:
 * metadata values tagged with their GGUF type, and tensor descriptions. The
 * numbers are the format's own (ggml's `gguf.h` and `ggml.h`); see
 * https://github.com/ggml-org/ggml/blob/master/docs/gguf.md.
 */

/** `GGUF` read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
/** The version this module writes and reads. */
export const GGUF_VERSION = 3;
/** Where tensor data starts and each tensor begins, unless `general.alignment` says otherwise. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** A metadata value type, by its GGUF name. */
export type GgufScalarType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "bool"
  | "string"
  | "uint64"
  | "int64"
  | "float64";

/** The format's number for each type (`GGUF_TYPE_*`); `array` is 9. */
export const GGUF_TYPE_CODES: Readonly<Record<GgufScalarType | "array", number>> = Object.freeze({
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
});

/** A scalar's JS value: 64-bit integers are bigints, so no value is rounded. */
export type GgufScalar = number | bigint | boolean | string;

/**
 * One metadata value with its type. Arrays hold scalars of one type (the
 * format allows arrays of arrays; llama.cpp's keys never use them, so this
 * module does not write them).
 */
export type GgufValue =
  | { readonly type: GgufScalarType; readonly value: GgufScalar }
  | { readonly type: "array"; readonly itemType: GgufScalarType; readonly value: readonly GgufScalar[] };

/** ggml's tensor types this module knows by name (`GGML_TYPE_*`). */
export const GGML_TYPE_F32 = 0;
export const GGML_TYPE_F16 = 1;

/**
 * A tensor to write: float32 data, `dims` innermost first as ggml counts them
 * (`ne[0]` is the contiguous one: a `[64, 260]` matrix is 260 rows of 64).
 */
export interface GgufTensor {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** A tensor as the file describes it: where its data starts, relative to the data section. */
export interface GgufTensorInfo {
  readonly name: string;
  readonly dims: readonly number[];
  /** A `GGML_TYPE_*` number. */
  readonly type: number;
  /** Bytes from the start of the data section; a multiple of the alignment. */
  readonly offset: number;
}
