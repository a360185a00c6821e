import os from "node:os";
import path from "node:path";
import { isIP } from "node:net";
import * as zmq from "zeromq";
import type { Logger } from "pino";
import { AbortError, CollectiveMismatchError, PeerLostError, TimeoutError } from "../errors.js";
import { abortable } from "./abortable.js";
import { chooseReduceAlgorithm } from "./algorithm.js";
import type { CollectiveBackend, CollectiveCall } from "./backend.js";
import { splitRanges, type Range } from "./chunks.js";
import { EpochClock } from "./epochs.js";
import { Mailbox, type Message } from "./mailbox.js";
import { PeerLinks } from "./links.js";
import { ZmqMesh, type MessageMesh } from "./mesh.js";
import { SENT } from "../transport/stream-sockets.js";
import { allocLike, finishReduce, reduceInto } from "./reduce-ops.js";
import { isLoopback } from "../util/loopback.js";
import { rendezvous, tcpEndpoint, type RendezvousPlan } from "./rendezvous.js";
import type { GroupAuth, RefusalLog } from "./auth.js";
import { watchFailedHandshakes, ZapHandler } from "../transport/zap.js";
import { TCP_FRAME_LIMIT } from "../transport/frame-pieces.js";
import { MappedSlots, reduceParts, SharedSlots, SHM_BUFFERS, sharedKind, type SharedBuffers } from "./shm.js";
import { sweepLeftovers } from "../shm/sweep.js";
import type { ReduceOp, Reducible } from "./types.js";
import { bytesOf, decodeValue, encodeValue, packHeader, viewAs, type Header, type ValueMeta } from "./wire.js";

/** Inputs of {@link createZmqBackend} (validated by the facade). */
export interface ZmqBackendOptions {
  rank: number;
  size: number;
  masterAddr: string;
  masterPort: number;
  transport: "auto" | "ipc" | "tcp";
  sharedMemory: boolean;
  hostAddr?: string;
  signal: AbortSignal;
  status: { waiting: string };
  log: Logger;
  /** Proves and checks rendezvous messages and link hellos with the group's secret. */
  auth: GroupAuth;
  /** Where peers without the secret are logged. */
  refusals: RefusalLog;
}

/** How long a dropped connection may wait for the peer's goodbye before it counts as a death. */
const GOODBYE_GRACE_MS = 150;
/** Broadcasts to more ranks than this go down a binomial tree instead of straight from the root. */
const FLAT_BROADCAST_MAX = 8;

