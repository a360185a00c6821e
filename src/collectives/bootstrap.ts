import os from "node:os";
import path from "node:path";
import { isIP } from "node:net";
import type * as zmq from "zeromq";
import { zeromq } from "../transport/zeromq.js";
import type { Logger } from "pino";
import { TransportError } from "../errors.js";
import { abortable } from "./abortable.js";
import type { GroupAuth, RefusalLog } from "./auth.js";
import { PeerLinks } from "./links.js";
import { RoutedMesh, ZmqMesh, type MessageMesh } from "./mesh.js";
import { isPeerRecord, type PeerRecord } from "./peer-record.js";
import { chooseHostAddr, hostIdentity } from "./host.js";
import { peerRoutes, planPeers, type PeerPlan, type PeerRoute } from "./peer-plan.js";
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
  /** A unix socket path to rendezvous at instead of tcp (see ProcessGroupOptions.rendezvousSocket). */
  socketPath?: string | undefined;
  transport: "auto" | "ipc" | "tcp";
  sharedMemory: boolean;
  /** The address peers on other hosts use (else chosen by {@link chooseHostAddr}). */
  hostAddr?: string;
  signal: AbortSignal;
  status: { waiting: string };
  log: Logger;
  /** Proves and checks rendezvous messages and link hellos with the group's secret. */
  auth: GroupAuth;
  /** Where peers without the secret are logged. */
  refusals: RefusalLog;
}

/**
 * ZMTP heartbeats on the data sockets to peers on other hosts: a ping every
 * interval, and a peer silent for the timeout counts as gone. With the
 * backend's goodbye grace (150 ms) a silent host fails pending collectives
 * within about 0.9 to 1.2 s; a killed process, whose kernel closes its
 * sockets, within the grace.
 */
export const HEARTBEAT_INTERVAL_MS = 250;
/** See {@link HEARTBEAT_INTERVAL_MS}. */
export const HEARTBEAT_TIMEOUT_MS = 750;

/** What {@link bootstrap} leaves connected: everything the CPU backend moves bytes with. */
export interface Connected {
  /** Carries the data messages: the links on one host, ZeroMQ sockets to other hosts, or both, per peer. */
  readonly mesh: MessageMesh;
  /** One stream socket per pair of ranks; reports dead peers (and is `mesh` on one host). */
  readonly links: PeerLinks;
  /** The shared buffers of large reductions, when every rank could open everyone's. */
  readonly slots: SharedBuffers | undefined;
  /** Each rank's host name, by rank: errors name the host of a lost peer. */
  readonly hostNames: readonly string[];
}

