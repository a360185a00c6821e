import fs from "node:fs";
import net from "node:net";
import type { Logger } from "pino";
import { TransportError } from "../errors.js";
import type { MeshEvents, MessageMesh } from "./mesh.js";
import { MessageDecoder } from "../transport/stream-framing.js";
import { writeMessage } from "../transport/stream-sockets.js";
import { unpackHeader, type Header } from "./wire.js";
import { PROOF_BYTES, type GroupAuth, type RefusalLog } from "./auth.js";

/** Messages held for {@link PeerLinks.start} at most (the collectives' window is far smaller). */
const MAX_EARLY_MESSAGES = 10_000;
/** A link's hello: the connecting rank (4 bytes), then its proof. */
const HELLO_BYTES = 4 + PROOF_BYTES;
/** How long an accepted socket may take to prove itself before it is dropped. */
const HELLO_TIMEOUT_MS = 10_000;

/** What a link's hello proves: that `from`, holding the secret, dials `to` in group `groupId`. */
function linkClaim(groupId: string, from: number, to: number): string[] {
  return ["link", groupId, String(from), String(to)];
}

/** How {@link PeerLinks} knows its peers: the group's secret and ids. */
export interface LinkIdentity {
  auth: GroupAuth;
  refusals: RefusalLog;
  /** The group's id from the rendezvous plan: a proof for one group is worthless in another. */
  groupId: string;
  /** This rank. */
  rank: number;
}

/** A peer to link with: where it listens, and whether its link carries data messages. */
export interface LinkTarget {
  /** `unix:<path>` or `tcp:<host>:<port>`. */
  address: string;
  /** Whether the link carries the data (unix links do; tcp links only watch the peer, ZeroMQ carries the data). */
  data: boolean;
}

/**
 * One stream socket per pair of ranks (unix sockets between ranks on one
 * host, tcp between hosts), for two jobs:
 *
 * - Death detection that costs nothing while all is well: when a process dies
 *   its kernel closes the socket and the peer sees `close` at once, without
 *   heartbeats (which a busy event loop could miss).
 * - On one host, carrying the data messages ({@link MessageMesh}). A round trip
 *   over a unix stream socket from Node takes about a quarter of a zeromq.js
 *   ipc round trip (bench/invoke.ts prints both): zeromq hands every message
 *   to an I/O thread on each side, and on a few cores those extra wake-ups are
 *   what a barrier costs.
 *
 * Over tcp a dead host is not noticed by `close`; ZeroMQ heartbeats on the
 * data sockets cover that case. And a tcp link is authenticated but not
 * encrypted, so between hosts ZeroMQ with CURVE carries the data and the
 * tcp links carry none ({@link LinkTarget.data}).
 *
 * The connecting side opens with its rank and a proof made with the group's
 * secret. The accepting side reads exactly that many bytes and nothing more
 * until the proof holds; a socket with a wrong proof, or none within
 * {@link HELLO_TIMEOUT_MS}, is destroyed and logged, and never becomes a link.
 */
export class PeerLinks implements MessageMesh {
  readonly #servers: net.Server[];
  readonly #sockets = new Map<number, net.Socket>();
  readonly #path: string | undefined;
  readonly #log: Logger;
  /** Peers lost before anyone listened (between link() and onLost()): told to the listener when it comes. */
  readonly #lostEarly: number[] = [];
  #onLost: (peer: number) => void = (peer) => void this.#lostEarly.push(peer);
  /** Sockets not linked yet (connecting, or accepted before link()): closed with the rest. */
  readonly #unlinked = new Set<net.Socket>();
  #events: MeshEvents | undefined;
  /** Messages that arrived before {@link start}. */
  readonly #early: [Header, Buffer[]][] = [];
  #closed = false;
  // Peers may connect before link() runs (they got the table first): park them.
  readonly #parked: [number, net.Socket, Buffer][] = [];
  #accepted: (peer: number, socket: net.Socket, rest: Buffer) => void = (peer, socket, rest) => void this.#parked.push([peer, socket, rest]);

  readonly #identity: LinkIdentity;
  readonly #kinds = new Map<number, "unix" | "tcp">();
  readonly #warnedNoData = new Set<number>();

