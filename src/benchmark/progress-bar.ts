/**
 * The progress line `multirank bench` shows on a terminal. Writes nothing at
 * all when the stream is not a TTY, so piped and CI output stays clean.
 */
import type { BenchmarkProgress } from "./options.js";

/** The part of a stream the bar needs: `process.stderr` fits. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Formats one progress line, `width` columns at most, with no control characters. Pure.
 *
 * @example formatProgressLine({ phase: "measure", worldSize: 2, worldSizeIndex: 1, worldSizeCount: 3, completed: 50, total: 200 }, 60)
 * // "world size 2 (2/3) measure [#####...............]  50/200"
 */
export function formatProgressLine(progress: BenchmarkProgress, width = 80): string {
  const head = `world size ${progress.worldSize} (${progress.worldSizeIndex + 1}/${progress.worldSizeCount}) ${progress.phase}`;
  if (progress.total <= 0) return head.slice(0, width);
  const count = `${String(progress.completed).padStart(String(progress.total).length)}/${progress.total}`;
  const barWidth = Math.max(0, Math.min(40, width - head.length - count.length - 4));
  if (barWidth < 5) return `${head} ${count}`.slice(0, width);
  const filled = Math.floor((barWidth * Math.min(progress.completed, progress.total)) / progress.total);
  return `${head} [${"#".repeat(filled)}${".".repeat(barWidth - filled)}] ${count}`;
}

/**
 * A single-line progress bar, redrawn in place at most every `intervalMs`
 * (phase changes always draw). A no-op unless `stream.isTTY`.
 *
 * @example
 * const bar = new ProgressBar(process.stderr);
 * await benchmarkWorldSizes({ worker, onProgress: (p) => bar.update(p) });
 * bar.clear();
 */
export class ProgressBar {
  readonly #stream: ProgressStream;
  readonly #enabled: boolean;
  readonly #intervalMs: number;
  #lastDraw = 0;
  #lastPhase = "";
  #shown = false;

  /** @param intervalMs minimum time between two redraws in one phase. @default 100 */
  constructor(stream: ProgressStream, intervalMs = 100) {
    this.#stream = stream;
    this.#enabled = stream.isTTY === true;
    this.#intervalMs = intervalMs;
  }

  /** Whether the bar draws anything (the stream is a TTY). */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Redraws the line for `progress`, unless it drew less than `intervalMs` ago in the same phase. */
  update(progress: BenchmarkProgress): void {
    if (!this.#enabled) return;
    const now = Date.now();
    const key = `${progress.worldSizeIndex}:${progress.phase}`;
    const last = progress.total > 0 && progress.completed >= progress.total;
    if (key === this.#lastPhase && !last && now - this.#lastDraw < this.#intervalMs) return;
    this.#lastPhase = key;
    this.#lastDraw = now;
    this.#shown = true;
    // A pseudo-terminal may report 0 columns; assume 80 rather than draw nothing.
    const columns = this.#stream.columns !== undefined && this.#stream.columns >= 20 ? this.#stream.columns : 80;
    // "\r" back to column 0, "\x1b[K" erases what a longer previous line left; one column spare so the line never wraps.
    this.#stream.write(`\r${formatProgressLine(progress, columns - 1)}\x1b[K`);
  }

  /** Erases the line, leaving the cursor at column 0. Idempotent. */
  clear(): void {
    if (!this.#enabled || !this.#shown) return;
    this.#shown = false;
    this.#stream.write("\r\x1b[K");
  }
}
