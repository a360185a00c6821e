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
 * Messages from one sender arrive in order (one socket per pair), so a FIFO per
 * key is the protocol's whole ordering guarantee. Waiters reject on their
 * signal, when the sender has said goodbye, or when the group fails.
 */
export class Mailbox {
  #queues = new Map<string, Message[]>();
  #waiters = new Map<string, Waiter[]>();
  /** Collectives below this sequence number are over: their late messages are dropped. */
  #openFrom = 0;
  #departed = new Map<number, Error>();
  #failure: Error | undefined;

  /** Files `message` (from `src` on `channel`), waking the first waiter. */
  deliver(src: number, channel: Channel, message: Message): void {
    if (this.#failure) return;
    if (typeof channel === "number" && channel < this.#openFrom) return;
    const key = `${src}/${channel}`;
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
  take(src: number, channel: Channel, signal: AbortSignal): Promise<Message> {
    const key = `${src}/${channel}`;
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

  /** Collective `seq` is over on this rank: drop its leftovers and any that arrive later. */
  closeCollective(seq: number): void {
    this.#openFrom = Math.max(this.#openFrom, seq + 1);
    for (const key of this.#queues.keys()) {
      const channel = key.slice(key.indexOf("/") + 1);
      if (channel !== "p" && Number(channel) <= seq) this.#queues.delete(key);
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
