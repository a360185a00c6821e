import { isHostIdentity, type HostIdentity } from "./host.js";
import type { SharedKind } from "./shm.js";

/** Where peers on other hosts reach a rank: over tcp, the data socket CURVE-encrypted. */
export interface RemoteEndpoints {
  /** Where this rank's peer links listen on tcp: `tcp:<host>:<port>` (`tcp:[v6]:<port>`). */
  links: string;
  /** Where this rank's ZeroMQ data socket (a PULL) is bound: `tcp://host:port`. */
  data: string;
  /** This rank's CURVE public key (z85) for the data sockets. */
  curveKey: string;
}

/**
 * What each rank publishes in the rendezvous table, so its peers can reach
 * it. Rank 0 passes the records through without reading them; each rank's
 * backend checks them with {@link isPeerRecord} before it dials anyone, and
 * `peerRoutes` (`peer-plan.ts`) picks per peer which address to use.
 */
export interface PeerRecord {
  /** The host this rank runs on: peers with the same `host.id` use `links`, the others `remote`. */
  host: HostIdentity;
  /** This rank's process id: its shared-memory files are named with it. */
  pid: number;
  /** Where this rank's peer links listen for peers on its host, `unix:<path>`; absent when it has none. */
  links?: string;
  /** How peers on other hosts reach this rank; absent when it has none. */
  remote?: RemoteEndpoints;
  /** The kind of shared buffers this rank made; absent when it made none. */
  shared?: SharedKind;
}

function isRemote(value: unknown): value is RemoteEndpoints {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r.links === "string" && typeof r.data === "string" && typeof r.curveKey === "string";
}

/** Whether `value` (decoded from the table, so of any shape) is a {@link PeerRecord}. */
export function isPeerRecord(value: unknown): value is PeerRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    isHostIdentity(r.host) &&
    Number.isSafeInteger(r.pid) &&
    (r.links === undefined || typeof r.links === "string") &&
    (r.remote === undefined || isRemote(r.remote)) &&
    (r.shared === undefined || r.shared === "mmap" || r.shared === "file")
  );
}
