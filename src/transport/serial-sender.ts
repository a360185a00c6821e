type Frames = Array<Buffer | Uint8Array | string>;

/**
 * Serialises sends on one ZeroMQ socket. zeromq.js allows a single send in
 * flight per socket; callers here send from many places at once (requests,
 * cancels, stream items), so sends are queued and written in order.
 */
export class SerialSender {
  readonly #socket: { send(frames: Frames): Promise<void> };
  #queue: Array<{ frames: Frames; resolve: () => void; reject: (error: unknown) => void }> = [];
  #draining = false;

  constructor(socket: { send(frames: Frames): Promise<void> }) {
    this.#socket = socket;
  }

  /** Queues `frames`; resolves once ZeroMQ has taken them. */
  send(frames: Frames): Promise<void> {
    if (!this.#draining) {
      // Nothing queued: hand the frames to ZeroMQ now, and hold later sends until it took them.
      this.#draining = true;
      let sent: Promise<void>;
      try {
        sent = this.#socket.send(frames);
      } catch (error) {
        // zeromq.js throws synchronously on a closed or busy socket: keep the queue usable.
        this.#afterDirectSend();
        return Promise.reject(error);
      }
      sent.then(
        () => this.#afterDirectSend(),
        () => this.#afterDirectSend(),
      );
      return sent;
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ frames, resolve, reject });
      if (!this.#draining) void this.#drain();
    });
  }

  /** Rejects everything still queued (the socket is closing). */
  abort(error: unknown): void {
    const queued = this.#queue;
    this.#queue = [];
    for (const entry of queued) entry.reject(error);
  }

  #afterDirectSend(): void {
    this.#draining = false;
    if (this.#queue.length > 0) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queue.length > 0) {
        const entry = this.#queue.shift()!;
        try {
          await this.#socket.send(entry.frames);
          entry.resolve();
        } catch (error) {
          entry.reject(error);
        }
      }
    } finally {
      this.#draining = false;
    }
  }
}
