import { AbortError, CollectiveMismatchError, PeerLostError } from "../errors.js";
import { SENT } from "../transport/stream-sockets.js";
import { abortable } from "./abortable.js";
import { chooseReduceAlgorithm } from "./algorithm.js";
import { barrier } from "./algorithms/barrier.js";
import { broadcast } from "./algorithms/broadcast.js";
import { allGather, directReduce, gather } from "./algorithms/direct.js";
import { ringAllGather, ringReduceScatter } from "./algorithms/ring.js";
import { SharedMemoryReduce, type SharedMemoryHost } from "./algorithms/shared-memory.js";
import type { CollectiveBackend, CollectiveCall } from "./backend.js";
import { bootstrap, type BootstrapOptions } from "./bootstrap.js";
import { CallTracker } from "./call-tracker.js";
import type { PeerLinks } from "./links.js";
import { Mailbox, type Message } from "./mailbox.js";
import type { MessageMesh } from "./mesh.js";
import { finishReduce } from "./reduce-ops.js";
import type { SharedBuffers } from "./shm.js";
import type { ReduceOp, Reducible } from "./types.js";
import { decodeValue, encodeValue, packHeader, type Header, type ValueMeta } from "./wire.js";

/** How long a dropped connection may wait for the peer's goodbye before it counts as a death. */
const GOODBYE_GRACE_MS = 150;

/**
 * Connects this rank to its group ({@link bootstrap}) and returns its CPU
 * backend.
 * @throws whatever {@link bootstrap} throws.
 */
export async function createCpuBackend(o: BootstrapOptions): Promise<CpuBackend> {
  const { mesh, links, slots, hostNames } = await bootstrap(o);
  return new CpuBackend(o.rank, o.size, mesh, links, slots, hostNames);
}

/** `result` copied into `out` when the caller gave one, else `result` itself. */
function into(out: Reducible | undefined, result: Reducible): Reducible {
  if (!out) return result;
  out.set(result);
  return out;
}

/**
 * The CPU backend: typed arrays and values in this process's memory, moved by
 * messages over a {@link MessageMesh} (unix stream links between ranks on
 * one host, ZeroMQ over tcp between hosts, chosen per pair) and, when every
 * rank is on one host, large reductions through shared memory. Small payloads go direct (everyone to everyone, one hop); large
 * reductions take the ring over sockets or the shared-memory path
 * (`algorithms/`). Every message carries the call's sequence number and
 * signature, so a mismatched call is caught before its bytes are used
 * ({@link CallTracker}).
 */
export class CpuBackend implements CollectiveBackend {
  /** The `backend` option's value that selects it. */
  readonly name = "zmq";
  readonly rank: number;
  readonly size: number;
  readonly #mesh: MessageMesh;
  // A "written" message dropped unread still owes its sender a release.
  readonly #mailbox = new Mailbox((src, m) => this.#dropped(src, m.header));
  readonly #slots: SharedBuffers | undefined;
  readonly #links: PeerLinks;
  readonly #peers: number[];
  readonly #calls: CallTracker;
  /** What the algorithms see of this backend. */
  readonly #exchange: SharedMemoryHost;
  /** The shared-memory path, when this group has one. */
  readonly #shared: SharedMemoryReduce | undefined;
  readonly #departed = new Map<number, Error>();
  /** Each rank's host name, by rank (errors name a lost peer's host). */
  readonly #hostNames: readonly string[];
  #failureListener: (error: Error) => void = () => {};
  #failure: Error | undefined;
  #closing = false;

