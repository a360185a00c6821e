import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { Packr } from "msgpackr";
import type { Logger } from "pino";
import { TransportError, ValidationError } from "../errors.js";
import { abortable } from "./abortable.js";
import type { GroupAuth, RefusalLog } from "./auth.js";
import { isHostIdentity, type HostIdentity } from "./host.js";
import type { GroupTransport } from "./peer-plan.js";
import type { PeerRecord } from "./peer-record.js";
import { bindRendezvous, connectRendezvous, type RendezvousAddress } from "./rendezvous-sockets.js";

const packr = new Packr({ useRecords: false });

/**
 * Largest rendezvous message rank 0 takes (hello, endpoint, connected are a
 * few hundred bytes): a peer without the secret can make it buffer no more
 * than this per message before the proof is checked.
 */
const MAX_MASTER_MESSAGE_BYTES = 16 * 1024;
/** Per rank in the table a follower receives (a peer record is well under this). */
const MAX_TABLE_BYTES_PER_RANK = 1024;

/** What rank 0 decides once every rank has said hello. */
export interface RendezvousPlan {
  /** How pairs of ranks connect (see {@link GroupTransport}). */
  transport: GroupTransport;
  /** Each rank's host id, by rank (from the hellos). */
  hosts: string[];
  /** Random id naming this group's unix socket and shared-memory files. */
  groupId: string;
  /** Whether every rank asked for and can use `/dev/shm` (only when all share one host). */
  sharedMemory: boolean;
}

/** What the rendezvous needs from the backend being built. */
export interface RendezvousHooks {
  /**
   * Binds what this rank's peers will dial for `plan` (its links, and across
   * hosts its data socket); reports its peer record and whether its shared
   * buffers exist.
   */
  bind(plan: RendezvousPlan): Promise<{ record: PeerRecord; sharedMemory: boolean }>;
  /**
   * Connects to every peer (`records`, index = rank, as the ranks published
   * them: unchecked) and, with `sharedMemory`, opens their buffers.
   */
  connect(records: PeerRecord[], sharedMemory: boolean, signal: AbortSignal): Promise<void>;
}

/** The rendezvous' inputs (validated by the caller). */
export interface RendezvousOptions {
  rank: number;
  size: number;
  masterAddr: string;
  masterPort: number;
  /**
   * A unix socket path to meet at instead of `masterAddr:masterPort`, when
   * every rank is on this host (a runner's own ranks).
   */
  socketPath?: string | undefined;
  transport: "auto" | "ipc" | "tcp";
  sharedMemory: boolean;
  /** This rank's host, said in its hello. */
  host: HostIdentity;
  /** Aborts with the reason to throw (a TimeoutError or AbortError). */
  signal: AbortSignal;
  log: Logger;
  /** Updated as the rendezvous goes, so a timeout can say what it was waiting for. */
  status: { waiting: string };
  /** Proves and checks messages with the group's secret. */
  auth: GroupAuth;
  /** Where messages without a valid proof are logged. */
  refusals: RefusalLog;
}

/**
 * What every message carries besides its body: `fn`, the nonce the follower
 * chose for its hello, and `run`, the nonce rank 0 chose for this rendezvous
 * (in the plan and everything after). A message recorded in one rendezvous
 * is therefore refused in another, even one keyed by the same secret.
 */
interface Nonces {
  fn?: string;
  run?: string;
}

type Msg = Nonces &
  (
    | { t: "hello"; rank: number; size: number; host: HostIdentity; shm: boolean }
    | { t: "plan"; plan: RendezvousPlan }
    | { t: "endpoint"; rank: number; record: PeerRecord; shm: boolean }
    | { t: "table"; records: PeerRecord[]; shm: boolean }
    | { t: "connected"; rank: number }
    | { t: "go" }
    | { t: "error"; message: string }
  );

/** Frames of `msg`: the proof, then the body. */
function seal(auth: GroupAuth, msg: Msg): Buffer[] {
  const body = packr.pack(msg);
  return [auth.prove("rendezvous", body), body];
}

/** The message in `[proof, body]` when the proof holds, else undefined. */
function open(auth: GroupAuth, proof: Buffer | undefined, body: Buffer | undefined, extra: boolean): Msg | undefined {
  if (extra || !body || !auth.verify(proof, "rendezvous", body)) return undefined;
  return unpack(body);
}

/** `tcp://host:port`, bracketing IPv6 literals. */
export function tcpEndpoint(host: string, port: number | "*"): string {
  return isIP(host) === 6 ? `tcp://[${host}]:${port}` : `tcp://${host}:${port}`;
}


