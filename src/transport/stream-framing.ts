/**
 * Messages of one or more frames over a byte stream (a unix or tcp socket).
 * On the wire: `[u32 body length][u16 frame count][u32 frame length]... [frame bytes]...`,
 * little-endian. Frames keep their boundaries, like ZeroMQ multipart messages.
 */

/** Largest body one message may have (the length prefix is 32 bits). */
export const MAX_MESSAGE_BYTES = 0xffff_ffff;
/** Messages up to this size are written as one copied buffer; larger ones by reference. */
export const COPY_MAX_BYTES = 16 * 1024;

/** Total body size of `frames` once encoded. */
export function bodyLength(frames: readonly Buffer[]): number {
  let n = 2 + 4 * frames.length;
  for (const f of frames) n += f.byteLength;
  return n;
}

/** The length prefix and frame table of a message of `frames` (the frames follow it). */
export function encodePrefix(frames: readonly Buffer[], body: number): Buffer {
  const prefix = Buffer.allocUnsafe(4 + 2 + 4 * frames.length);
  prefix.writeUInt32LE(body, 0);
  prefix.writeUInt16LE(frames.length, 4);
  for (let i = 0; i < frames.length; i++) prefix.writeUInt32LE(frames[i].byteLength, 6 + 4 * i);
  return prefix;
}

/** The whole message of `frames` in one new buffer (small messages: one write, no reference kept). */
export function encodeMessage(frames: readonly Buffer[]): Buffer {
  const body = bodyLength(frames);
  const out = Buffer.allocUnsafe(4 + body);
  const prefix = encodePrefix(frames, body);
  prefix.copy(out, 0);
  let at = prefix.byteLength;
  for (const f of frames) {
    f.copy(out, at);
    at += f.byteLength;
  }
  return out;
}

/** Frames of a message body; `undefined` when the body is malformed. Frames are views, not copies. */
function splitBody(body: Buffer): Buffer[] | undefined {
  if (body.byteLength < 2) return undefined;
  const n = body.readUInt16LE(0);
  let at = 2 + 4 * n;
  if (at > body.byteLength) return undefined;
  const frames: Buffer[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const len = body.readUInt32LE(2 + 4 * i);
    if (at + len > body.byteLength) return undefined;
    frames[i] = body.subarray(at, at + len);
    at += len;
  }
  return at === body.byteLength ? frames : undefined;
}

/**
 * Cuts a stream back into messages. Whole messages inside one chunk are
 * handed out as views of it; a message split across chunks is assembled in a
 * buffer of its announced size. A malformed message is reported, not thrown:
 * the stream is then out of step and the caller should drop it.
 */
export class MessageDecoder {
  readonly #onMessage: (frames: Buffer[]) => void;
  readonly #onMalformed: (why: string) => void;
  /** Bytes of a length prefix cut by a chunk boundary. */
  #prefix: Buffer | undefined;
  /** The body being assembled, and how much of it has arrived. */
  #body: Buffer | undefined;
  #filled = 0;
  #broken = false;

  #maxBytes: number;

  /** `maxBytes`: a longer announced body counts as malformed (a peer must not make us allocate gigabytes). */
  constructor(onMessage: (frames: Buffer[]) => void, onMalformed: (why: string) => void, maxBytes = MAX_MESSAGE_BYTES) {
    this.#onMessage = onMessage;
    this.#onMalformed = onMalformed;
    this.#maxBytes = maxBytes;
  }

  /** Changes the largest body accepted from the next message on (a peer gets more room once it named itself). */
  setMaxBytes(maxBytes: number): void {
    this.#maxBytes = maxBytes;
  }

  /** Stops handing out messages, even from the chunk being read (the connection is being dropped). */
  stop(): void {
    this.#broken = true;
  }

  /** Feeds the next chunk of the stream. */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.byteLength && !this.#broken) {
      if (this.#body) {
        const n = Math.min(this.#body.byteLength - this.#filled, chunk.byteLength - at);
        chunk.copy(this.#body, this.#filled, at, at + n);
        this.#filled += n;
        at += n;
        if (this.#filled === this.#body.byteLength) {
          const body = this.#body;
          this.#body = undefined;
          this.#emit(body);
        }
        continue;
      }
      if (this.#prefix || chunk.byteLength - at < 4) {
        const have = this.#prefix ?? Buffer.alloc(0);
        const take = Math.min(4 - have.byteLength, chunk.byteLength - at);
        this.#prefix = Buffer.concat([have, chunk.subarray(at, at + take)]);
        at += take;
        if (this.#prefix.byteLength < 4) return;
        const len = this.#prefix.readUInt32LE(0);
        this.#prefix = undefined;
        if (len > this.#maxBytes) return this.#tooLong(len);
        this.#startBody(len);
        continue;
      }
      const len = chunk.readUInt32LE(at);
      at += 4;
      if (len > this.#maxBytes) return this.#tooLong(len);
      if (chunk.byteLength - at >= len) {
        this.#emit(chunk.subarray(at, at + len));
        at += len;
      } else {
        this.#startBody(len);
      }
    }
  }

  #startBody(len: number): void {
    this.#body = Buffer.allocUnsafe(len);
    this.#filled = 0;
    if (len === 0) {
      this.#body = undefined;
      this.#emit(Buffer.alloc(0));
    }
  }

  #tooLong(len: number): void {
    this.#broken = true;
    this.#onMalformed(`a message of ${len} bytes is over the limit of ${this.#maxBytes}`);
  }

  #emit(body: Buffer): void {
    const frames = splitBody(body);
    if (frames) this.#onMessage(frames);
    else {
      this.#broken = true;
      this.#onMalformed("a message's frame table does not match its length");
    }
  }
}
