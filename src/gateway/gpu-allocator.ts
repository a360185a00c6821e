/** Hands out whole GPUs to runners, so two runners never share one. */

/** Tracks which CUDA device indices are free. */
export class GpuAllocator {
  readonly #free: number[];

  /** @param count CUDA devices on this host. */
  constructor(count: number) {
    this.#free = [...Array(Math.max(0, count)).keys()];
  }

  /** GPUs not in use. */
  get available(): number {
    return this.#free.length;
  }

  /** Takes `count` GPUs (lowest indices first), or returns undefined when too few are free. */
  take(count: number): number[] | undefined {
    if (count === 0) return [];
    if (count > this.#free.length) return undefined;
    return this.#free.splice(0, count);
  }

  /** Returns GPUs taken with {@link take}. */
  give(indices: readonly number[]): void {
    this.#free.push(...indices);
    this.#free.sort((a, b) => a - b);
  }
}
