/**
 * Where a streaming job's unread chunks wait for their readers (an SSE
 * connection, Runpod `/stream` polls). Each chunk is read once. A gateway on
 * its own keeps them in memory ({@link MemoryChunkBuffer}); gateways sharing a
 * Redis queue keep them in Redis, so a reader on any of them takes them.
 *
 * Both bound what they hold: past the high-water mark, `push` returns a
 * promise that resolves once readers took enough, and the producer (the
 * dispatcher pulling from the runner) waits on it.
 */

/** What a {@link Job} needs from its chunk store. */
export interface ChunkBuffer {
  /**
   * True when the buffer itself tells readers of a chunk once it is stored
   * (a shared store, where a reader told earlier might find nothing yet);
   * false when the job tells them as it pushes.
   */
  readonly announces: boolean;
  /**
   * Adds a frame (`data: <json>\n\n`). `undefined` while the unread chunks
   * stay within the high-water mark; past it, a promise that resolves once
   * readers made room, or {@link release} was called.
   */
  push(frame: Buffer): Promise<void> | undefined;
  /** Takes the oldest unread frame, or `undefined` when there is none. */
  take(): Promise<Buffer | undefined>;
  /** Takes every unread frame, oldest first. */
  takeAll(): Promise<Buffer[]>;
  /** How many frames are unread. */
  count(): Promise<number>;
  /** Drops every unread frame (a retry starts the stream over; a cancelled stream has no reader). */
  clear(): void;
  /** Wakes a producer waiting for room (the job ended, or its attempt was aborted). */
  release(): void;
}

/** Unread chunks at most, whatever their size: a second high-water mark, for floods of tiny chunks. */
export const MAX_UNREAD_CHUNKS = 10_000;

/** The in-memory {@link ChunkBuffer}: one gateway's readers. */
export class MemoryChunkBuffer implements ChunkBuffer {
  readonly announces = false;
  readonly #highWaterMark: number;
  #frames: Buffer[] = [];
  #bytes = 0;
  #waiters: Array<() => void> = [];

  /** @param highWaterMark bytes held before `push` asks the producer to wait. */
  constructor(highWaterMark: number) {
    this.#highWaterMark = highWaterMark;
  }

  push(frame: Buffer): Promise<void> | undefined {
    this.#frames.push(frame);
    this.#bytes += frame.length;
    if (!this.#full()) return undefined;
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  take(): Promise<Buffer | undefined> {
    const frame = this.#frames.shift();
    if (frame !== undefined) {
      this.#bytes -= frame.length;
      if (!this.#full()) this.release();
    }
    return Promise.resolve(frame);
  }

  takeAll(): Promise<Buffer[]> {
    const frames = this.#frames;
    this.#frames = [];
    this.#bytes = 0;
    this.release();
    return Promise.resolve(frames);
  }

  count(): Promise<number> {
    return Promise.resolve(this.#frames.length);
  }

  clear(): void {
    this.#frames = [];
    this.#bytes = 0;
    this.release();
  }

  release(): void {
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  #full(): boolean {
    return this.#bytes > this.#highWaterMark || this.#frames.length > MAX_UNREAD_CHUNKS;
  }
}
