/**
 * Which epochs a rank still takes messages for. An epoch is the id of the
 * request whose `call()` made a collective (0 outside requests); the runner
 * numbers requests in increasing order and every rank starts them in that
 * order, so an epoch at or below the highest one begun here and not running
 * is over (ended, or skipped because it was cancelled before it started).
 * Above it, a faster peer is already in a request this rank has not reached:
 * its messages wait for it.
 *
 * How much can wait: a peer cannot finish a collective without this rank, so
 * it runs ahead only through collectives that fail on their own (each costs
 * it a timeout or an abort); when this rank begins an epoch, everything kept
 * for the epochs before it that are not running goes.
 */
export class EpochClock {
  readonly #open = new Set<number>();
  #horizon = 0;

  /** Epoch `epoch` starts here. */
  begin(epoch: number): void {
    this.#open.add(epoch);
    if (epoch > this.#horizon) this.#horizon = epoch;
  }

  /** Epoch `epoch` is over here. */
  end(epoch: number): void {
    this.#open.delete(epoch);
  }

  /** Whether messages of `epoch` may still be read here: epoch 0, one running, or one not begun yet. */
  live(epoch: number): boolean {
    return epoch === 0 || epoch > this.#horizon || this.#open.has(epoch);
  }
}
