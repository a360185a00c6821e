import type * as zmq from "zeromq";
import type { Logger } from "pino";
import { TransportError } from "../errors.js";
import { unpackHeader, type Header } from "./wire.js";
import { joinFrames, MAX_TCP_FRAME_BYTES, splitFrame } from "../transport/frame-pieces.js";

/**
 * First byte of the frame that announces a message sent in pieces (0xc1 is
 * never used by msgpack, so no header starts with it). The frame then holds
 * each original frame's length as a float64; the pieces follow.
 */
const PIECES_MARK = 0xc1;

/** `frames` as frames of at most MAX_TCP_FRAME_BYTES (unchanged when all fit). */
function toPieces(frames: Buffer[]): Buffer[] {
  if (frames.every((f) => f.byteLength <= MAX_TCP_FRAME_BYTES)) return frames;
  const mark = Buffer.alloc(1 + 8 * frames.length);
  mark[0] = PIECES_MARK;
  frames.forEach((f, i) => mark.writeDoubleLE(f.byteLength, 1 + 8 * i));
  return [mark, ...frames.flatMap((f) => splitFrame(f))];
}

/** The frames {@link toPieces} split, joined again; undefined when the pieces do not add up. */
function fromPieces(frames: Buffer[]): Buffer[] | undefined {
  const mark = frames[0];
  if (!mark || mark[0] !== PIECES_MARK) return frames;
  if ((mark.byteLength - 1) % 8 !== 0) return undefined;
  const out: Buffer[] = [];
  let next = 1;
  for (let at = 1; at < mark.byteLength; at += 8) {
    const length = mark.readDoubleLE(at);
    const pieces: Buffer[] = [];
    let have = 0;
    while (have < length && next < frames.length) {
      have += frames[next]!.byteLength;
      pieces.push(frames[next++]!);
    }
    if (have !== length) return undefined;
    out.push(length === 0 ? Buffer.alloc(0) : joinFrames(pieces));
  }
  return next === frames.length ? out : undefined;
}

/** What a mesh reports upward. */
export interface MeshEvents {
  /** A data message arrived. */
  onMessage(header: Header, frames: Buffer[]): void;
  /** The connection to `peer` dropped (it died, closed, or the network failed). */
  onDisconnect(peer: number): void;
}

/** How a rank's data messages reach its peers: ZeroMQ across hosts, unix stream links on one. */
export interface MessageMesh {
  /** Starts delivering messages (and, where the mesh watches them, disconnects). Call once. */
  start(events: MeshEvents): void;
  /**
   * Queues `frames` to `peer` as one message. A mesh may send large frames by
   * reference and resolve before they leave: their memory must not change
   * until the peer has them (the algorithms prove that by a later message).
   */
  send(peer: number, frames: Buffer[]): Promise<void>;
  /** Closes the mesh; `lingerMs` is how long queued messages may still be flushed (0 drops them). */
  close(lingerMs: number): void;
}

/**
 * The ZeroMQ data sockets of one rank (used across hosts): a PULL bound at this rank's endpoint that every
 * peer pushes into, and one PUSH connected to each peer. One PUSH per peer
 * gives per-pair ordering, lets sends to different peers run at once, and makes
 * the PUSH's monitor a per-peer liveness signal (a `disconnect` names the peer).
 */
export class ZmqMesh implements MessageMesh {
  readonly #pull: zmq.Pull;
  readonly #pushes: Map<number, zmq.Push>;
  // zeromq.js allows one send in flight per socket: chain them per peer.
  readonly #tails = new Map<number, Promise<unknown>>();
  readonly #log: Logger;
  /** The ZAP handler that guards the PULL; closed with it. */
  readonly #zap: { close(): void } | undefined;
  #closed = false;

  constructor(pull: zmq.Pull, pushes: Map<number, zmq.Push>, log: Logger, zap?: { close(): void }) {
    this.#pull = pull;
    this.#pushes = pushes;
    this.#log = log;
    this.#zap = zap;
  }

  /**
   * Starts the receive loop and the disconnect watch: the PUSH sockets'
   * monitors report a peer whose heartbeats stopped (a dead host, which the
   * peer links over tcp do not notice).
   */
  start(events: MeshEvents): void {
    for (const [peer, push] of this.#pushes) {
      push.events.on("disconnect", () => {
        if (!this.#closed) events.onDisconnect(peer);
      });
    }
    void this.#receiveLoop(events);
  }

  async #receiveLoop(events: MeshEvents): Promise<void> {
    try {
      for (;;) {
        const frames = fromPieces(await this.#pull.receive());
        const header = frames && unpackHeader(frames[0]!);
        // Only peers with a key from the table get here (CURVE and ZAP); still, a corrupt message is dropped, not fatal.
        if (!header) {
          this.#log.warn("dropped a data message without a valid header");
          continue;
        }
        events.onMessage(header, frames!.slice(1));
      }
    } catch (error) {
      if (!this.#closed && !this.#pull.closed) this.#log.error({ err: error }, "data socket receive failed");
    }
  }

  /**
   * Queues `frames` to `peer`; resolves when zeromq has taken them (not when
   * they arrive). Frames larger than 128 bytes are sent without copying, so
   * their memory must not change until the peer has them.
   */
  send(peer: number, frames: Buffer[]): Promise<void> {
    const push = this.#pushes.get(peer);
    if (!push) return Promise.reject(new TransportError(`no data socket to rank ${peer}`));
    const prev = this.#tails.get(peer) ?? Promise.resolve();
    // The peer's PULL takes frames of MAX_TCP_FRAME_BYTES at most (see bootstrap.ts): larger ones go in pieces.
    const next = prev.then(() => push.send(toPieces(frames)));
    const tail = next.catch(() => {});
    this.#tails.set(peer, tail);
    void tail.then(() => {
      if (this.#tails.get(peer) === tail) this.#tails.delete(peer);
    });
    return next.catch((error: unknown) => {
      throw new TransportError(`send to rank ${peer} failed: ${(error as Error).message}`, { cause: error });
    });
  }

  /**
   * Closes every socket. `lingerMs` is how long queued messages (a goodbye) may
   * still be flushed; 0 drops them (a failed group).
   */
  close(lingerMs: number): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const push of this.#pushes.values()) {
      push.linger = lingerMs;
      push.close();
    }
    this.#pull.linger = 0;
    this.#pull.close();
    this.#zap?.close();
  }
}

/**
 * The mesh of a group that spans hosts: each peer's messages go over the
 * unix link when it shares this rank's host, else over the ZeroMQ data
 * sockets (tcp, CURVE). Only such groups pay for the per-message choice; on
 * one host the links are the mesh.
 */
export class RoutedMesh implements MessageMesh {
  readonly #links: MessageMesh;
  readonly #zmq: MessageMesh;
  /** By rank: whether the peer is on this host. */
  readonly #local: readonly boolean[];

  constructor(links: MessageMesh, zmq: MessageMesh, local: readonly boolean[]) {
    this.#links = links;
    this.#zmq = zmq;
    this.#local = local;
  }

  /** Starts both: messages come from either, disconnects from the ZeroMQ side (the links report theirs through `onLost`). */
  start(events: MeshEvents): void {
    this.#links.start(events);
    this.#zmq.start(events);
  }

  send(peer: number, frames: Buffer[]): Promise<void> {
    return (this.#local[peer] ? this.#links : this.#zmq).send(peer, frames);
  }

  close(lingerMs: number): void {
    this.#links.close(lingerMs);
    this.#zmq.close(lingerMs);
  }
}
