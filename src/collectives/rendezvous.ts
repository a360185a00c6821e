import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import os from "node:os";
import * as zmq from "zeromq";
import { Packr } from "msgpackr";
import type { Logger } from "pino";
import { TransportError, ValidationError } from "../errors.js";
import { abortable } from "./abortable.js";

const packr = new Packr({ useRecords: false });

/** What rank 0 decides once every rank has said hello. */
export interface RendezvousPlan {
  transport: "ipc" | "tcp";
  /** Random id naming this group's ipc and shared-memory files. */
  groupId: string;
  /** Whether every rank asked for and can use `/dev/shm`. */
  sharedMemory: boolean;
}

/** What the rendezvous needs from the backend being built. */
export interface RendezvousHooks {
  /** Binds this rank's data socket for `plan`; reports its endpoint and whether its shared buffers exist. */
  bind(plan: RendezvousPlan): Promise<{ endpoint: string; sharedMemory: boolean }>;
  /** Connects to every peer's endpoint (index = rank) and, with `sharedMemory`, opens their buffers. */
  connect(endpoints: string[], sharedMemory: boolean, signal: AbortSignal): Promise<void>;
}

/** The rendezvous' inputs (validated by the caller). */
export interface RendezvousOptions {
  rank: number;
  size: number;
  masterAddr: string;
  masterPort: number;
  transport: "auto" | "ipc" | "tcp";
  sharedMemory: boolean;
  /** Aborts with the reason to throw (a TimeoutError or AbortError). */
  signal: AbortSignal;
  log: Logger;
  /** Updated as the rendezvous goes, so a timeout can say what it was waiting for. */
  status: { waiting: string };
}

type Msg =
  | { t: "hello"; rank: number; size: number; host: string; shm: boolean }
  | { t: "plan"; plan: RendezvousPlan }
  | { t: "endpoint"; rank: number; endpoint: string; shm: boolean }
  | { t: "table"; endpoints: string[]; shm: boolean }
  | { t: "connected"; rank: number }
  | { t: "go" }
  | { t: "error"; message: string };

/** `tcp://host:port`, bracketing IPv6 literals. */
export function tcpEndpoint(host: string, port: number | "*"): string {
  return isIP(host) === 6 ? `tcp://[${host}]:${port}` : `tcp://${host}:${port}`;
}

/** Whether `host` is a loopback address or name. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
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
 * hello (rank, host) → plan (ipc or tcp, group id) → endpoint (each rank's
 * bound data socket) → table (all endpoints) → connected → go. The master
 * socket is closed afterwards, so the port is free for the next group.
 * @throws TimeoutError / AbortError (the signal's reason), TransportError when
 * the port cannot be bound, ValidationError when ranks disagree on the size or
 * two processes claim one rank.
 */
export async function rendezvous(options: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; endpoints: string[] }> {
  return options.rank === 0 ? master(options, hooks) : follower(options, hooks);
}

