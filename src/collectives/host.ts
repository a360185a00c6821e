import { createHash } from "node:crypto";
import dgram from "node:dgram";
import dns from "node:dns/promises";
import fs from "node:fs";
import { isIP } from "node:net";
import os from "node:os";
import { ValidationError } from "../errors.js";
import { isLoopback } from "../util/loopback.js";

/** The variable that overrides {@link hostIdentity}: for tests, and for containers that share a kernel but not a filesystem. */
export const HOST_ID_ENV = "MULTIRANK_HOST_ID";
/** The variable that names the address peers on other hosts use to reach this rank. */
export const HOST_ADDR_ENV = "MULTIRANK_HOST_ADDR";
/** Longest {@link HOST_ID_ENV} taken (it travels in every peer record). */
const MAX_HOST_ID_LENGTH = 64;

/** Which host a rank runs on, as it publishes it to its peers. */
export interface HostIdentity {
  /** Equal for two ranks exactly when they may use unix sockets and `/dev/shm` between them. */
  id: string;
  /** What errors and logs call the host: its hostname, or the {@link HOST_ID_ENV} override. */
  name: string;
}

/** Whether `value` (decoded from the wire, so of any shape) is a {@link HostIdentity}. */
export function isHostIdentity(value: unknown): value is HostIdentity {
  if (typeof value !== "object" || value === null) return false;
  const h = value as Record<string, unknown>;
  return typeof h.id === "string" && h.id.length > 0 && typeof h.name === "string";
}

function readOr(file: string, read: (f: string) => string): string {
  try {
    return read(file).trim();
  } catch {
    return ""; // no /proc (not Linux) or a sandbox that hides it: the other parts still count
  }
}

/**
 * This process's host. Two ranks share a host, and so unix links and
 * `/dev/shm`, only when all of these match:
 * - the UTS hostname (a "host" made with `unshare --uts` has its own);
 * - the kernel's boot id (`/proc/sys/kernel/random/boot_id`): two machines
 *   both called `localhost` are not one;
 * - the network namespace (`/proc/self/ns/net`): containers with their own
 *   network must reach each other at the addresses they publish;
 * - the mount namespace (`/proc/self/ns/mnt`): a unix socket's path and a
 *   segment in `/dev/shm` are only shared where the filesystem is.
 * Unix sockets by path would cross network namespaces that share a
 * filesystem, but a wrong "same host" breaks the group while a wrong
 * "other host" only costs speed (tcp works everywhere), so in doubt it is
 * another host. `MULTIRANK_HOST_ID` replaces the whole id (and names the
 * host): for tests, and for containers that share a kernel and know better.
 * @throws ValidationError when `MULTIRANK_HOST_ID` is longer than 64 characters.
 */
export function hostIdentity(env: NodeJS.ProcessEnv = process.env): HostIdentity {
  const override = env[HOST_ID_ENV];
  if (override) {
    if (override.length > MAX_HOST_ID_LENGTH) throw new ValidationError(`environment variable ${HOST_ID_ENV} must be at most ${MAX_HOST_ID_LENGTH} characters (got ${override.length})`);
    return { id: `env:${override}`, name: override };
  }
  const name = os.hostname();
  const parts = [
    name,
    readOr("/proc/sys/kernel/random/boot_id", (f) => fs.readFileSync(f, "utf8")),
    readOr("/proc/self/ns/net", fs.readlinkSync),
    readOr("/proc/self/ns/mnt", fs.readlinkSync),
  ];
  // Hashed: fixed length in the peer record, and nothing about the machine beyond its name.
  return { id: createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32), name };
}

/** How {@link chooseHostAddr} picked its address (logged, and in the README). */
export type HostAddrSource = "options.hostAddr" | typeof HOST_ADDR_ENV | "loopback masterAddr" | "route to masterAddr" | "first external IPv4" | "masterAddr";

/** What {@link chooseHostAddr} may ask the machine (replaced in tests). */
export interface HostAddrProbes {
  /** The local address of the route to `host` (see {@link localAddressTowards}). */
  routeTo(host: string, port: number): Promise<string | undefined>;
  interfaces(): NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

const machineProbes: HostAddrProbes = { routeTo: localAddressTowards, interfaces: () => os.networkInterfaces() };

function firstExternalIPv4(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>): string | undefined {
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * The address peers on other hosts dial to reach this rank, first that applies:
 * `options.hostAddr`; `MULTIRANK_HOST_ADDR`; `masterAddr` itself when it is
 * loopback (every rank is then on this machine); the local address of the
 * route to `masterAddr` (the interface the peers evidently share a network
 * on); the first non-internal IPv4 address; `masterAddr`. A loopback address
 * is never picked for a `masterAddr` that is not loopback.
 */
export async function chooseHostAddr(
  input: { hostAddr?: string; env?: NodeJS.ProcessEnv; masterAddr: string; masterPort: number },
  probes: HostAddrProbes = machineProbes,
): Promise<{ address: string; source: HostAddrSource }> {
  if (input.hostAddr) return { address: input.hostAddr, source: "options.hostAddr" };
  const fromEnv = (input.env ?? process.env)[HOST_ADDR_ENV];
  if (fromEnv) return { address: fromEnv, source: HOST_ADDR_ENV };
  if (isLoopback(input.masterAddr)) return { address: input.masterAddr, source: "loopback masterAddr" };
  const routed = await probes.routeTo(input.masterAddr, input.masterPort);
  if (routed && !isLoopback(routed) && routed !== "0.0.0.0" && routed !== "::") return { address: routed, source: "route to masterAddr" };
  const external = firstExternalIPv4(probes.interfaces());
  if (external) return { address: external, source: "first external IPv4" };
  return { address: input.masterAddr, source: "masterAddr" };
}

/**
 * The local address this machine would send from to reach `host`: a UDP
 * socket's `connect()` picks the route and the source address without
 * sending a packet. Undefined when the name does not resolve or there is no
 * route.
 */
export async function localAddressTowards(host: string, port: number): Promise<string | undefined> {
  let address = host.replace(/^\[|\]$/g, "");
  let family = isIP(address);
  if (family === 0) {
    try {
      ({ address, family } = await dns.lookup(address));
    } catch {
      return undefined;
    }
  }
  const socket = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(port, address, () => resolve());
    });
    return socket.address().address;
  } catch {
    return undefined;
  } finally {
    socket.close();
  }
}
