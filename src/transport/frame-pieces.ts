/**
 * The largest frame a CURVE server over tcp takes (its `maxMessageSize`).
 * libzmq reads a whole frame before the CURVE handshake looks at it, so this
 * is what a peer that never completes the handshake can make the server
 * buffer per connection; larger messages travel in pieces of this size.
 */
export const MAX_TCP_FRAME_BYTES = 1024 * 1024;

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