async function master(o: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; endpoints: string[] }> {
  const router = new zmq.Router({ linger: 2000, ipv6: isIP(o.masterAddr) === 6 });
  const address = tcpEndpoint(bindHost(o.masterAddr), o.masterPort);
  const ids = new Map<number, Buffer>();
  let sending: Promise<unknown> = Promise.resolve();
  // One send in flight per socket; a failed send must not stall the ones after it.
  const send = (id: Buffer, msg: Msg): Promise<unknown> => {
    const next = sending.then(() => router.send([id, packr.pack(msg)]));
    sending = next.catch((error: unknown) => o.log.warn({ err: error }, "rendezvous send failed"));
    return sending;
  };
  try {
    try {
      await router.bind(address);
    } catch (cause) {
      throw new TransportError(`rank 0 cannot bind the rendezvous at ${address}: ${(cause as Error).message}`, { cause });
    }
    o.log.debug({ address }, "rendezvous bound");
    const hosts: string[] = [os.hostname()];
    let shm = o.sharedMemory;

    // Receives until `have` holds a message of type `t` from every other rank.
    const collect = async <T extends Msg["t"]>(t: T, onMsg: (rank: number, m: Extract<Msg, { t: T }>) => void): Promise<void> => {
      const have = new Set<number>();
      const missing = (): string => [...Array(o.size).keys()].filter((r) => r > 0 && !have.has(r)).join(", ");
      o.status.waiting = `rank 0 waiting for ${t} from ranks ${missing()}`;
      while (have.size < o.size - 1) {
        const [id, frame] = await abortable(router.receive(), o.signal);
        const m = unpack(frame);
        if (!m) continue; // a foreign peer: ignore
        if (m.t === "hello") {
          const known = ids.get(m.rank);
          if (m.size !== o.size) {
            await send(id, { t: "error", message: `rank ${m.rank} says the world size is ${m.size}, rank 0 says ${o.size}` });
            continue;
          }
          if (!Number.isInteger(m.rank) || m.rank < 1 || m.rank >= o.size || (known && !known.equals(id))) {
            await send(id, { t: "error", message: `rank ${m.rank} is out of range or already taken` });
            continue;
          }
          if (t !== "hello") continue;
          ids.set(m.rank, id);
        }
        const rank = (m as { rank?: number }).rank;
        if (m.t !== t || rank === undefined || !ids.get(rank)?.equals(id) || have.has(rank)) continue;
        have.add(rank);
        o.status.waiting = `rank 0 waiting for ${t} from ranks ${missing()}`;
        onMsg(rank, m as Extract<Msg, { t: T }>);
      }
    };

    await collect("hello", (rank, m) => {
      hosts[rank] = m.host;
      shm &&= m.shm;
    });
    const sameHost = hosts.every((h) => h === hosts[0]);
    const transport = o.transport === "auto" ? (sameHost ? "ipc" : "tcp") : o.transport;
    const plan: RendezvousPlan = { transport, groupId: randomBytes(6).toString("hex"), sharedMemory: shm && transport === "ipc" && sameHost };
    o.log.debug({ plan, hosts }, "rendezvous plan");
    for (const id of ids.values()) void send(id, { t: "plan", plan });

    const endpoints: string[] = [];
    const own = await hooks.bind(plan);
    endpoints[0] = own.endpoint;
    let shmOk = own.sharedMemory;
    await collect("endpoint", (rank, m) => {
      endpoints[rank] = m.endpoint;
      shmOk &&= m.shm;
    });
    for (const id of ids.values()) void send(id, { t: "table", endpoints, shm: shmOk });
    await hooks.connect(endpoints, shmOk, o.signal);
    await collect("connected", () => {});
    for (const id of ids.values()) void send(id, { t: "go" });
    await abortable(sending, o.signal);
    return { plan: { ...plan, sharedMemory: shmOk }, endpoints };
  } finally {
    router.close();
  }
}

async function follower(o: RendezvousOptions, hooks: RendezvousHooks): Promise<{ plan: RendezvousPlan; endpoints: string[] }> {
  const dealer = new zmq.Dealer({ linger: 1000, ipv6: isIP(o.masterAddr) === 6 });
  const address = tcpEndpoint(o.masterAddr, o.masterPort);
  let sending: Promise<unknown> = Promise.resolve();
  const send = (msg: Msg): Promise<unknown> => {
    const next = sending.then(() => dealer.send(packr.pack(msg)));
    sending = next.catch((error: unknown) => o.log.warn({ err: error }, "rendezvous send failed"));
    return sending;
  };
  const expect = async <T extends Msg["t"]>(t: T): Promise<Extract<Msg, { t: T }>> => {
    o.status.waiting = `rank ${o.rank} waiting for ${t} from rank 0 at ${address}`;
    for (;;) {
      const [frame] = await abortable(dealer.receive(), o.signal);
      const m = unpack(frame);
      if (m?.t === "error") throw new ValidationError(`rendezvous at ${address} refused rank ${o.rank}: ${m.message}`);
      if (m?.t === t) return m as Extract<Msg, { t: T }>;
    }
  };
  try {
    dealer.connect(address);
    void send({ t: "hello", rank: o.rank, size: o.size, host: os.hostname(), shm: o.sharedMemory });
    const { plan } = await expect("plan");
    const own = await hooks.bind(plan);
    void send({ t: "endpoint", rank: o.rank, endpoint: own.endpoint, shm: own.sharedMemory });
    const table = await expect("table");
    await hooks.connect(table.endpoints, table.shm, o.signal);
    void send({ t: "connected", rank: o.rank });
    await expect("go");
    return { plan: { ...plan, sharedMemory: table.shm }, endpoints: table.endpoints };
  } finally {
    dealer.close();
  }
}
