/** Server-Sent Events over a fastify reply, as a stream fastify sends (so hooks and logs still run). */
import { PassThrough } from "node:stream";
import type { FastifyReply } from "fastify";

/** Headers of every event stream the gateway sends. */
export const SSE_HEADERS = Object.freeze({
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  "x-accel-buffering": "no",
});

/** An event stream being written. */
export class SseWriter {
  readonly stream = new PassThrough();
  #closed = false;

  /** Ends the stream when the client goes away, and frees what it held at once. */
  constructor(reply: FastifyReply, onClientGone?: () => void) {
    reply.raw.once("close", () => {
      const wasClosed = this.#closed;
      this.#closed = true;
      if (!wasClosed) {
        this.stream.destroy();
        onClientGone?.();
      }
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * True while the client is behind: the stream holds more than its
   * high-water mark (16 KiB) that the socket has not taken. Writers stop and
   * wait for {@link onDrain}, so a client that does not read costs no memory.
   */
  get full(): boolean {
    return this.stream.writableNeedDrain;
  }

  /** Calls `listener` each time the stream drained after being {@link full}. */
  onDrain(listener: () => void): void {
    this.stream.on("drain", listener);
  }

  /** Writes `data: <json>\n\n` (and `event: <name>` first when given). */
  data(json: string, event?: string): void {
    if (this.#closed) return;
    this.stream.write(event ? `event: ${event}\ndata: ${json}\n\n` : `data: ${json}\n\n`);
  }

  /** Writes an SSE frame made elsewhere (a rank's `data: <json>\n\n`) as it is. */
  frame(frame: Buffer): void {
    if (this.#closed) return;
    this.stream.write(frame);
  }

  /** Writes a `:` comment line, which clients ignore: a keep-alive. */
  comment(text = "keep-alive"): void {
    if (!this.#closed) this.stream.write(`: ${text}\n\n`);
  }

  end(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stream.end();
  }

  /** Sends the stream as the reply body. */
  send(reply: FastifyReply, headers: Record<string, string> = {}): FastifyReply {
    return reply.headers({ ...SSE_HEADERS, ...headers }).send(this.stream);
  }
}
