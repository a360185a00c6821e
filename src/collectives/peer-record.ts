import type { SharedKind } from "./shm.js";

/**
 * What each rank publishes in the rendezvous table, so its peers can reach
 * it. Rank 0 passes the records through without reading them; each rank's
 * backend checks them with {@link isPeerRecord} before it dials anyone.
 */
export interface PeerRecord {
  /**
   * Where this rank's ZeroMQ data socket (a PULL) is bound, `tcp://host:port`:
   * across hosts only. Absent on one host, where the data goes over the links.
   */
  data?: string;
  /** Where this rank's peer links listen: `unix:<path>` on one host, `tcp:<host>:<port>` across hosts. */
  links: string;
  /** This rank's process id: its shared-memory files are named with it. */
  pid: number;
  /** The kind of shared buffers this rank made; absent when it made none. */
  shared?: SharedKind;
  /** This rank's CURVE public key (z85) for the data sockets: across hosts only. */
  curveKey?: string;
}

const optionalString = (v: unknown): boolean => v === undefined || typeof v === "string";

/** Whether `value` (decoded from the table, so of any shape) is a {@link PeerRecord}. */
export function isPeerRecord(value: unknown): value is PeerRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.links === "string" &&
    Number.isSafeInteger(r.pid) &&
    optionalString(r.data) &&
    (r.shared === undefined || r.shared === "mmap" || r.shared === "file") &&
    optionalString(r.curveKey)
  );
}
