import os from "node:os";
import path from "node:path";
import { isIP } from "node:net";
import * as zmq from "zeromq";
import type { Logger } from "pino";
import { TransportError } from "../errors.js";
import { abortable } from "./abortable.js";
import type { GroupAuth, RefusalLog } from "./auth.js";
import { PeerLinks } from "./links.js";
import { ZmqMesh, type MessageMesh } from "./mesh.js";
import { isPeerRecord, type PeerRecord } from "./peer-record.js";
import { rendezvous, tcpEndpoint, type RendezvousPlan } from "./rendezvous.js";
import { MappedSlots, SharedSlots, sharedKind, type SharedBuffers } from "./shm.js";
import { isLoopback } from "../util/loopback.js";
import { watchFailedHandshakes, ZapHandler } from "../transport/zap.js";
import { TCP_FRAME_LIMIT } from "../transport/frame-pieces.js";
import { sweepLeftovers } from "../shm/sweep.js";

/** Inputs of {@link bootstrap} (validated by the facade). */
export interface BootstrapOptions {
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

/** What {@link bootstrap} leaves connected: everything the CPU backend moves bytes with. */
export interface Connected {
  /** Carries the data messages: the links on one host, ZeroMQ sockets across hosts. */
  readonly mesh: MessageMesh;
  /** One stream socket per pair of ranks; reports dead peers (and is `mesh` on one host). */
  readonly links: PeerLinks;
  /** The shared buffers of large reductions, when every rank could open everyone's. */
  readonly slots: SharedBuffers | undefined;
}

function firstExternalIPv4(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * Rendezvous, then connect every pair of ranks. On one host the data goes
 * over unix stream links (see {@link PeerLinks} for why), with large
 * reductions in `/dev/shm`; across hosts over ZeroMQ (tcp, with heartbeats),
 * beside tcp links that report dead peers. Each rank publishes one
 * {@link PeerRecord} in the rendezvous table.
 *
 * Nothing gets in without the group's secret: the rendezvous and the links
 * check proofs made with it, and over tcp the ZeroMQ data sockets use CURVE,
 * each rank's key pair made here and its public key sent in the (proven)
 * rendezvous, with a ZAP handler that admits only the peers' keys. CURVE
 * costs some bandwidth (it encrypts), but the data sockets' endpoints are in
 * the table, which crosses the network in clear: a handshake that only
 * needed the server's key would let anyone who saw the table push data.
 * @throws whatever {@link rendezvous} throws; the zmq error when a data
 * socket cannot bind; TransportError when a rank published a malformed peer record.
 */
export async function bootstrap(o: BootstrapOptions): Promise<Connected> {
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
          let data: string | undefined;
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
            data = pull.lastEndpoint ?? "";
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
          // Absent fields are left out, not undefined: msgpack would carry them.
          const record: PeerRecord = { links: listening.address, pid: process.pid };
          if (data !== undefined) record.data = data;
          if (slots) record.shared = slots.kind;
          if (keys) record.curveKey = keys.publicKey;
          return { record, sharedMemory: slots !== undefined };
        },
        connect: async (table, shm, signal) => {
          // Proven with the secret, but decoded from msgpack: a rank of another version could publish anything.
          if (table.length !== o.size) throw new TransportError(`the rendezvous table has ${table.length} peer records for ${o.size} ranks`);
          const bad = table.findIndex((r) => !isPeerRecord(r));
          if (bad >= 0) throw new TransportError(`rank ${bad} published a malformed peer record in the rendezvous table`, { rank: bad });
          const connected: Promise<void>[] = [links!.link(o.rank, table.map((r) => r.links), signal)];
          zap?.allow(peers.map((peer) => table[peer].curveKey ?? "-"));
          for (const peer of tcp ? peers : []) {
            const endpoint = table[peer].data ?? "";
            const push = new zmq.Push({
              context,
              linger: 500,
              ipv6: endpoint.startsWith("tcp://["),
              curveServerKey: table[peer].curveKey,
              curvePublicKey: keys!.publicKey,
              curveSecretKey: keys!.secretKey,
            });
            // ZMTP heartbeats turn a silent peer (host down, cable pulled) into a
            // disconnect within a second; on one host the kernel reports deaths at once.
            push.heartbeatInterval = 250;
            push.heartbeatTimeout = 750;
            connected.push(new Promise((resolve) => push.events.on("connect", () => resolve())));
            push.connect(endpoint);
            pushes.set(peer, push);
          }
          await abortable(Promise.all(connected), signal);
          const sameKind = table.every((r) => r.shared === slots?.kind);
          if (slots && shm && sameKind) slots.openPeers(peers, table.map((r) => r.pid));
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
    return { mesh, links: links!, slots };
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