function firstExternalIPv4(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * Rendezvous, then build the mesh: the CPU backend. Across hosts its messages
 * go over ZeroMQ (tcp, with heartbeats); on one host over unix stream links
 * (see {@link PeerLinks} for why), with large reductions in `/dev/shm`.
 *
 * Nothing gets in without the group's secret: the rendezvous and the links
 * check proofs made with it, and over tcp the ZeroMQ data sockets use CURVE,
 * each rank's key pair made here and its public key sent in the (proven)
 * rendezvous, with a ZAP handler that admits only the peers' keys. CURVE
 * costs some bandwidth (it encrypts), but the data sockets' endpoints are in
 * the table, which crosses the network in clear: a handshake that only
 * needed the server's key would let anyone who saw the table push data.
 * @throws whatever {@link rendezvous} throws; the zmq error when a data socket cannot bind.
 */
export async function createZmqBackend(o: ZmqBackendOptions): Promise<ZmqBackend> {
  let pull: zmq.Pull | undefined;
  let slots: SharedBuffers | undefined;
  let links: PeerLinks | undefined;
  const pushes = new Map<number, zmq.Push>();
  const peers = [...Array(o.size).keys()].filter((r) => r !== o.rank);
  let tcp = false;
  // Over tcp: the data sockets' own context (its ZAP handler must not judge anyone else's sockets) and key pair.
  let context: zmq.Context | undefined;
  let zap: ZapHandler | undefined;
  let keys: { publicKey: string; secretKey: string } | undefined;
  // What ranks (and runners) killed earlier left on this host: segments, files, link sockets.
  sweepLeftovers();
  // Mapped segments when the addon has them, else tmpfs files; every rank must
  // use the same kind (checked at connect), or none.
  const kind = o.sharedMemory ? sharedKind() : undefined;
  try {
    const { plan } = await rendezvous(
      { ...o, sharedMemory: kind !== undefined },
      {
        bind: async (p: RendezvousPlan) => {
          tcp = p.transport === "tcp";
          const host = o.hostAddr ?? (isLoopback(o.masterAddr) ? o.masterAddr : process.env.MULTIRANK_HOST_ADDR ?? firstExternalIPv4() ?? o.masterAddr);
          const bindHost = host === "localhost" ? "127.0.0.1" : host;
          // Across hosts the data goes over ZeroMQ; on one host over the peer links.
          let endpoint = "links";
          if (tcp) {
            context = new zmq.Context();
            keys = zmq.curveKeyPair();
            // Bound before the PULL, so no connection is ever let in unchecked.
            const refuse = (address: string, why: string): void => o.refusals.refuse(`data peer at ${address}`, `a data connection with ${why}`);
            zap = await ZapHandler.bind(context, o.log, refuse);
            // Small frames only (the mesh sends large ones in pieces): libzmq reads a
            // whole frame before the CURVE handshake judges it.
            pull = new zmq.Pull({ context, linger: 0, ipv6: isIP(bindHost) === 6, curveServer: true, curveSecretKey: keys.secretKey, maxMessageSize: TCP_FRAME_LIMIT });
            watchFailedHandshakes(pull, refuse);
            await pull.bind(tcpEndpoint(bindHost, "*"));
            endpoint = pull.lastEndpoint ?? "";
          }
          const linkPath = tcp ? undefined : path.join(os.tmpdir(), `multirank-${p.groupId}-r${o.rank}-p${process.pid}.sock`);
          const listening = await PeerLinks.listen(linkPath, bindHost, o.log, { auth: o.auth, refusals: o.refusals, groupId: p.groupId, rank: o.rank });
          links = listening.links;
          if (p.sharedMemory) {
            try {
              slots = kind === "mmap" ? new MappedSlots(p.groupId, o.rank, peers) : SharedSlots.create(p.groupId, o.rank);
            } catch (error) {
              o.log.warn({ err: error }, "shared memory unavailable; large reductions go over sockets");
            }
          }
          // One string per rank in the table: "<zmq data endpoint or links> <links address> <pid> <shared kind or -> <CURVE public key or ->".
          endpoint = `${endpoint} ${listening.address} ${process.pid} ${slots?.kind ?? "-"} ${keys?.publicKey ?? "-"}`;
          return { endpoint, sharedMemory: slots !== undefined };
        },
        connect: async (table, shm, signal) => {
          const endpoints = table.map((e) => e.split(" ")[0]);
          const publicKeys = table.map((e) => e.split(" ")[4] ?? "-");
          const connected: Promise<void>[] = [links!.link(o.rank, table.map((e) => e.split(" ")[1] ?? ""), signal)];
          zap?.allow(peers.map((peer) => publicKeys[peer]));
          for (const peer of tcp ? peers : []) {
            const push = new zmq.Push({
              context,
              linger: 500,
              ipv6: endpoints[peer].startsWith("tcp://["),
              curveServerKey: publicKeys[peer],
              curvePublicKey: keys!.publicKey,
              curveSecretKey: keys!.secretKey,
            });
            // ZMTP heartbeats turn a silent peer (host down, cable pulled) into a
            // disconnect within a second; on one host the kernel reports deaths at once.
            push.heartbeatInterval = 250;
            push.heartbeatTimeout = 750;
            connected.push(new Promise((resolve) => push.events.on("connect", () => resolve())));
            push.connect(endpoints[peer]);
            pushes.set(peer, push);
          }
          await abortable(Promise.all(connected), signal);
          const sameKind = table.every((e) => e.split(" ")[3] === slots?.kind);
          if (slots && shm && sameKind) slots.openPeers(peers, table.map((e) => Number(e.split(" ")[2])));
          else if (slots) {
            await slots.close();
            slots = undefined;
          }
        },
      },
    );
    // Every rank has connected and opened our files: the names can go, so a
    // killed rank leaves nothing behind in /tmp or /dev/shm.
    slots?.unlinkOwn();
    links!.unlink();
    o.log.debug({ transport: plan.transport, sharedMemory: plan.sharedMemory && slots !== undefined }, "process group connected");
    const mesh = tcp ? new ZmqMesh(pull!, pushes, o.log, zap) : links!;
    return new ZmqBackend(o.rank, o.size, mesh, links!, slots, o.log);
  } catch (error) {
    for (const push of pushes.values()) {
      push.linger = 0;
      push.close();
    }
    pull?.close();
    zap?.close();
    links?.close();
    await slots?.close();
    throw error;
  }
}

const mod = (a: number, n: number): number => ((a % n) + n) % n;

/** `result` copied into `out` when the caller gave one, else `result` itself. */
function into(out: Reducible | undefined, result: Reducible): Reducible {
  if (!out) return result;
  out.set(result);
  return out;
}

/** Whether two views share any byte. */
function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** A `like`-typed view of `length` elements of `memory` from byte `offset` (a mapped shared buffer). */
function typedView(like: Reducible, memory: ArrayBuffer, offset: number, length: number): Reducible {
  return new (like.constructor as new (b: ArrayBuffer, o: number, n: number) => Reducible)(memory, offset, length);
}

/** Rebuilds the error a peer reported when it abandoned a collective. */
function errorFromAbort(e: NonNullable<Header["e"]> & { timeoutMs?: number }): Error {
  switch (e.code) {
    case "MULTIRANK_ERR_TIMEOUT":
      return new TimeoutError(e.message, e.timeoutMs ?? 0, { rank: e.rank });
    case "MULTIRANK_ERR_ABORTED":
      return new AbortError(e.message, { rank: e.rank });
    case "MULTIRANK_ERR_COLLECTIVE_MISMATCH":
      return new CollectiveMismatchError(e.message, { rank: e.rank });
    default:
      return new PeerLostError(e.message, { rank: e.rank });
  }
}

/** The collectives of one epoch on this rank, and what peers sent for those not begun yet. */
interface EpochCalls {
  readonly running: Map<number, CollectiveCall>;
  /** Aborts that peers sent for collectives this rank has not started yet. */
  readonly earlyAborts: Map<number, Error>;
  /** Per collective not begun here yet: the distinct signatures peers sent for it. */
  readonly earlySignatures: Map<number, { src: number; signature: string | undefined }[]>;
  /** Collectives below this sequence number are over here. */
  finishedBelow: number;
}

/** The last use of one of this rank's shared buffers. */
interface BufferUse {
  readonly epoch: number;
  readonly seq: number;
  /** This rank's count of shared-memory reductions: orders uses across epochs (for the segment names). */
  readonly use: number;
  /** Peers told to read it ("written" sent) that have not released it yet. */
  readonly readers: Set<number>;
}

/**
 * The ZeroMQ CPU backend. Small payloads go direct (everyone to everyone, one
 * hop); large reductions take the ring over sockets or, on one host, the
 * shared-memory path. Every message carries the call's sequence number and
 * signature, so a mismatched call is caught before its bytes are used.
 */
export class ZmqBackend implements CollectiveBackend {
  readonly name = "zmq";
  readonly rank: number;
  readonly size: number;
  readonly #mesh: MessageMesh;
  // A "written" message dropped unread still owes its sender a release.
  readonly #mailbox = new Mailbox((src, m) => this.#dropped(src, m.header));
  readonly #slots: SharedBuffers | undefined;
  readonly #links: PeerLinks;
  readonly #log: Logger;
  readonly #peers: number[];
  readonly #clock = new EpochClock();
  /** Per epoch still live here (see {@link EpochClock}): its collectives. */
  readonly #epochs = new Map<number, EpochCalls>();
  /** Errors that came from peers: they are not echoed back. */
  readonly #remoteErrors = new WeakSet<Error>();
  readonly #departed = new Map<number, Error>();
  /**
   * Per own shared buffer: its last use. A use is released peer by peer, by
   * (epoch, seq): sequence numbers restart with every epoch, so "the highest
   * collective released" would say nothing.
   */
  readonly #bufferUse: (BufferUse | undefined)[] = new Array(SHM_BUFFERS).fill(undefined);
  #uses = 0;
  readonly #releaseWaiters = new Set<() => void>();
  /** Shared-memory reductions run one at a time here: they share the buffers and the scratch. */
  #shmQueue: Promise<void> = Promise.resolve();
  #shmRunning = 0;
  /** Reusable read buffers of the shared-memory path (fresh pages cost a fault each, more than the copy). */
  readonly #scratch: ArrayBuffer[] = [];
  #failureListener: (error: Error) => void = () => {};
  #failure: Error | undefined;
  #closing = false;

  constructor(rank: number, size: number, mesh: MessageMesh, links: PeerLinks, slots: SharedBuffers | undefined, log: Logger) {
    this.rank = rank;
    this.size = size;
    this.#mesh = mesh;
    this.#links = links;
    links.onLost((p) => this.#onDisconnect(p));
    this.#slots = slots;
    this.#log = log;
    this.#peers = [...Array(size).keys()].filter((p) => p !== rank);
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
        if (!this.#clock.live(epoch)) return this.#dropped(h.s, h);
        this.#checkSignature(epoch, h.q, h.s, h.g);
        this.#mailbox.deliver(h.s, h.q, { header: h, frames }, epoch);
        return;
      }
      case "p":
        this.#mailbox.deliver(h.s, "p", { header: h, frames });
        return;
      case "r":
        // i = 1: the sender mapped our buffer of that collective; its name may go.
        this.#release(h.s, h.j ?? 0, h.q, h.i === 1);
        return;
      case "x": {
        if (typeof h.q !== "number" || !h.e) return;
        const epoch = h.j ?? 0;
        // An abandoned collective reads no buffer any more.
        this.#release(h.s, epoch, h.q, false);
        if (!this.#clock.live(epoch)) return;
        const calls = this.#callsOf(epoch);
        if (h.q < calls.finishedBelow) return;
        const error = errorFromAbort(h.e);
        this.#remoteErrors.add(error);
        const call = calls.running.get(h.q);
        if (call) call.abort(error);
        else calls.earlyAborts.set(h.q, error);
        return;
      }
      case "b": {
        const error = new PeerLostError(`rank ${h.s} closed its process group`, { rank: h.s });
        this.#departed.set(h.s, error);
        this.#mailbox.depart(h.s, error);
        this.#wakeReleaseWaiters();
        return;
      }
    }
  }

  /**
   * A message of collective `seq` ends the call at once when this rank made a
   * different call there, even if it would never read that peer's messages: a
   * rank that only waits (a broadcast's receiver) would otherwise wait out its
   * timeout. Signatures of collectives not begun here yet are checked at begin.
   */
  #checkSignature(epoch: number, seq: number, src: number, signature: string | undefined): void {
    const calls = this.#callsOf(epoch);
    if (seq < calls.finishedBelow) return;
    const call = calls.running.get(seq);
    if (call) {
      if (signature !== call.signature) call.abort(this.#mismatch(call, src, signature));
    } else {
      // One signature per distinct call seen is enough: begin() needs any that differs from its own.
      const seen = calls.earlySignatures.get(seq);
      if (!seen) calls.earlySignatures.set(seq, [{ src, signature }]);
      else if (!seen.some((s) => s.signature === signature)) seen.push({ src, signature });
    }
  }

  #callsOf(epoch: number): EpochCalls {
    let calls = this.#epochs.get(epoch);
    if (!calls) this.#epochs.set(epoch, (calls = { running: new Map(), earlyAborts: new Map(), earlySignatures: new Map(), finishedBelow: 0 }));
    return calls;
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

  #mismatch(call: CollectiveCall, src: number, theirs: string | undefined): CollectiveMismatchError {
    return new CollectiveMismatchError(`collective #${call.seq} does not match across ranks: rank ${this.rank} called ${call.signature} but rank ${src} called ${theirs}`, { rank: src });
  }

  #onDisconnect(peer: number): void {
    if (this.#closing || this.#failure || this.#departed.has(peer)) return;
    // The goodbye travels on the other socket of the pair; give it a moment.
    setTimeout(() => {
      if (this.#closing || this.#failure || this.#departed.has(peer)) return;
      this.#failureListener(new PeerLostError(`rank ${peer} disconnected from rank ${this.rank}: its process died or the network to it failed`, { rank: peer }));
    }, GOODBYE_GRACE_MS).unref();
  }

  /** `peer` no longer reads our buffer of collective (`epoch`, `seq`); `attached`: it had mapped it. */
  #release(peer: number, epoch: number, seq: number | undefined, attached: boolean): void {
    if (!Number.isInteger(seq) || seq! < 0) return;
    const b = seq! % SHM_BUFFERS;
    const use = this.#bufferUse[b];
    // A release of an older use of the buffer (a duplicate: x, then r) changes nothing.
    if (!use || use.epoch !== epoch || use.seq !== seq) return;
    if (attached) this.#slots?.attached(peer, b, use.use);
    if (use.readers.delete(peer)) this.#wakeReleaseWaiters();
  }

  #wakeReleaseWaiters(): void {
    const waiters = [...this.#releaseWaiters];
    this.#releaseWaiters.clear();
    for (const w of waiters) w();
  }

  // ---- lifecycle -----------------------------------------------------------

  /** Registers `call` as running; ends it at once if a peer already abandoned it. */
  begin(call: CollectiveCall): void {
    const calls = this.#callsOf(call.epoch);
    calls.running.set(call.seq, call);
    const early = calls.earlyAborts.get(call.seq);
    const differing = calls.earlySignatures.get(call.seq)?.find((s) => s.signature !== call.signature);
    if (early) call.abort(early);
    else if (differing) call.abort(this.#mismatch(call, differing.src, differing.signature));
  }

  finish(call: CollectiveCall): void {
    const { epoch, seq } = call;
    const calls = this.#epochs.get(epoch);
    // Its epoch is over: everything it left went with it.
    if (!calls) return;
    calls.running.delete(seq);
    calls.finishedBelow = Math.max(calls.finishedBelow, seq + 1);
    this.#mailbox.closeCollective(epoch, seq);
    for (const s of calls.earlyAborts.keys()) if (s <= seq) calls.earlyAborts.delete(s);
    for (const s of calls.earlySignatures.keys()) if (s <= seq) calls.earlySignatures.delete(s);
  }

  beginEpoch(epoch: number): void {
    this.#clock.begin(epoch);
    this.#forgetOverEpochs();
  }

  endEpoch(epoch: number): void {
    this.#clock.end(epoch);
    this.#forgetOverEpochs();
  }

  /** Drops what peers sent for epochs that are over here (see {@link EpochClock}). */
  #forgetOverEpochs(): void {
    for (const epoch of this.#epochs.keys()) if (!this.#clock.live(epoch)) this.#epochs.delete(epoch);
    this.#mailbox.closeEpochs((epoch) => !this.#clock.live(epoch));
  }

  abandon(call: CollectiveCall, error: Error): void {
    if (this.#remoteErrors.has(error) || this.#failure || this.#closing) return;
    const e = { code: (error as { code?: string }).code ?? "MULTIRANK_ERR_PEER_LOST", message: error.message, rank: this.rank, timeoutMs: (error as { timeoutMs?: number }).timeoutMs };
    const header: Header = { k: "x", s: this.rank, q: call.seq, e };
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
    this.#wakeReleaseWaiters();
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    if (!this.#failure) {
      const bye = [packHeader({ k: "b", s: this.rank })];
      const sent = Promise.allSettled(this.#peers.filter((p) => !this.#departed.has(p)).map((p) => this.#mesh.send(p, bye)));
      // A peer that stopped reading must not hold close() up.
      await Promise.race([sent, new Promise((r) => setTimeout(r, 500).unref())]);
    }
    this.#mailbox.fail(this.#failure ?? new AbortError("process group closed", { rank: this.rank }));
    this.#wakeReleaseWaiters();
    this.#mesh.close(this.#failure ? 0 : 500);
    if (this.#links !== this.#mesh) this.#links.close();
    await this.#slots?.close();
  }

  // ---- helpers -------------------------------------------------------------

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
    if (m.header.g !== call.signature) throw this.#mismatch(call, src, m.header.g);
    if (index !== undefined && m.header.i !== index) {
      throw new CollectiveMismatchError(`collective #${call.seq} (${call.signature}): rank ${src} sent part ${m.header.i}, rank ${this.rank} expected ${index}`, { rank: src });
    }
    return m;
  }

  #expectBytes(call: CollectiveCall, src: number, frame: Buffer | undefined, bytes: number): Buffer {
    if (!frame || frame.byteLength !== bytes) {
      throw new CollectiveMismatchError(`collective #${call.seq} (${call.signature}): rank ${src} sent ${frame?.byteLength ?? 0} bytes, rank ${this.rank} expected ${bytes}`, { rank: src });
    }
    return frame;
  }

  // ---- collectives ---------------------------------------------------------

  /**
   * Dissemination barrier: in round k every rank tells rank + 2^k and waits
   * for rank - 2^k, so after log2(size) rounds each has heard, directly or
   * not, from all. That is size log2(size) messages against size (size-1)
   * for everyone-to-everyone, and on a few cores a barrier's time is its
   * messages. Every rank sends before it waits, so a rank that made a
   * different call still gets a message of this one and reports the mismatch.
   */
  async barrier(call: CollectiveCall): Promise<void> {
    const n = this.size;
    for (let k = 1, round = 0; k < n; k <<= 1, round++) {
      await Promise.all([this.#send(call, mod(this.rank + k, n), undefined, undefined, round), this.#take(call, mod(this.rank - k, n), round)]);
    }
  }

  async broadcast(value: unknown, root: number, call: CollectiveCall): Promise<unknown> {
    const n = this.size;
    const vr = mod(this.rank - root, n);
    // Flat: the root sends to all. Tree: binomial, log2(n) rounds, each rank
    // forwarding the frame it received (its own buffer, safe to send zero-copy).
    let parent = -1;
    const children: number[] = [];
    if (n <= FLAT_BROADCAST_MAX) {
      if (vr === 0) children.push(...this.#peers);
      else parent = root;
    } else {
      let mask = 1;
      while (mask < n) {
        if (vr & mask) {
          parent = mod(vr - mask + root, n);
          break;
        }
        mask <<= 1;
      }
      for (mask >>= 1; mask > 0; mask >>= 1) if (vr + mask < n) children.push(mod(vr + mask + root, n));
    }
    let meta: ValueMeta;
    let frame: Buffer;
    let result: unknown = value;
    if (parent < 0) {
      ({ meta, frame } = encodeValue(value, true));
    } else {
      const m = await this.#take(call, parent);
      meta = m.header.v ?? { t: "mp" };
      frame = m.frames[0] ?? Buffer.alloc(0);
      result = decodeValue(meta, frame);
    }
    await Promise.all(children.map((c) => this.#send(call, c, frame, meta)));
    return result;
  }

  async allGather(value: unknown, call: CollectiveCall): Promise<unknown[]> {
    const { meta, frame } = encodeValue(value, true);
    const out: unknown[] = new Array(this.size);
    out[this.rank] = value;
    await Promise.all([
      ...this.#peers.map((p) => this.#send(call, p, frame, meta)),
      ...this.#peers.map(async (p) => {
        const m = await this.#take(call, p);
        out[p] = decodeValue(m.header.v, m.frames[0]);
      }),
    ]);
    return out;
  }

  async gather(value: unknown, root: number, call: CollectiveCall): Promise<unknown[] | undefined> {
    if (this.rank !== root) {
      const { meta, frame } = encodeValue(value, true);
      await this.#send(call, root, frame, meta);
      return undefined;
    }
    const out: unknown[] = new Array(this.size);
    out[this.rank] = value;
    await Promise.all(
      this.#peers.map(async (p) => {
        const m = await this.#take(call, p);
        out[p] = decodeValue(m.header.v, m.frames[0]);
      }),
    );
    return out;
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
        return into(out, await this.#directReduce(data, op, call, false));
      case "shm":
        return this.#shmReduce(data, op, call, false, out);
      case "ring": {
        const mine = await this.#ringReduceScatter(data, op, call);
        return this.#ringAllGather(data, mine, call, out);
      }
    }
  }

  async reduceScatter(data: Reducible, op: ReduceOp, call: CollectiveCall, out?: Reducible): Promise<Reducible> {
    switch (chooseReduceAlgorithm({ bytes: data.byteLength, size: this.size, sharedMemory: this.#mayShare(call) })) {
      case "local":
        return into(out, data.slice());
      case "direct":
        return into(out, await this.#directReduce(data, op, call, true));
      case "shm":
        return this.#shmReduce(data, op, call, true, out);
      case "ring": {
        const held = await this.#ringReduceScatter(data, op, call);
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

  /**
   * Everyone sends everyone the part it needs (the whole array, or for a
   * reduce-scatter the receiver's chunk) and reduces in rank order, so every
   * rank computes bit-identical results.
   */
  async #directReduce(data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean): Promise<Reducible> {
    const chunks = splitRanges(data.length, this.size);
    const part = (r: number): Reducible => (scatter ? data.subarray(chunks[r].start, chunks[r].end) : data);
    const mine = part(this.rank);
    const contributions: Reducible[] = new Array(this.size);
    contributions[this.rank] = mine;
    await Promise.all([
      // Copied: the send resolves before the bytes leave and `data` is the caller's.
      ...this.#peers.map((p) => this.#send(call, p, Buffer.from(bytesOf(part(p))))),
      ...this.#peers.map(async (p) => {
        const m = await this.#take(call, p);
        contributions[p] = viewAs(mine, this.#expectBytes(call, p, m.frames[0], mine.byteLength));
      }),
    ]);
    const out = allocLike(mine, mine.length);
    out.set(contributions[0]);
    for (let r = 1; r < this.size; r++) reduceInto(out, contributions[r], op);
    finishReduce(out, op, this.size);
    return out;
  }

  /**
   * Ring reduce-scatter: n-1 steps, each rank sending one chunk to the next
   * rank and reducing the chunk it receives from the previous one into that
   * (received, so owned) buffer, which it forwards next step without copying.
   * Returns this rank's fully reduced chunk. `data` is sent without copying only
   * at step 0; the ring's later steps prove the next rank has read it.
   */
  async #ringReduceScatter(data: Reducible, op: ReduceOp, call: CollectiveCall): Promise<Reducible> {
    const n = this.size;
    const r = this.rank;
    const chunks = splitRanges(data.length, n);
    const next = mod(r + 1, n);
    const prev = mod(r - 1, n);
    const view = (c: Range): Reducible => data.subarray(c.start, c.end);
    let held: Reducible | undefined;
    for (let k = 0; k < n - 1; k++) {
      const sendIdx = mod(r - k - 1, n);
      const recvIdx = mod(r - k - 2, n);
      const sending = this.#send(call, next, bytesOf(held ?? view(chunks[sendIdx])), undefined, sendIdx);
      const m = await this.#take(call, prev, recvIdx);
      const mineChunk = view(chunks[recvIdx]);
      const acc = viewAs(mineChunk, this.#expectBytes(call, prev, m.frames[0], mineChunk.byteLength));
      reduceInto(acc, mineChunk, op);
      await sending;
      held = acc;
    }
    finishReduce(held!, op, n);
    return held!;
  }

  /**
   * Ring all-gather of each rank's chunk `mine` into `out` (a new array shaped
   * like `data` when absent). `out` may be `data` itself: the reduce-scatter is
   * over, and every chunk written here was received, which proves the bytes
   * of `data` sent without copying have been read.
   */
  async #ringAllGather(data: Reducible, mine: Reducible, call: CollectiveCall, given?: Reducible): Promise<Reducible> {
    const n = this.size;
    const r = this.rank;
    const chunks = splitRanges(data.length, n);
    const next = mod(r + 1, n);
    const prev = mod(r - 1, n);
    const out = given ?? allocLike(data, data.length);
    out.set(mine, chunks[r].start);
    let forward = mine;
    for (let k = 0; k < n - 1; k++) {
      const sendIdx = mod(r - k, n);
      const recvIdx = mod(r - k - 1, n);
      const sending = this.#send(call, next, bytesOf(forward), undefined, sendIdx);
      const m = await this.#take(call, prev, recvIdx);
      const c = chunks[recvIdx];
      const got = viewAs(mine, this.#expectBytes(call, prev, m.frames[0], (c.end - c.start) * data.BYTES_PER_ELEMENT));
      out.set(got, c.start);
      await sending;
      forward = got;
    }
    return out;
  }

  /** A `like`-typed view of `length` elements over reusable scratch buffer `slot`. */
  #scratchView(like: Reducible, slot: number, length: number): Reducible {
    const bytes = length * like.BYTES_PER_ELEMENT;
    let buffer = this.#scratch[slot];
    if (!buffer || buffer.byteLength < bytes) buffer = this.#scratch[slot] = new ArrayBuffer(bytes);
    const Ctor = like.constructor as new (b: ArrayBuffer, o: number, n: number) => Reducible;
    return new Ctor(buffer, 0, length);
  }

  /** Waits until every peer told to read own buffer `buffer` has released it. */
  async #awaitRelease(buffer: number, call: CollectiveCall): Promise<void> {
    const last = this.#bufferUse[buffer];
    if (!last) return;
    for (;;) {
      if (last.readers.size === 0) return;
      for (const p of last.readers) {
        const gone = this.#departed.get(p);
        if (gone) throw gone;
      }
      if (this.#failure) throw this.#failure;
      await abortable(new Promise<void>((resolve) => this.#releaseWaiters.add(resolve)), call.signal);
    }
  }

  /**
   * Shared-memory reduction (one host). Each rank owns two shared buffers,
   * alternating by sequence number. Steps: (1) write my array, except my own
   * chunk, into my buffer; (2) exchange "written" (this also checks the
   * signatures, and carries the name of a mapped buffer so peers can map it);
   * (3) reduce chunk `rank` of every rank's array in rank order, straight from
   * the peers' mapped buffers (the file fallback reads them into scratch
   * first); for all-reduce (4) write the reduced chunk into my buffer, (5)
   * exchange "reduced", (6) copy every other reduced chunk from its owner.
   * Finally tell peers I no longer read their buffers, so they may reuse them
   * (and, when I mapped them, unlink their names). A peer that never runs
   * this collective (its request ended first) releases when it drops my
   * "written" message unread.
   *
   * `given` (the caller's `out`) receives the result; it may share memory
   * with `data`, in which case my whole array goes to my buffer first and my
   * own contribution is read back from there.
   */
  async #shmReduce(data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean, given?: Reducible): Promise<Reducible> {
    // One at a time: a collective outside requests (epoch 0) may run beside a request's.
    const previous = this.#shmRunning > 0 ? this.#shmQueue : undefined;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.#shmQueue = this.#shmQueue.then(() => mine);
    this.#shmRunning++;
    try {
      if (previous) await abortable(previous, call.signal);
      return await this.#shmReduceAlone(data, op, call, scatter, given);
    } finally {
      this.#shmRunning--;
      done();
    }
  }

  async #shmReduceAlone(data: Reducible, op: ReduceOp, call: CollectiveCall, scatter: boolean, given?: Reducible): Promise<Reducible> {
    const slots = this.#slots!;
    const mapped = slots.kind === "mmap";
    const n = this.size;
    const r = this.rank;
    const bpe = data.BYTES_PER_ELEMENT;
    const chunks = splitRanges(data.length, n);
    const own = chunks[r];
    const ownLength = own.end - own.start;
    const b = call.seq % SHM_BUFFERS;
    await this.#awaitRelease(b, call);
    const use: BufferUse = { epoch: call.epoch, seq: call.seq, use: ++this.#uses, readers: new Set() };
    this.#bufferUse[b] = use;
    let attachedAll = false;
    try {
      const sig = call.signal;
      const aliased = given !== undefined && overlaps(given, data);
      const token = slots.prepare(b, data.byteLength, use.use);
      if (aliased && mapped) await slots.write(b, bytesOf(data), 0);
      else {
        await abortable(
          Promise.all([slots.write(b, bytesOf(data.subarray(0, own.start)), 0), slots.write(b, bytesOf(data.subarray(own.end)), own.end * bpe)]),
          sig,
        );
      }
      const tokenFrame = token ? Buffer.from(token) : undefined;
      await Promise.all([
        ...this.#peers.map((p) => {
          // From here p may read the buffer: we wait for its release before writing it again.
          use.readers.add(p);
          return this.#send(call, p, tokenFrame, undefined, 1, true);
        }),
        ...this.#peers.map(async (p) => {
          const m = await this.#take(call, p, 1);
          if (mapped) slots.attach(p, b, m.frames[0]?.toString() ?? "");
        }),
      ]);
      attachedAll = mapped;

      // My contribution, saved before `out` overwrites it when the two alias.
      const mine = !aliased ? data.subarray(own.start, own.end) : mapped ? typedView(data, slots.memory(r, b)!, own.start * bpe, ownLength) : data.slice(own.start, own.end);
      const out = given ?? (scatter ? allocLike(data, ownLength) : allocLike(data, data.length));
      const acc = scatter ? out : out.subarray(own.start, own.end);
      if (mapped) {
        const parts = [...Array(n).keys()].map((j) => (j === r ? mine : typedView(data, slots.memory(j, b)!, own.start * bpe, ownLength)));
        reduceParts(acc, parts, op);
      } else {
        const reads = new Map<number, Promise<Reducible>>();
        for (const p of this.#peers) {
          // Rank 0's chunk lands straight in the accumulator; others in scratch.
          const target = p === 0 ? acc : this.#scratchView(data, p, ownLength);
          reads.set(p, slots.read(p, b, bytesOf(target), own.start * bpe).then(() => target));
        }
        if (r === 0) acc.set(mine);
        else await abortable(reads.get(0)!, sig);
        for (let j = 1; j < n; j++) reduceInto(acc, j === r ? mine : await abortable(reads.get(j)!, sig), op);
      }
      finishReduce(acc, op, n);
      if (scatter) return out;

      await abortable(slots.write(b, bytesOf(acc), own.start * bpe), sig);
      if (mapped) {
        // Copy each reduced chunk as soon as its owner reports it, not after the slowest.
        await Promise.all([
          ...this.#peers.map((p) => this.#send(call, p, undefined, undefined, 2)),
          ...this.#peers.map(async (p) => {
            await this.#take(call, p, 2);
            const c = chunks[p];
            out.set(typedView(data, slots.memory(p, b)!, c.start * bpe, c.end - c.start), c.start);
          }),
        ]);
      } else {
        await Promise.all([...this.#peers.map((p) => this.#send(call, p, undefined, undefined, 2)), ...this.#peers.map((p) => this.#take(call, p, 2))]);
        await abortable(Promise.all(this.#peers.map((p) => slots.read(p, b, bytesOf(out.subarray(chunks[p].start, chunks[p].end)), chunks[p].start * bpe))), sig);
      }
      return out;
    } finally {
      const release: Header = { k: "r", s: r, q: call.seq };
      if (call.epoch) release.j = call.epoch;
      if (attachedAll) release.i = 1;
      const done = [packHeader(release)];
      for (const p of this.#peers) if (!this.#departed.has(p)) this.#mesh.send(p, done).catch(() => {});
    }
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

