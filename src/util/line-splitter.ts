import type { Readable } from "node:stream";

/**
 * Calls `onLine` for each complete line of `stream` (and the last partial
 * line at its end). Lines longer than `maxLine` are cut so a rank writing
 * megabytes without a newline cannot grow the runner's memory without bound.
 */
export function forEachLine(stream: Readable, onLine: (line: string) => void, maxLine = 64 * 1024): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    pending += chunk;
    let start = 0;
    for (let nl = pending.indexOf("\n", start); nl !== -1; nl = pending.indexOf("\n", start)) {
      onLine(pending.slice(start, nl));
      start = nl + 1;
    }
    pending = pending.slice(start);
    if (pending.length > maxLine) {
      onLine(pending.slice(0, maxLine));
      pending = "";
    }
  });
  stream.on("end", () => {
    if (pending) onLine(pending);
    pending = "";
  });
}

/** Keeps the last `capacity` lines. */
export class LineTail {
  readonly #lines: string[] = [];
  constructor(readonly capacity = 40) {}
  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.capacity) this.#lines.shift();
  }
  toString(): string {
    return this.#lines.join("\n");
  }
}