  private constructor(servers: net.Server[], path: string | undefined, log: Logger, identity: LinkIdentity) {
    this.#servers = servers;
    this.#path = path;
    this.#log = log;
    this.#identity = identity;
    for (const server of servers) server.on("connection", (socket) => this.#accept(socket));
  }

  #accept(socket: net.Socket): void {
    const identity = this.#identity;
    socket.on("error", () => {});
    this.#unlinked.add(socket);
    socket.once("close", () => this.#unlinked.delete(socket));
    const who = socket.remoteAddress ? `link peer ${socket.remoteAddress}:${socket.remotePort}` : "link peer on the unix socket";
    const refuse = (why: string): void => {
      identity.refusals.refuse(who, why);
      socket.destroy();
    };
    const timer = setTimeout(() => refuse("no link hello in time"), HELLO_TIMEOUT_MS).unref();
    socket.once("close", () => clearTimeout(timer));
    // The connecting peer names itself with its rank (4 bytes) and proves it
    // holds the secret; what follows is messages. Until then at most one read
    // (a chunk) is held, so a stranger cannot make this process buffer more.
    let hello: Buffer = Buffer.alloc(0);
    const onHello = (d: Buffer): void => {
      hello = hello.byteLength === 0 ? d : Buffer.concat([hello, d]);
      if (hello.byteLength < HELLO_BYTES) return;
      socket.off("data", onHello);
      clearTimeout(timer);
      if (this.#closed) return void socket.destroy();
      const peer = hello.readUInt32LE(0);
      if (!identity.auth.verify(hello.subarray(4, HELLO_BYTES), ...linkClaim(identity.groupId, peer, identity.rank))) {
        return refuse("a link hello without a valid proof");
      }
      // Paused until link() attaches its reader, so no byte is read without one.
      socket.pause();
      this.#accepted(peer, socket, hello.subarray(HELLO_BYTES));
    };
    socket.on("data", onHello);
  }

  /**
   * Listens on a unix socket at `at.path` (for peers on this host) and/or on
   * tcp `at.tcpHost`, a random port (for peers on other hosts); accepts only
   * peers that prove `identity`'s secret, on either.
   * Resolves with the unix address to give peers and the tcp port.
   */
  static async listen(at: { path?: string; tcpHost?: string }, log: Logger, identity: LinkIdentity): Promise<{ links: PeerLinks; unix?: string; tcpPort?: number }> {
    const listen = async (start: (server: net.Server, listening: () => void) => void): Promise<net.Server> => {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        start(server, resolve);
      });
      server.unref();
      return server;
    };
    const servers: net.Server[] = [];
    try {
      if (at.path !== undefined) servers.push(await listen((s, done) => s.listen(at.path, done)));
      if (at.tcpHost !== undefined) servers.push(await listen((s, done) => s.listen(0, at.tcpHost, done)));
    } catch (error) {
      for (const s of servers) s.close();
      throw error;
    }
    const tcp = at.tcpHost === undefined ? undefined : (servers.at(-1)!.address() as net.AddressInfo);
    return { links: new PeerLinks(servers, at.path, log, identity), unix: at.path === undefined ? undefined : `unix:${at.path}`, tcpPort: tcp?.port };
  }

