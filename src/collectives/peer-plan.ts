import { TransportError } from "../errors.js";
import type { PeerRecord } from "./peer-record.js";

/**
 * How a group's ranks reach each other, decided by rank 0 from the hosts in
 * the hellos: `ipc`, every rank on one host (unix links, `/dev/shm`); `mixed`,
 * per pair (unix links between ranks on one host, tcp with ZeroMQ data
 * sockets between hosts); `tcp`, every pair over tcp (`transport: "tcp"`).
 */
export type GroupTransport = "ipc" | "tcp" | "mixed";

/** What {@link planPeers} reads of the rendezvous plan. */
export interface HostPlan {
  transport: GroupTransport;
  /** Each rank's host id, by rank. */
  hosts: readonly string[];
}

/** Which of a rank's peers it reaches how. Both lists ascend. */
export interface PeerPlan {
  /** Peers on this rank's host: unix links carry their data. */
  local: number[];
  /** Peers on other hosts: tcp links watch them, ZeroMQ over tcp (CURVE) carries their data. */
  remote: number[];
}

/**
 * Splits `rank`'s peers into those on its host and the others. Pure and
 * symmetric: two ranks always agree on how they reach each other.
 * @example planPeers({ transport: "mixed", hosts: ["a", "a", "b"] }, 0) // { local: [1], remote: [2] }
 */
export function planPeers(plan: HostPlan, rank: number): PeerPlan {
  const local: number[] = [];
  const remote: number[] = [];
  for (let peer = 0; peer < plan.hosts.length; peer++) {
    if (peer === rank) continue;
    const same = plan.transport === "ipc" || (plan.transport === "mixed" && plan.hosts[peer] === plan.hosts[rank]);
    (same ? local : remote).push(peer);
  }
  return { local, remote };
}

/** How this rank reaches one peer, from the peer's record. */
export interface PeerRoute {
  peer: number;
  /** On this rank's host: a unix link carries the data. Else tcp links and ZeroMQ. */
  local: boolean;
  /** The peer's link address to dial: `unix:<path>` or `tcp:<host>:<port>`. */
  links: string;
  /** Remote peers: the ZeroMQ data endpoint and CURVE key. */
  data?: string;
  curveKey?: string;
  /** The peer's host, for errors and logs. */
  hostName: string;
}

/**
 * The route to every peer (`undefined` at `rank`), from the rendezvous
 * `table` and the plan everyone got.
 * @throws TransportError naming the rank whose record lacks the address its
 * route needs, or whose host differs from the one it said hello with.
 */
export function peerRoutes(table: readonly PeerRecord[], rank: number, plan: HostPlan): (PeerRoute | undefined)[] {
  const { local, remote } = planPeers(plan, rank);
  const routes: (PeerRoute | undefined)[] = Array(table.length).fill(undefined);
  const check = (peer: number, ok: unknown, what: string): void => {
    if (!ok) throw new TransportError(`rank ${peer} published no ${what} in the rendezvous table, which rank ${rank} needs to reach it`, { rank: peer });
  };
  for (const peer of [...local, ...remote]) {
    const r = table[peer]!;
    if (r.host.id !== plan.hosts[peer]) throw new TransportError(`rank ${peer} published host ${r.host.name} in its peer record, not the one it said hello with`, { rank: peer });
    if (local.includes(peer)) {
      check(peer, r.links, "unix link address");
      routes[peer] = { peer, local: true, links: r.links!, hostName: r.host.name };
    } else {
      check(peer, r.remote, "tcp addresses");
      routes[peer] = { peer, local: false, links: r.remote!.links, data: r.remote!.data, curveKey: r.remote!.curveKey, hostName: r.host.name };
    }
  }
  return routes;
}