  /**
   * @param mesh carries the data messages.
   * @param links the peer links, watched for dead peers (may be `mesh` itself).
   * @param slots the shared buffers of large reductions, when every rank opened everyone's.
   * @param hostNames each rank's host name, by rank.
   */
  constructor(rank: number, size: number, mesh: MessageMesh, links: PeerLinks, slots: SharedBuffers | undefined, hostNames: readonly string[] = []) {
    this.rank = rank;
    this.#hostNames = hostNames;
    this.size = size;
    this.#mesh = mesh;
    this.#links = links;
    links.onLost((p) => this.#onDisconnect(p));
    this.#slots = slots;
    this.#peers = [...Array(size).keys()].filter((p) => p !== rank);
    this.#calls = new CallTracker(rank);
    this.#exchange = {
      rank,
      size,
      peers: this.#peers,
      send: (call, dst, payload, meta, index, written) => this.#send(call, dst, payload, meta, index, written),
      take: (call, src, index) => this.#take(call, src, index),
      departed: (peer) => this.#departed.get(peer),
      failure: () => this.#failure,
      post: (peer, frames) => void this.#mesh.send(peer, frames).catch(() => {}),
    };
    this.#shared = slots && new SharedMemoryReduce(this.#exchange, slots);
    mesh.start({ onMessage: (h, f) => this.#onMessage(h, f), onDisconnect: (p) => this.#onDisconnect(p) });
  }

  /** Whether large reductions use `/dev/shm`. */
  get sharedMemory(): boolean {
    return this.#slots !== undefined;
  }

  // ---- incoming ------------------------------------------------------------

  #onMessage(h: Header, frames: Buffer[]): void {
    if (h.s < 0 || h.s >= this.size || h.s === this.rank) return;
    switch (h.k) {
      case "c": {
        if (typeof h.q !== "number") return;
        const epoch = h.j ?? 0;
        if (!this.#calls.live(epoch)) return this.#dropped(h.s, h);
        this.#calls.checkSignature(epoch, h.q, h.s, h.g);
        this.#mailbox.deliver(h.s, h.q, { header: h, frames }, epoch);
        return;
      }
      case "p":
        this.#mailbox.deliver(h.s, "p", { header: h, frames });
        return;
      case "r":
        // i = 1: the sender mapped our buffer of that collective; its name may go.
        this.#shared?.release(h.s, h.j ?? 0, h.q, h.i === 1);
        return;
      case "x": {
        if (typeof h.q !== "number" || !h.e) return;
        const epoch = h.j ?? 0;
        // An abandoned collective reads no buffer any more.
        this.#shared?.release(h.s, epoch, h.q, false);
        this.#calls.peerAbandoned(epoch, h.q, h.e);
        return;
      }
      case "b": {
        // With a cause: the sender lost a peer and left; that peer is what this group lost.
        const cause = h.e && typeof h.e.rank === "number" && typeof h.e.message === "string" ? h.e : undefined;
        const error = cause
          ? new PeerLostError(`${cause.message} (as ${this.#who(h.s)} found, which then left)`, { rank: cause.rank })
          : new PeerLostError(`${this.#who(h.s)} closed its process group`, { rank: h.s });
        this.#departed.set(h.s, error);
        this.#mailbox.depart(h.s, error);
        this.#shared?.wake();
        // The group is broken for everyone, as when the sender's connection drops without a word.
        if (cause && !this.#closing && !this.#failure) this.#failureListener(error);
        return;
      }
    }
  }

  /**
   * A message of an epoch that is over here, or one left unread: if it told
   * us to read its sender's shared buffer, say we never will, or the sender
   * would wait for us before writing that buffer again.
   */
  #dropped(src: number, h: Header): void {
    if (h.w !== 1 || this.#closing || this.#failure || this.#departed.has(src)) return;
    const release: Header = { k: "r", s: this.rank, q: h.q };
    if (h.j) release.j = h.j;
    this.#mesh.send(src, [packHeader(release)]).catch(() => {});
  }

  #onDisconnect(peer: number): void {
    if (this.#closing || this.#failure || this.#departed.has(peer)) return;
    // The goodbye travels on the other socket of the pair; give it a moment.
    setTimeout(() => {
      if (this.#closing || this.#failure || this.#departed.has(peer)) return;
      this.#failureListener(new PeerLostError(`${this.#who(peer)} disconnected from rank ${this.rank}: its process died or the network to it failed`, { rank: peer }));
    }, GOODBYE_GRACE_MS).unref();
  }

  /** `rank 2 on host gpu-b`: how errors name a peer. */
  #who(peer: number): string {
    const host = this.#hostNames[peer];
    return host === undefined ? `rank ${peer}` : `rank ${peer} on host ${host}`;
  }

  // ---- lifecycle -----------------------------------------------------------

  /** Registers `call` as running; ends it at once if a peer already abandoned it. */
  begin(call: CollectiveCall): void {
    this.#calls.begin(call);
  }

  finish(call: CollectiveCall): void {
    // Not when its epoch is over: everything it left went with it.
    if (this.#calls.finish(call)) this.#mailbox.closeCollective(call.epoch, call.seq);
  }

  beginEpoch(epoch: number): void {
    this.#calls.beginEpoch(epoch);
    this.#mailbox.closeEpochs((e) => !this.#calls.live(e));
  }

  endEpoch(epoch: number): void {
    this.#calls.endEpoch(epoch);
    this.#mailbox.closeEpochs((e) => !this.#calls.live(e));
  }

  abandon(call: CollectiveCall, error: Error): void {
    if (this.#calls.fromPeer(error) || this.#failure || this.#closing) return;
    const header: Header = { k: "x", s: this.rank, q: call.seq, e: this.#calls.abortRecord(error) };
    if (call.epoch) header.j = call.epoch;
    const frames = [packHeader(header)];
    for (const p of this.#peers) if (!this.#departed.has(p)) this.#mesh.send(p, frames).catch(() => {});
  }

  onFailure(listener: (error: Error) => void): void {
    this.#failureListener = listener;
  }

  fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#mailbox.fail(error);
    this.#shared?.wake();
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // A group that failed because a peer was lost says so in its goodbye: a peer
    // that has not noticed yet then fails naming that peer, not this one leaving.
    const lost = this.#failure instanceof PeerLostError && typeof this.#failure.rank === "number" ? this.#failure : undefined;
    if (!this.#failure || lost) {
      const header: Header = { k: "b", s: this.rank };
      if (lost) header.e = { code: lost.code, message: lost.message, rank: lost.rank! };
      const bye = [packHeader(header)];
      const sent = Promise.allSettled(this.#peers.filter((p) => !this.#departed.has(p) && p !== lost?.rank).map((p) => this.#mesh.send(p, bye)));
      // A peer that stopped reading must not hold close() up.
      await Promise.race([sent, new Promise((r) => setTimeout(r, 500).unref())]);
    }
    this.#mailbox.fail(this.#failure ?? new AbortError("process group closed", { rank: this.rank }));
    this.#shared?.wake();
    this.#mesh.close(this.#failure && !lost ? 0 : 500);
    if (this.#links !== this.#mesh) this.#links.close();
    await this.#slots?.close();
  }

  // ---- messages of a call --------------------------------------------------

  #send(call: CollectiveCall, dst: number, payload?: Buffer, meta?: ValueMeta, i?: number, written?: boolean): Promise<void> {
    const header: Header = { k: "c", s: this.rank, q: call.seq, g: call.signature };
    if (call.epoch) header.j = call.epoch;
    if (meta) header.v = meta;
    if (i !== undefined) header.i = i;
    if (written) header.w = 1;
    const frames = payload ? [packHeader(header), payload] : [packHeader(header)];
    const sent = this.#mesh.send(dst, frames);
    // Already settled (a small message on a link): nothing to race.
    return sent === SENT ? sent : abortable(sent, call.signal);
  }

  async #take(call: CollectiveCall, src: number, index?: number): Promise<Message> {
    const m = await this.#mailbox.take(src, call.seq, call.signal, call.epoch);
    if (m.header.g !== call.signature) throw this.#calls.mismatch(call, src, m.header.g);
    if (index !== undefined && m.header.i !== index) {
      throw new CollectiveMismatchError(`collective #${call.seq} (${call.signature}): rank ${src} sent part ${m.header.i}, rank ${this.rank} expected ${index}`, { rank: src });
    }
    return m;
  }

  // ---- collectives ---------------------------------------------------------

  barrier(call: CollectiveCall): Promise<void> {
    return barrier(this.#exchange, call);
  }

  broadcast(value: unknown, root: number, call: CollectiveCall): Promise<unknown> {
    return broadcast(this.#exchange, value, root, call);
  }

  allGather(value: unknown, call: CollectiveCall): Promise<unknown[]> {
    return allGather(this.#exchange, value, call);
  }

  gather(value: unknown, root: number, call: CollectiveCall): Promise<unknown[] | undefined> {
    return gather(this.#exchange, value, root, call);
  }

  async allReduce(data: Reducible, op: ReduceOp, call: CollectiveCall, out?: Reducible): Promise<Reducible> {
    switch (chooseReduceAlgorithm({ bytes: data.byteLength, size: this.size, sharedMemory: this.#mayShare(call) })) {
      case "local": {
        const result = out ?? data.slice();
        if (out && out !== data) out.set(data);
        finishReduce(result, op, 1);
        return result;
      }
      case "direct":
        return into(out, await directReduce(this.#exchange, data, op, call, false));
      case "shm":
        return this.#shared!.reduce(data, op, call, false, out);
      case "ring": {
        const mine = await ringReduceScatter(this.#exchange, data, op, call);
        return ringAllGather(this.#exchange, data, mine, call, out);
      }
    }
  }

  async reduceScatter(data: Reducible, op: ReduceOp, call: CollectiveCall, out?: Reducible): Promise<Reducible> {
    switch (chooseReduceAlgorithm({ bytes: data.byteLength, size: this.size, sharedMemory: this.#mayShare(call) })) {
      case "local":
        return into(out, data.slice());
      case "direct":
        return into(out, await directReduce(this.#exchange, data, op, call, true));
      case "shm":
        return this.#shared!.reduce(data, op, call, true, out);
      case "ring": {
        const held = await ringReduceScatter(this.#exchange, data, op, call);
        return out ? into(out, held) : held.slice();
      }
    }
  }

  /**
   * Whether `call` may take the shared-memory path. Not while other epochs'
   * collectives may run beside it: shared reductions must run one at a time,
   * and ranks could order two epochs' differently and wait on each other.
   * Every rank decides the same (the worker's concurrency is the same).
   */
  #mayShare(call: CollectiveCall): boolean {
    return this.sharedMemory && !call.concurrent;
  }

  // ---- point to point ------------------------------------------------------

  async send(value: unknown, dst: number, signal: AbortSignal): Promise<void> {
    const { meta, frame } = encodeValue(value, true);
    const gone = this.#departed.get(dst);
    if (gone) throw gone;
    if (this.#failure) throw this.#failure;
    await abortable(this.#mesh.send(dst, [packHeader({ k: "p", s: this.rank, v: meta }), frame]), signal);
  }

  async recv(src: number, signal: AbortSignal): Promise<unknown> {
    const m = await this.#mailbox.take(src, "p", signal);
    return decodeValue(m.header.v, m.frames[0]);
  }
}
