import { addExtension, Packr } from "msgpackr";
import { MessageTooLargeError, SerializationError } from "../errors.js";

function refuseFunction(value: unknown): never {
  const name = typeof value === "function" && value.name ? ` "${value.name}"` : "";
  throw new SerializationError(`cannot pack a function${name}: payloads and results must be data`);
}

/**
 * A msgpackr instance with the options every value between runner and ranks
 * (and among ranks, for collectives' objects) is packed with:
 * - `useRecords: true`: plain objects travel as msgpackr records (their shape
 *   defined inline in each message, so independently started processes read
 *   them), which leaves msgpack maps to `Map`s, and the unpacker's default
 *   `mapsAsObjects: false` turns those back into `Map`s, keys of any type
 *   kept. With plain maps for objects a `Map` came back as an object with
 *   string keys. Costs about 0.7 µs per pack and per unpack of a small
 *   message; halves the bytes of arrays of same-shaped objects.
 * - `moreTypes: true`: typed arrays come back as the same class; `Set`,
 *   `RegExp`, `Error` (name, message, cause) and bigints past 64 bits too.
 * - functions are refused (msgpackr would silently drop them).
 * `-0` is not kept: msgpack writes it as the integer 0 and msgpackr has no
 * hook for numbers (a `Float64Array` keeps it).
 */
export function createPackr(): Packr {
  // writeFunction is called with the function, though msgpackr's types say no argument.
  return new Packr({ useRecords: true, moreTypes: true, writeFunction: refuseFunction as () => never });
}

/**
 * A value that travels as a reference to bytes kept elsewhere (a shared-memory
 * segment, for one): packed as the bytes {@link encode} returns, and turned
 * back into a value only by a {@link Codec} given {@link ReferenceResolver}.
 * The layer that owns the bytes (the transport) subclasses it; the codec
 * never needs to know what a reference means.
 */
export abstract class PackedReference {
  /** The reference's description, as few bytes as identify it. */
  abstract encode(): Uint8Array;
}

/** Turns the references in one unpacked message back into values. */
export interface ReferenceResolver {
  /** Runs one unpack: references resolved during `unpack` may share state (one mapping per segment). */
  around<T>(unpack: () => T): T;
  /** The value one reference stands for. */
  resolve(bytes: Uint8Array): unknown;
}

/** msgpack extension type of a {@link PackedReference} ('M'). */
const REFERENCE_EXTENSION = 0x4d;

// msgpackr's extensions are process-wide; the codec registers its one and
// hands each reference to the resolver of the codec unpacking right now, so
// what a reference means stays with the codec instance that owns it.
let resolving: ReferenceResolver | undefined;
addExtension({
  Class: PackedReference,
  type: REFERENCE_EXTENSION,
  pack: (ref: PackedReference) => Buffer.from(ref.encode()),
  unpack: (bytes: Buffer) => {
    if (!resolving) throw new SerializationError("a shared-memory reference reached a codec that cannot resolve it");
    return resolving.resolve(bytes);
  },
});

/** Options of {@link Codec}. */
export interface CodecOptions {
  /** Resolves references in what this codec unpacks; without it a reference is refused. Default: none. */
  references?: ReferenceResolver | undefined;
}

/**
 * Packs and unpacks messages. Functions and symbols are refused with a
 * {@link SerializationError} instead of being silently dropped, a packed
 * message is checked against a size limit before it reaches a socket, and
 * corrupt input becomes a {@link SerializationError}. A control channel owns
 * one with its reference resolver; everything else uses {@link plainCodec}.
 */
export class Codec {
  readonly #packr = createPackr();
  readonly #references: ReferenceResolver | undefined;

  constructor(options: CodecOptions = {}) {
    this.#references = options.references;
  }

  /** Packs `value`; `what` names it in errors, and a result over `limit` bytes throws {@link MessageTooLargeError}. */
  pack(value: unknown, what = "message", limit = Number.POSITIVE_INFINITY): Buffer {
    let bytes: Buffer;
    try {
      bytes = this.#packr.pack(value);
    } catch (error) {
      if (error instanceof SerializationError) throw new SerializationError(`${what}: ${error.message}`);
      const reason = error instanceof Error ? error.message : String(error);
      throw new SerializationError(`${what} cannot be packed: ${reason}`, { cause: error });
    }
    if (bytes.length > limit) throw new MessageTooLargeError(what, bytes.length, limit);
    return bytes;
  }

  /** Unpacks msgpack bytes; `what` names them in errors. */
  unpack<T = unknown>(bytes: Uint8Array, what = "message"): T {
    const outer = resolving;
    resolving = this.#references;
    try {
      const unpackOnce = (): T => this.#packr.unpack(bytes) as T;
      return this.#references ? this.#references.around(unpackOnce) : unpackOnce();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new SerializationError(`${what} could not be unpacked: ${reason}`, { cause: error });
    } finally {
      resolving = outer;
    }
  }
}

/** The codec of messages that never carry shared-memory references (HTTP bodies, caches). */
export const plainCodec = new Codec();

/** Packs with {@link plainCodec}. */
export function pack(value: unknown, what = "message", limit = Number.POSITIVE_INFINITY): Buffer {
  return plainCodec.pack(value, what, limit);
}

/** Unpacks with {@link plainCodec}. */
export function unpack<T = unknown>(bytes: Uint8Array, what = "message"): T {
  return plainCodec.unpack<T>(bytes, what);
}
