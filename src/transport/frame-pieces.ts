/** The largest piece a message is split into for a CURVE socket over tcp. */
export const MAX_TCP_FRAME_BYTES = 1024 * 1024;

/**
 * The `maxMessageSize` of a CURVE server over tcp: a piece, plus room for
 * what CURVE wraps around it on the wire (the limit applies to the wrapped
 * frame). libzmq reads a whole frame before the CURVE handshake looks at it,
 * so this is what a peer that never completes the handshake can make the
 * server buffer per connection.
 */
export const TCP_FRAME_LIMIT = MAX_TCP_FRAME_BYTES + 4096;

/** `bytes` as frames of at most `max` bytes each: views of it, not copies. */
export function splitFrame(bytes: Buffer, max = MAX_TCP_FRAME_BYTES): Buffer[] {
  if (bytes.byteLength <= max) return [bytes];
  const pieces: Buffer[] = [];
  for (let offset = 0; offset < bytes.byteLength; offset += max) pieces.push(bytes.subarray(offset, Math.min(offset + max, bytes.byteLength)));
  return pieces;
}

/** The frames of one split message, joined (the frame itself, uncopied, when there is one). */
export function joinFrames(frames: Buffer[]): Buffer {
  return frames.length === 1 ? frames[0]! : Buffer.concat(frames);
}
