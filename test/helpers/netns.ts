/**
 * "Hosts" on one machine for tests and benchmarks that need ranks with their
 * own addresses: each host is a network namespace with one veth link to a
 * bridge in a hub namespace of its own, on a private /24 (10.213.X.0/24, an X
 * nothing on this machine uses), so every host reaches every other and none
 * reaches the machine's own network. Each command runs in its host's network
 * namespace under a UTS namespace with the host's name, so `os.hostname()`
 * says which host it is on.
 *
 * Commands enter the namespace with `nsenter --net=/run/netns/NAME`, not
 * `ip netns exec`: the latter gives every command a mount namespace of its
 * own, and multirank counts the mount namespace in a host's identity (a unix
 * socket path is only shared where the filesystem is), so two ranks started
 * on one "host" would not be on one host.
 *
 * Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; see
 * {@link netnsUnavailable}. Namespaces are named `mrnet<pid>-<host>`, so
 * {@link NetnsHosts.create} first removes those of earlier runs whose process
 * is gone (a crashed test), killing what still ran in them.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

const PREFIX = "mrnet";

/** One "host": a network namespace with one address. */
export interface NetnsHost {
  /** The name the test gave it, and its hostname inside. */
  readonly name: string;
  /** The network namespace (`ip netns list`). */
  readonly ns: string;
  /** Its IPv4 address on the private subnet. */
  readonly address: string;
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const tool of ["ip", "nsenter", "unshare"]) {
    if (spawnSync(tool, ["--version"], { stdio: "ignore" }).error) return `${tool} is not installed (iproute2, util-linux)`;
  }
  return undefined;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function tryIp(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // Already gone.
  }
}

function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function namespaces(): string[] {
  return ip("netns", "list")
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter(Boolean);
}

/** Kills every process in namespace `ns`, then removes it. */
function removeNamespace(ns: string): void {
  let pids: number[] = [];
  try {
    pids = ip("netns", "pids", ns).split("\n").filter(Boolean).map(Number);
  } catch {
    // No such namespace.
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
  tryIp("netns", "del", ns);
}

/** Removes the namespaces of earlier runs whose process is gone. */
export function sweepNetns(): void {
  for (const ns of namespaces()) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) removeNamespace(ns);
  }
}

/** A third octet X such that 10.213.X.0/24 is on no interface of this machine nor of another run's hosts. */
function freeSubnet(): number {
  const used = [ip("-o", "addr"), ip("route")];
  for (const ns of namespaces()) {
    try {
      used.push(ip("-n", ns, "-o", "addr"));
    } catch {
      // Removed meanwhile.
    }
  }
  const text = used.join("\n");
  const start = process.pid % 250;
  for (let i = 0; i < 250; i++) {
    const x = ((start + i) % 250) + 1;
    if (!text.includes(`10.213.${x}.`)) return x;
  }
  throw new Error("no free 10.213.X.0/24 subnet for the test's hosts");
}

/** Hosts on a private bridge; see the file's comment. Call {@link NetnsHosts.destroy} in a `finally`/`afterAll`. */
export class NetnsHosts {
  readonly hosts: ReadonlyMap<string, NetnsHost>;
  readonly subnet: string;
  readonly #hub: string;
  readonly #ports = new Map<string, string>();
  readonly #children = new Set<ChildProcess>();
  #destroyed = false;

  private constructor(hosts: Map<string, NetnsHost>, hub: string, subnet: string) {
    this.hosts = hosts;
    this.#hub = hub;
    this.subnet = subnet;
  }

  /**
   * Makes the hosts (names up to 8 characters: [a-z0-9-]). On failure
   * everything made so far is removed before it throws.
   */
  static create(names: readonly string[]): NetnsHosts {
    sweepNetns();
    const x = freeSubnet();
    const hub = `${PREFIX}${process.pid}-hub`;
    const hosts = new Map<string, NetnsHost>();
    const made = new NetnsHosts(hosts, hub, `10.213.${x}.0/24`);
    try {
      ip("netns", "add", hub);
      ip("-n", hub, "link", "add", "br0", "type", "bridge");
      ip("-n", hub, "link", "set", "br0", "up");
      for (const [i, name] of names.entries()) {
        if (!/^[a-z0-9-]{1,8}$/.test(name)) throw new Error(`host name ${name} must be 1 to 8 of [a-z0-9-]`);
        const ns = `${PREFIX}${process.pid}-${name}`;
        const address = `10.213.${x}.${10 + i}`;
        const port = `p${i}`;
        ip("netns", "add", ns);
        hosts.set(name, { name, ns, address });
        // Made inside the namespaces, so nothing is ever left in the machine's own.
        ip("-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns);
        ip("-n", hub, "link", "set", port, "master", "br0", "up");
        ip("-n", ns, "link", "set", "lo", "up");
        ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
        ip("-n", ns, "link", "set", "eth0", "up");
        made.#ports.set(name, port);
      }
    } catch (error) {
      made.destroy();
      throw error;
    }
    return made;
  }

  host(name: string): NetnsHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no host ${name}`);
    return host;
  }

  /** The argv that runs `command` on `host` with its hostname. */
  argv(host: string, command: string, args: readonly string[] = []): string[] {
    const { ns, name } = this.host(host);
    if (!existsSync(`/run/netns/${ns}`)) throw new Error(`host ${host}'s namespace is gone`);
    return ["nsenter", `--net=/run/netns/${ns}`, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, command, ...args];
  }

  /** Spawns `command` on `host`; its pid is the command's own (nsenter, unshare and sh exec). Killed by {@link destroy}. */
  spawn(host: string, command: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
    const [first, ...rest] = this.argv(host, command, args);
    const child = spawn(first!, rest, options);
    this.#children.add(child);
    child.once("exit", () => this.#children.delete(child));
    return child;
  }

  /** Runs `command` on `host` to completion; returns its stdout. */
  exec(host: string, command: string, args: readonly string[] = []): string {
    const [first, ...rest] = this.argv(host, command, args);
    return execFileSync(first!, rest, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  }

  /** The processes running on `host` now. */
  pids(host: string): number[] {
    return ip("netns", "pids", this.host(host).ns).split("\n").filter(Boolean).map(Number);
  }

  /** Pulls `host`'s cable: its port on the bridge goes down, and its packets go nowhere. Its processes keep running. */
  cut(host: string): void {
    ip("-n", this.#hub, "link", "set", this.#port(host), "down");
  }

  /** Plugs `host` back in. */
  restore(host: string): void {
    ip("-n", this.#hub, "link", "set", this.#port(host), "up");
  }

  #port(host: string): string {
    const port = this.#ports.get(host);
    if (!port) throw new Error(`no host ${host}`);
    return port;
  }

  /** Kills every process on the hosts (those it spawned and any other) and removes every namespace. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    for (const { ns } of this.hosts.values()) removeNamespace(ns);
    removeNamespace(this.#hub);
  }
}