  /**
   * Links with every peer in `targets` (by rank; none at `rank`): connects to
   * higher ranks, accepts lower ones. Resolves once all are up.
   */
  async link(rank: number, targets: readonly (LinkTarget | undefined)[], signal: AbortSignal): Promise<void> {
    const expected = targets.length - 1;
    await new Promise<void>((resolve, reject) => {
      const add = (peer: number, socket: net.Socket, rest: Buffer): void => {
        this.#unlinked.delete(socket);
        const target = targets[peer];
        if (this.#closed || this.#sockets.has(peer) || peer === rank || !target) return void socket.destroy();
        this.#sockets.set(peer, socket);
        socket.unref();
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 1000);
        this.#kinds.set(peer, socket.remoteAddress === undefined ? "unix" : "tcp");
        // Decided per link, not per message: a tcp link is authenticated but not
        // encrypted, so data must come over CURVE, and whatever a tcp link brings is dropped.
        const decoder = new MessageDecoder(
          target.data ? (frames) => this.#receive(peer, frames) : () => this.#noData(peer),
          (why) => {
            this.#log.warn({ peer, why }, "malformed message on the link to a peer; dropping the link");
            socket.destroy();
          },
        );
        socket.on("data", (chunk: Buffer) => decoder.push(chunk));
        socket.on("close", () => {
          if (!this.#closed) this.#onLost(peer);
        });
        if (rest.byteLength > 0) decoder.push(rest);
        socket.resume();
        if (this.#sockets.size === expected) {
          signal.removeEventListener("abort", onAbort);
          resolve();
        }
      };
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#accepted = add;
      for (const [peer, socket, rest] of this.#parked.splice(0)) add(peer, socket, rest);
      for (let peer = rank + 1; peer < targets.length; peer++) {
        const a = targets[peer]!.address;
        const socket = a.startsWith("unix:")
          ? net.connect(a.slice(5))
          : net.connect(Number(a.slice(a.lastIndexOf(":") + 1)), a.slice(4, a.lastIndexOf(":")).replace(/^\[|\]$/g, ""));
        socket.on("error", () => {});
        this.#unlinked.add(socket);
        socket.once("close", () => this.#unlinked.delete(socket));
        socket.once("connect", () => {
          const hello = Buffer.alloc(4);
          hello.writeUInt32LE(rank);
          socket.write(Buffer.concat([hello, this.#identity.auth.prove(...linkClaim(this.#identity.groupId, rank, peer))]));
          add(peer, socket, Buffer.alloc(0));
        });
      }
      if (expected === 0) resolve();
    });
  }

  #noData(peer: number): void {
    if (this.#warnedNoData.has(peer)) return;
    this.#warnedNoData.add(peer);
    this.#log.warn({ peer }, "dropped a message on a tcp link, which carries no data (the data sockets do)");
  }

  /** How each linked peer is reached: `unix` or `tcp` (what the sockets are, for logs and tests). */
  kinds(): ReadonlyMap<number, "unix" | "tcp"> {
    return this.#kinds;
  }

  #receive(peer: number, frames: Buffer[]): void {
    const header = frames.length > 0 ? unpackHeader(frames[0]) : undefined;
    // The sender is the link's peer, whatever the header claims.
    if (!header || header.s !== peer) {
      this.#log.warn({ peer }, "dropped a data message without a valid header");
      return;
    }
    if (this.#events) this.#events.onMessage(header, frames.slice(1));
    else if (this.#early.length < MAX_EARLY_MESSAGES) this.#early.push([header, frames.slice(1)]);
    else this.#log.warn({ peer }, "dropped a message that came before the links started, past the limit");
  }

  /** Calls `listener(peer)` when the link to `peer` drops. */
  onLost(listener: (peer: number) => void): void {
    this.#onLost = listener;
    for (const peer of this.#lostEarly.splice(0)) listener(peer);
  }

  /**
   * Starts delivering data messages (those that came early first). The links
   * then keep the process alive, as a pending ZeroMQ receive would, until
   * {@link close}. Disconnects are reported through {@link onLost}.
   */
  start(events: MeshEvents): void {
    this.#events = events;
    for (const socket of this.#sockets.values()) socket.ref();
    for (const [header, frames] of this.#early.splice(0)) events.onMessage(header, frames);
  }

  /**
   * Writes `frames` to `peer` as one message. Small messages are copied and the
   * promise is already settled; larger frames are written by reference and it
   * resolves once the kernel has them, so their memory may change after that.
   */
  send(peer: number, frames: Buffer[]): Promise<void> {
    const socket = this.#sockets.get(peer);
    if (!socket) return Promise.reject(new TransportError(`no link to rank ${peer}`));
    return writeMessage(socket, frames, `send to rank ${peer}`);
  }

  /** Removes the unix socket's name (links stay up). */
  unlink(): void {
    if (this.#path) fs.rmSync(this.#path, { force: true });
  }

  /**
   * Closes every link and the listener. With `lingerMs` > 0 the links end
   * gracefully (written messages, a goodbye, still arrive) and are destroyed
   * after at most that long; with 0 they are destroyed at once.
   */
  close(lingerMs = 0): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#unlinked) s.destroy();
    this.#unlinked.clear();
    for (const s of this.#sockets.values()) {
      if (lingerMs > 0 && !s.destroyed) {
        s.end();
        setTimeout(() => s.destroy(), lingerMs).unref();
        s.unref();
      } else s.destroy();
    }
    for (const server of this.#servers) server.close();
    this.unlink();
  }
}
