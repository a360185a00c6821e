import { Packr } from "msgpackr";
import { createPackr } from "../codec/packer.js";
import { SerializationError } from "../errors.js";
import { viewKind, viewOver } from "../util/typed-views.js";

// Headers: small fixed-shape objects on the hot path, never a Map, so plain
// msgpack maps (about half the cost of records per message).
const packr = new Packr({ useRecords: false, moreTypes: true });
// Values (broadcast, allGather, send) cross like payloads do: the same codec
// options, so a Map stays a Map and a function is refused, not dropped.
const values = createPackr();

/** Message kinds of the data mesh (unix stream links on one host, ZeroMQ sockets across hosts). */
export type MessageKind =
  /** part of a collective, keyed by epoch and sequence number */
  | "c"
  /** point-to-point `send` */
  | "p"
  /** a collective was aborted on the sender (mismatch, timeout, abort) */
  | "x"
  /** the sender no longer reads the receiver's shared-memory buffer of collective (`j`, `q`) */
  | "r"
  /** the sender is closing its group on purpose */
  | "b";

/** How the payload frame decodes. `ta`: raw bytes of a typed array / Buffer (`d` names the class); `mp`: msgpack. */
export type ValueMeta = { t: "ta"; d: string } | { t: "ab" } | { t: "mp" };

/** The first frame of every data message (msgpack). */
export interface Header {
  k: MessageKind;
  /** sender rank */
  s: number;
  /**
   * epoch of the collective: the id of the request whose `call()` made it (0,
   * left out, outside requests). Sequence numbers count within an epoch, so
   * a request that ends half-way leaves no drift for the next one.
   */
  j?: number;
  /** collective sequence number (within its epoch) */
  q?: number;
  /** signature of the collective, compared by the receiver */
  g?: string;
  /** payload decoding, when a payload frame follows */
  v?: ValueMeta;
  /** algorithm-specific index (chunk or step) */
  i?: number;
  /** 1 on the shared-memory "written" message: the receiver owes a release (`r`) even if it never reads the buffer */
  w?: 1;
  /** error carried by an abort */
  e?: { code: string; message: string; rank: number };
}

/** Packs a header. */
export function packHeader(header: Header): Buffer {
  return packr.pack(header);
}

/** Unpacks a header; `undefined` when the frame is not one of ours (a foreign peer). */
export function unpackHeader(frame: Buffer): Header | undefined {
  try {
    const h = packr.unpack(frame) as Header;
    return h && typeof h === "object" && typeof h.k === "string" && Number.isInteger(h.s) ? h : undefined;
  } catch {
    return undefined;
  }
}

/** A view over the bytes of `view` (no copy). */
export function bytesOf(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Encodes any value as one frame. Typed arrays, DataViews, Buffers and
 * ArrayBuffers become their raw bytes; everything else msgpack.
 * With `copy` the frame never aliases `value` (the mesh, a link's socket
 * write or zeromq.js, sends large buffers without copying and resolves before
 * the bytes leave, so a caller that may reuse `value` must not hand over its
 * memory).
 * @throws SerializationError when msgpack cannot pack the value.
 */
export function encodeValue(value: unknown, copy: boolean): { meta: ValueMeta; frame: Buffer } {
  if (ArrayBuffer.isView(value)) {
    const bytes = bytesOf(value);
    return { meta: { t: "ta", d: viewKind(value) }, frame: copy ? Buffer.from(bytes) : bytes };
  }
  if (value instanceof ArrayBuffer) {
    const bytes = Buffer.from(value);
    return { meta: { t: "ab" }, frame: copy ? Buffer.from(bytes) : bytes };
  }
  try {
    return { meta: { t: "mp" }, frame: values.pack(value) };
  } catch (cause) {
    if (cause instanceof SerializationError) throw cause;
    throw new SerializationError(`value cannot be packed: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Decodes a frame made by {@link encodeValue}. Typed arrays are views over the
 * received frame when its alignment allows (no copy), else copies.
 */
export function decodeValue(meta: ValueMeta | undefined, frame: Buffer | undefined): unknown {
  const bytes = frame ?? Buffer.alloc(0);
  if (!meta || meta.t === "mp") {
    try {
      return values.unpack(bytes);
    } catch (cause) {
      throw new SerializationError(`received frame cannot be unpacked: ${(cause as Error).message}`, { cause });
    }
  }
  if (meta.t === "ab") return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return viewOver(bytes, meta.d);
}

/**
 * A typed array of `Like`'s class over `frame`'s bytes, without copying when
 * aligned. Used by reductions, which know the dtype from the signature.
 */
export function viewAs<A extends ArrayBufferView & { length: number }>(like: A, frame: Buffer): A {
  const Ctor = like.constructor as unknown as { new (b: ArrayBufferLike, o: number, n: number): A; BYTES_PER_ELEMENT: number };
  const size = Ctor.BYTES_PER_ELEMENT;
  if (frame.byteOffset % size === 0) return new Ctor(frame.buffer, frame.byteOffset, frame.byteLength / size);
  const copy = new Uint8Array(frame.byteLength);
  copy.set(frame);
  return new Ctor(copy.buffer, 0, frame.byteLength / size);
}
