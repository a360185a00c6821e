/**
 * A single-consumer queue fed by pushes from elsewhere (a socket loop) and
 * drained with `await next()`. `end()` finishes it after what is buffered;
 * `fail()` does the same but then throws.
 */
export class AsyncQueue<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #ended = false;
  #error: unknown;
  #failed = false;

  get size(): number {
    return this.#items.length - this.#head;
  }

  get closed(): boolean {
    return this.#ended || this.#failed;
  }

  push(item: T): void {
    if (this.closed) return;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve({ value: item, done: false });
      return;
    }
    this.#items.push(item);
  }

  end(): void {
    if (this.closed) return;
    this.#ended = true;
    this.#wake();
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.#failed = true;
    this.#error = error;
    this.#wake();
  }

  /** The next item; `{ done: true }` after `end()`; throws after `fail()`, once the buffer is drained. */
  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined as T;
      // Compact now and then so a long stream does not keep every item alive.
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#failed) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  #wake(): void {
    if (!this.#waiter || this.size > 0) return;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (this.#failed) waiter.reject(this.#error);
    else waiter.resolve({ value: undefined, done: true });
  }
}
