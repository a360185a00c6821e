import type { Header } from "./wire.js";

/** One received data message: its header and payload frames. */
export interface Message {
  header: Header;
  frames: Buffer[];
}

/** A mailbox channel: a collective's sequence number, or `"p"` for point-to-point. */
export type Channel = number | "p";

interface Waiter {
  resolve(message: Message): void;
  reject(error: unknown): void;
}

/**
 * Received messages, queued per (sender, channel) until someone takes them.
 * A collective's channel is its (epoch, sequence number). Messages from one
 * sender arrive in order (one socket per pair), so a FIFO per key is the
 * protocol's whole ordering guarantee. Waiters reject on their signal, when
 * the sender has said goodbye, or when the group fails. Collective messages
 * dropped unread go to `onDrop` (the shared-memory path owes their senders a
 * release).
 */
export class Mailbox {
  #queues = new Map<string, Message[]>();
  #waiters = new Map<string, Waiter[]>();
  /** Per epoch: collectives below this sequence number are over, their late messages dropped. */
  #openFrom = new Map<number, number>();
  #departed = new Map<number, Error>();
  #failure: Error | undefined;
  readonly #onDrop: (src: number, message: Message) => void;

  constructor(onDrop: (src: number, message: Message) => void = () => {}) {
    this.#onDrop = onDrop;
  }

  /** Files `message` (from `src` on `channel` of `epoch`), waking the first waiter. */
  deliver(src: number, channel: Channel, message: Message, epoch = 0): void {
    if (this.#failure) return;
    if (typeof channel === "number" && channel < (this.#openFrom.get(epoch) ?? 0)) {
      this.#onDrop(src, message);
      return;
    }
    const key = keyOf(src, channel, epoch);
    const waiters = this.#waiters.get(key);
    const waiter = waiters?.shift();
    if (waiter) {
      if (waiters!.length === 0) this.#waiters.delete(key);
      waiter.resolve(message);
      return;
    }
    let queue = this.#queues.get(key);
    if (!queue) this.#queues.set(key, (queue = []));
    queue.push(message);
  }

  /** The next message from `src` on `channel`. Rejects with `signal.reason`, the departure error or the failure. */
  take(src: number, channel: Channel, signal: AbortSignal, epoch = 0): Promise<Message> {
    const key = keyOf(src, channel, epoch);
    const queue = this.#queues.get(key);
    const queued = queue?.shift();
    if (queued) {
      if (queue!.length === 0) this.#queues.delete(key);
      return Promise.resolve(queued);
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (signal.aborted) return Promise.reject(signal.reason);
    const gone = this.#departed.get(src);
    if (gone) return Promise.reject(gone);
    return new Promise<Message>((resolve, reject) => {
      const onAbort = (): void => {
        const list = this.#waiters.get(key);
        const at = list?.indexOf(waiter) ?? -1;
        if (at >= 0) list!.splice(at, 1);
        if (list && list.length === 0) this.#waiters.delete(key);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        resolve: (m) => {
          signal.removeEventListener("abort", onAbort);
          resolve(m);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      let list = this.#waiters.get(key);
      if (!list) this.#waiters.set(key, (list = []));
      list.push(waiter);
    });
  }

  /** Collective (`epoch`, `seq`) is over on this rank: drop its leftovers, and older ones', and any that arrive later. */
  closeCollective(epoch: number, seq: number): void {
    this.#openFrom.set(epoch, Math.max(this.#openFrom.get(epoch) ?? 0, seq + 1));
    this.#dropQueued((e, q) => e === epoch && q <= seq);
  }

  /** Drops the queued messages of every epoch `gone(epoch)` says is over, and forgets those epochs. */
  closeEpochs(gone: (epoch: number) => boolean): void {
    for (const epoch of this.#openFrom.keys()) if (gone(epoch)) this.#openFrom.delete(epoch);
    this.#dropQueued((e) => gone(e));
  }

  #dropQueued(drop: (epoch: number, seq: number) => boolean): void {
    for (const [key, queue] of this.#queues) {
      const [src, epoch, seq] = key.split("/");
      if (seq === undefined || !drop(Number(epoch), Number(seq))) continue;
      this.#queues.delete(key);
      for (const message of queue) this.#onDrop(Number(src), message);
    }
  }

  /** `src` closed its group: whoever waits for a message it never sent rejects with `error`, now and later. */
  depart(src: number, error: Error): void {
    this.#departed.set(src, error);
    for (const [key, list] of this.#waiters) {
      if (key.startsWith(`${src}/`)) {
        this.#waiters.delete(key);
        for (const w of list) w.reject(error);
      }
    }
  }

  /** Rejects every waiter, now and later, with `error`, and drops every queued message. */
  fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#queues.clear();
    const all = [...this.#waiters.values()].flat();
    this.#waiters.clear();
    for (const w of all) w.reject(error);
  }
}

/** `src/p` for point-to-point, `src/epoch/seq` for a collective. */
function keyOf(src: number, channel: Channel, epoch: number): string {
  return channel === "p" ? `${src}/p` : `${src}/${epoch}/${channel}`;
}