/** `host:port` for a `tcp:` link address, bracketing IPv6 literals. */
function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Rendezvous, then connect every pair of ranks, each pair by the way that
 * suits it ({@link planPeers}): ranks on one host over unix stream links
 * (see {@link PeerLinks} for why), ranks on different hosts over ZeroMQ
 * (tcp, CURVE, heartbeats) beside tcp links that report dead peers. Large
 * reductions go through `/dev/shm` only when every rank is on one host. Each
 * rank publishes one {@link PeerRecord} in the rendezvous table: its host,
 * and the addresses its peers need (unix for its host, tcp for the others).
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
  // Which peers share this host; set when the plan comes.
  let split: PeerPlan = { local: [], remote: [] };
  let hostNames: string[] = [];
  let planned: RendezvousPlan | undefined;
  // To peers on other hosts: the data sockets' own context (its ZAP handler must not judge anyone else's sockets) and key pair.
  let context: zmq.Context | undefined;
  let zap: ZapHandler | undefined;
  let keys: { publicKey: string; secretKey: string } | undefined;
  const host = hostIdentity();
  // What ranks (and runners) killed earlier left on this host: segments, files, link sockets.
  // A runner's own ranks (they meet at its socket) skip it: the runner swept when its session began.
  if (o.socketPath === undefined) sweepLeftovers();
  // Mapped segments when the addon has them, else tmpfs files; every rank must
  // use the same kind (checked at connect), or none.
  const kind = o.sharedMemory ? sharedKind() : undefined;
  try {
    const { plan } = await rendezvous(
      { ...o, host, sharedMemory: kind !== undefined },
      {
        bind: async (p: RendezvousPlan) => {
          if (!Array.isArray(p.hosts) || p.hosts.length !== o.size) throw new TransportError(`rank 0's rendezvous plan names hosts for ${Array.isArray(p.hosts) ? p.hosts.length : 0} ranks, not ${o.size}`);
          split = planPeers(p, o.rank);
          const record: PeerRecord = { host, pid: process.pid };
          planned = p;
          let tcpHost: string | undefined;
          let advertised: string | undefined;
          let dataPort = 0;
          if (split.remote.length > 0) {
            const chosen = await chooseHostAddr({ hostAddr: o.hostAddr, masterAddr: o.masterAddr, masterPort: o.masterPort });
            advertised = chosen.address === "localhost" ? "127.0.0.1" : chosen.address.replace(/^\[|\]$/g, "");
            // Sockets bind IP literals; a host name is published as given and bound on every interface.
            tcpHost = isIP(advertised) ? advertised : "0.0.0.0";
            o.log.debug({ address: advertised, source: chosen.source }, "address for peers on other hosts");
            if (isLoopback(advertised) && !isLoopback(o.masterAddr)) {
              o.log.warn({ address: advertised, source: chosen.source }, `peers on other hosts are told to reach rank ${o.rank} at a loopback address; set MULTIRANK_HOST_ADDR`);
            }
            context = new (zeromq().Context)();
            keys = zeromq().curveKeyPair();
            // Bound before the PULL, so no connection is ever let in unchecked.
            const refuse = (address: string, why: string): void => o.refusals.refuse(`data peer at ${address}`, `a data connection with ${why}`);
            zap = await ZapHandler.bind(context, o.log, refuse);
            // Small frames only (the mesh sends large ones in pieces): libzmq reads a
            // whole frame before the CURVE handshake judges it.
            pull = new (zeromq().Pull)({ context, linger: 0, ipv6: isIP(tcpHost) === 6, curveServer: true, curveSecretKey: keys.secretKey, maxMessageSize: TCP_FRAME_LIMIT });
            watchFailedHandshakes(pull, refuse);
            await pull.bind(tcpEndpoint(tcpHost, "*"));
            const bound = pull.lastEndpoint ?? "";
            dataPort = Number(bound.slice(bound.lastIndexOf(":") + 1));
          }
          const linkPath = split.local.length > 0 ? path.join(os.tmpdir(), `multirank-${p.groupId}-r${o.rank}-p${process.pid}.sock`) : undefined;
          const listening = await PeerLinks.listen({ path: linkPath, tcpHost }, o.log, { auth: o.auth, refusals: o.refusals, groupId: p.groupId, rank: o.rank });
          links = listening.links;
          // Absent fields are left out, not undefined: msgpack would carry them.
          if (listening.unix) record.links = listening.unix;
          if (advertised !== undefined) record.remote = { links: `tcp:${hostPort(advertised, listening.tcpPort!)}`, data: tcpEndpoint(advertised, dataPort), curveKey: keys!.publicKey };
          if (p.sharedMemory) {
            try {
              slots = kind === "mmap" ? new MappedSlots(p.groupId, o.rank, peers) : SharedSlots.create(p.groupId, o.rank);
            } catch (error) {
              o.log.warn({ err: error }, "shared memory unavailable; large reductions go over sockets");
            }
          }
          if (slots) record.shared = slots.kind;
          return { record, sharedMemory: slots !== undefined };
        },
        connect: async (table, shm, signal) => {
          // Proven with the secret, but decoded from msgpack: a rank of another version could publish anything.
          if (table.length !== o.size) throw new TransportError(`the rendezvous table has ${table.length} peer records for ${o.size} ranks`);
          const bad = table.findIndex((r) => !isPeerRecord(r));
          if (bad >= 0) throw new TransportError(`rank ${bad} published a malformed peer record in the rendezvous table`, { rank: bad });
          const routes = peerRoutes(table, o.rank, planned!);
          hostNames = table.map((r) => r.host.name);
          const connected: Promise<void>[] = [links!.link(o.rank, routes.map((r) => r && { address: r.links, data: r.local }), signal)];
          const remote = routes.filter((r): r is PeerRoute => r !== undefined && !r.local);
          zap?.allow(remote.map((r) => r.curveKey!));
          for (const { peer, data = "", curveKey } of remote) {
            const push = new (zeromq().Push)({
              context,
              linger: 500,
              ipv6: data.startsWith("tcp://["),
              curveServerKey: curveKey,
              curvePublicKey: keys!.publicKey,
              curveSecretKey: keys!.secretKey,
            });
            // ZMTP heartbeats turn a silent peer (host down, cable pulled) into a
            // disconnect within a second (HEARTBEAT_*); on one host the kernel reports deaths at once.
            push.heartbeatInterval = HEARTBEAT_INTERVAL_MS;
            push.heartbeatTimeout = HEARTBEAT_TIMEOUT_MS;
            connected.push(new Promise((resolve) => push.events.on("connect", () => resolve())));
            push.connect(data);
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
    const zmqMesh = split.remote.length > 0 ? new ZmqMesh(pull!, pushes, o.log, zap) : undefined;
    const local = [...Array(o.size).keys()].map((r) => split.local.includes(r));
    const mesh = !zmqMesh ? links! : split.local.length === 0 ? zmqMesh : new RoutedMesh(links!, zmqMesh, local);
    if (o.log.isLevelEnabled("debug")) {
      // What the sockets are, not what was planned: tests read this line to see same-host pairs on unix links.
      const routes = Object.fromEntries(peers.map((p) => [p, { link: links!.kinds().get(p), data: local[p] ? "link" : "zmq", host: hostNames[p] }]));
      o.log.debug({ transport: plan.transport, sharedMemory: plan.sharedMemory && slots !== undefined, host: host.name, routes }, "process group connected");
    }
    return { mesh, links: links!, slots, hostNames };
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
