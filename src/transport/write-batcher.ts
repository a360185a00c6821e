import type net from "node:net";

/**
 * Gathers the small messages written to one socket within one turn of the
 * event loop and hands them to the kernel in one write. A write to a unix
 * socket is a system call that also wakes the reader: one per message was
 * the largest single cost of a gateway request (a runner sends each request
 * to every rank, and each rank answers, so under load many messages go out
 * per turn). Order is kept: a message written by other means (a large one,
 * by reference) must {@link WriteBatcher.flush} first.
 *
 * Everything written in a turn goes out in one batch when the turn ends
 * (`setImmediate`, after the poll phase: every socket read in that turn has
 * had its say), or at once when a batch grows past {@link FLUSH_BYTES}. A
 * process that exits (`process.exit`) flushes what is pending first, as a
 * write made at once would have reached the kernel before the exit.
 */
export class WriteBatcher {
  /** The socket written to. */
  readonly socket: net.Socket;
  #pending: Buffer[] = [];
  #bytes = 0;

  constructor(socket: net.Socket) {
    this.socket = socket;
  }

  /** Bytes waiting for the end of the turn. */
  get pendingBytes(): number {
    return this.#bytes;
  }

  /** Queues one encoded message; it is written with the others of this turn. */
  push(message: Buffer): void {
    this.#pending.push(message);
    this.#bytes += message.byteLength;
    if (this.#bytes >= FLUSH_BYTES) this.flush();
    else if (this.#pending.length === 1) scheduleFlush(this);
  }

  /** Writes what is pending now, as one buffer. A closed socket drops it: a lost peer reaches callers another way. */
  flush(): void {
    const count = this.#pending.length;
    if (count === 0) return;
    const pending = this.#pending;
    const bytes = this.#bytes;
    this.#pending = [];
    this.#bytes = 0;
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(count === 1 ? pending[0]! : Buffer.concat(pending, bytes));
  }
}

/** A batch this large is written at once instead of at the end of the turn (bounds what one turn holds). */
export const FLUSH_BYTES = 64 * 1024;

/** Batchers with something pending, flushed together once per turn. */
const dirty = new Set<WriteBatcher>();
let scheduled = false;
let exitHooked = false;

function scheduleFlush(batcher: WriteBatcher): void {
  dirty.add(batcher);
  if (scheduled) return;
  scheduled = true;
  setImmediate(flushAll);
  if (!exitHooked) {
    exitHooked = true;
    process.on("exit", flushAll);
  }
}

function flushAll(): void {
  scheduled = false;
  for (const batcher of dirty) batcher.flush();
  dirty.clear();
}
