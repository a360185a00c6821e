import { Packr } from "msgpackr";
import { MessageTooLargeError, SerializationError } from "../errors.js";
import { withSharedSegments } from "../transport/shared-payload.js";

function refuseFunction(value: unknown): never {
  const name = typeof value === "function" && value.name ? ` "${value.name}"` : "";
  throw new SerializationError(`cannot pack a function${name}: payloads and results must be data`);
}

// useRecords: false keeps the bytes plain msgpack that any client can read;
// moreTypes: true makes typed arrays come back as the same typed array class.
// writeFunction is called with the function, though msgpackr's types say no argument.
const packr = new Packr({ useRecords: false, moreTypes: true, writeFunction: refuseFunction as () => never });

/**
 * Packs a value to msgpack. Functions and symbols are refused with a
 * {@link SerializationError} instead of being silently dropped, and the result
 * is checked against `limit` so an oversized message never reaches the socket.
 */
export function pack(value: unknown, what = "message", limit = Number.POSITIVE_INFINITY): Buffer {
  let bytes: Buffer;
  try {
    bytes = packr.pack(value);
  } catch (error) {
    if (error instanceof SerializationError) throw new SerializationError(`${what}: ${error.message}`);
    const reason = error instanceof Error ? error.message : String(error);
    throw new SerializationError(`${what} cannot be packed: ${reason}`, { cause: error });
  }
  if (bytes.length > limit) throw new MessageTooLargeError(what, bytes.length, limit);
  return bytes;
}

/** Unpacks msgpack bytes; corrupt input becomes a {@link SerializationError}. */
export function unpack<T = unknown>(bytes: Uint8Array, what = "message"): T {
  try {
    return withSharedSegments(() => packr.unpack(bytes) as T);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new SerializationError(`${what} could not be unpacked: ${reason}`, { cause: error });
  }
}