// zmq binds IP literals or interfaces, not host names: a name that is not
// localhost means "this machine", so bind every interface (as torchrun does).
function bindHost(masterAddr: string): string {
  if (masterAddr === "localhost") return "127.0.0.1";
  return isIP(masterAddr) ? masterAddr : "*";
}

function unpack(frame: Buffer | undefined): Msg | undefined {
  try {
    const m = frame ? (packr.unpack(frame) as Msg) : undefined;
    return m && typeof m === "object" && typeof m.t === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Brings `size` ranks together. Rank 0 binds a ROUTER at
 * `tcp://masterAddr:masterPort`; the others connect DEALERs. Phases:
 * hello (rank, host) → plan (ipc, mixed or tcp; every rank's host; group id) → endpoint (each rank's
 * {@link PeerRecord}: where its links and data socket listen) → table (all
 * records) → connected → go. The master
 * socket is closed afterwards, so the port is free for the next group.
 *
 * Every message carries a proof made with the group's secret (see
 * {@link GroupAuth}). Rank 0 drops a message without a valid one before
 * reading it, logs its sender once, and never answers it: a peer without the
 * secret gets no rank, no plan and no table, and the real ranks go on as if
 * it were not there.
 * @throws TimeoutError / AbortError (the signal's reason), TransportError when
 * the port cannot be bound, ValidationError when ranks disagree on the size or
 * two processes claim one rank.
 */
export async function rendezvous(options: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; records: PeerRecord[] }> {
  return options.rank === 0 ? master(options, hooks) : follower(options, hooks);
}

async function master(o: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; records: PeerRecord[] }> {
  const where: RendezvousAddress = o.socketPath ? { unix: o.socketPath } : { tcp: tcpEndpoint(bindHost(o.masterAddr), o.masterPort), ipv6: isIP(o.masterAddr) === 6 };
  const address = "unix" in where ? `unix:${where.unix}` : where.tcp;
  const ids = new Map<number, Buffer>();
  /** Each rank's hello nonce: later messages of that rank must carry it. */
  const nonces = new Map<number, string>();
  const run = randomBytes(16).toString("hex");
  let sending: Promise<unknown> = Promise.resolve();
  // One send in flight per socket; a failed send must not stall the ones after it.
  // Only ever to identities whose message carried a valid proof.
  const send = (id: Buffer, fn: string, msg: Msg): Promise<unknown> => {
    const next = sending.then(() => router.send([id, ...seal(o.auth, { ...msg, run, fn })]));
    sending = next.catch((error: unknown) => o.log.warn({ err: error }, "rendezvous send failed"));
    return sending;
  };
  const router = await bindRendezvous(where, MAX_MASTER_MESSAGE_BYTES);
  try {
    o.log.debug({ address }, "rendezvous bound");
    const hosts: HostIdentity[] = [o.host];
    let shm = o.sharedMemory;

    // Receives until `have` holds a message of type `t` from every other rank.
    const collect = async <T extends Msg["t"]>(t: T, onMsg: (rank: number, m: Extract<Msg, { t: T }>) => void): Promise<void> => {
      const have = new Set<number>();
      const missing = (): string => [...Array(o.size).keys()].filter((r) => r > 0 && !have.has(r)).join(", ");
      o.status.waiting = `rank 0 waiting for ${t} from ranks ${missing()}`;
      while (have.size < o.size - 1) {
        const [id, proof, body, ...extra] = await abortable(router.receive(), o.signal);
        const m = open(o.auth, proof, body, extra.length > 0);
        if (!m || typeof m.fn !== "string") {
          o.refusals.refuse(`rendezvous peer ${id!.toString("hex")}`, "a rendezvous message without a valid proof");
          continue;
        }
        if (m.t === "hello") {
          const known = ids.get(m.rank);
          if (m.size !== o.size) {
            await send(id!, m.fn, { t: "error", message: `rank ${m.rank} says the world size is ${m.size}, rank 0 says ${o.size}` });
            continue;
          }
          if (!Number.isInteger(m.rank) || m.rank < 1 || m.rank >= o.size || (known && !known.equals(id!))) {
            await send(id!, m.fn, { t: "error", message: `rank ${m.rank} is out of range or already taken` });
            continue;
          }
          if (!isHostIdentity(m.host)) {
            await send(id!, m.fn, { t: "error", message: `rank ${m.rank} said no host identity in its hello (another multirank version?)` });
            continue;
          }
          if (t !== "hello") continue;
          ids.set(m.rank, id!);
          nonces.set(m.rank, m.fn);
        } else if (m.run !== run) continue; // proven, but from another rendezvous
        const rank = (m as { rank?: number }).rank;
        if (m.t !== t || rank === undefined || !ids.get(rank)?.equals(id!) || nonces.get(rank) !== m.fn || have.has(rank)) continue;
        have.add(rank);
        o.status.waiting = `rank 0 waiting for ${t} from ranks ${missing()}`;
        onMsg(rank, m as Extract<Msg, { t: T }>);
      }
    };

    await collect("hello", (rank, m) => {
      hosts[rank] = m.host;
      shm &&= m.shm;
    });
    const sameHost = hosts.every((h) => h.id === hosts[0]!.id);
    // Per pair when the ranks span hosts: unix links where two share one, tcp between hosts.
    const transport: GroupTransport = o.transport === "auto" ? (sameHost ? "ipc" : "mixed") : o.transport;
    const plan: RendezvousPlan = {
      transport,
      hosts: hosts.map((h) => h.id),
      groupId: randomBytes(6).toString("hex"),
      // One host only: a reduction across hosts through /dev/shm within each would be hierarchical (not yet).
      sharedMemory: shm && transport === "ipc" && sameHost,
    };
    o.log.debug({ plan, hosts: hosts.map((h) => h.name) }, "rendezvous plan");
    const toAll = (msg: Msg): void => {
      for (const [rank, id] of ids) void send(id, nonces.get(rank)!, msg);
    };
    toAll({ t: "plan", plan });

    const records: PeerRecord[] = [];
    const own = await hooks.bind(plan);
    records[0] = own.record;
    let shmOk = own.sharedMemory;
    await collect("endpoint", (rank, m) => {
      records[rank] = m.record;
      shmOk &&= m.shm;
    });
    toAll({ t: "table", records, shm: shmOk });
    await hooks.connect(records, shmOk, o.signal);
    await collect("connected", () => {});
    toAll({ t: "go" });
    await abortable(sending, o.signal);
    return { plan: { ...plan, sharedMemory: shmOk }, records };
  } finally {
    router.close();
  }
}

async function follower(o: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; records: PeerRecord[] }> {
  // Whoever holds the port (rank 0, or a squatter) can make this rank buffer at most one table.
  const where: RendezvousAddress = o.socketPath ? { unix: o.socketPath } : { tcp: tcpEndpoint(o.masterAddr, o.masterPort), ipv6: isIP(o.masterAddr) === 6 };
  const address = "unix" in where ? `unix:${where.unix}` : where.tcp;
  const dealer = connectRendezvous(where, MAX_MASTER_MESSAGE_BYTES + o.size * MAX_TABLE_BYTES_PER_RANK, o.signal);
  const fn = randomBytes(16).toString("hex");
  let run: string | undefined;
  let sending: Promise<unknown> = Promise.resolve();
  const send = (msg: Msg): Promise<unknown> => {
    const next = sending.then(() => dealer.send(seal(o.auth, { ...msg, fn, run })));
    sending = next.catch((error: unknown) => o.log.warn({ err: error }, "rendezvous send failed"));
    return sending;
  };
  const expect = async <T extends Msg["t"]>(t: T): Promise<Extract<Msg, { t: T }>> => {
    o.status.waiting = `rank ${o.rank} waiting for ${t} from rank 0 at ${address}`;
    for (;;) {
      const [proof, body, ...extra] = await abortable(dealer.receive(), o.signal);
      const m = open(o.auth, proof, body, extra.length > 0);
      // Not rank 0 of this rendezvous: something else holds the port, or a replay.
      if (!m || m.fn !== fn || (run !== undefined && m.run !== run)) {
        o.refusals.refuse(`rendezvous at ${address}`, "a rendezvous message without a valid proof");
        continue;
      }
      if (m.t === "error") throw new ValidationError(`rendezvous at ${address} refused rank ${o.rank}: ${m.message}`);
      if (m.t === t) return m as Extract<Msg, { t: T }>;
    }
  };
  try {
    void send({ t: "hello", rank: o.rank, size: o.size, host: o.host, shm: o.sharedMemory });
    const planned = await expect("plan");
    const { plan } = planned;
    run = planned.run;
    const own = await hooks.bind(plan);
    void send({ t: "endpoint", rank: o.rank, record: own.record, shm: own.sharedMemory });
    const table = await expect("table");
    await hooks.connect(table.records, table.shm, o.signal);
    void send({ t: "connected", rank: o.rank });
    await expect("go");
    return { plan: { ...plan, sharedMemory: table.shm }, records: table.records };
  } finally {
    dealer.close();
  }
}
