/**
 * Binary values travel as raw bytes plus the name of their class; these turn
 * the two back into the same kind of view on the other side.
 */

type ViewConstructor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayBufferView; BYTES_PER_ELEMENT?: number };

/** Every ArrayBufferView class by name (`Buffer` is handled apart: it is a Uint8Array). */
export const VIEW_CONSTRUCTORS: Readonly<Record<string, ViewConstructor>> = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
};

/** The name to send for `view`'s class: `Buffer`, a typed array's, `DataView`, or `Uint8Array` for a subclass we do not know. */
export function viewKind(view: ArrayBufferView): string {
  if (Buffer.isBuffer(view)) return "Buffer";
  const name = view.constructor.name;
  return name in VIEW_CONSTRUCTORS ? name : "Uint8Array";
}

/**
 * `bytes` as a view of class `kind`: over the same memory when its alignment
 * allows, else over a copy. Unknown kinds become Uint8Array.
 * @throws RangeError when the byte length is not a whole number of elements.
 */
export function viewOver(bytes: Buffer, kind: string): ArrayBufferView {
  if (kind === "Buffer") return bytes;
  const Ctor = VIEW_CONSTRUCTORS[kind] ?? Uint8Array;
  const size = Ctor.BYTES_PER_ELEMENT ?? 1;
  if (bytes.byteLength % size !== 0) throw new RangeError(`${bytes.byteLength} bytes are not a whole number of ${kind} elements`);
  const length = Ctor === DataView ? bytes.byteLength : bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, length);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, length);
}
