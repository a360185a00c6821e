import os from "node:os";
import { describe, expect, it } from "vitest";
import { chooseHostAddr, hostIdentity, localAddressTowards, type HostAddrProbes } from "../../src/collectives/host.js";
import { peerRoutes, planPeers } from "../../src/collectives/peer-plan.js";
import type { PeerRecord } from "../../src/collectives/peer-record.js";

const key = "k".repeat(40);
/** A record as a rank publishes it: unix links when it has peers on its host, tcp when it has others. */
function record(rank: number, host: string, local: boolean, remote: boolean): PeerRecord {
  const r: PeerRecord = { host: { id: `id-${host}`, name: host }, pid: 100 + rank };
  if (local) r.links = `unix:/tmp/multirank-g-r${rank}.sock`;
  if (remote) r.remote = { links: `tcp:10.0.0.${rank}:4100${rank}`, data: `tcp://10.0.0.${rank}:4200${rank}`, curveKey: key };
  return r;
}

describe("the per-pair plan", () => {
  const hosts = ["id-a", "id-a", "id-b", "id-b", "id-c"];

  it("puts peers with this rank's host id on unix links and the others on tcp", () => {
    expect(planPeers({ transport: "mixed", hosts }, 0)).toEqual({ local: [1], remote: [2, 3, 4] });
    expect(planPeers({ transport: "mixed", hosts }, 3)).toEqual({ local: [2], remote: [0, 1, 4] });
    expect(planPeers({ transport: "mixed", hosts }, 4)).toEqual({ local: [], remote: [0, 1, 2, 3] });
    // Forced by options.transport, whatever the hosts.
    expect(planPeers({ transport: "ipc", hosts }, 2)).toEqual({ local: [0, 1, 3, 4], remote: [] });
    expect(planPeers({ transport: "tcp", hosts: ["x", "x", "x"] }, 1)).toEqual({ local: [], remote: [0, 2] });
  });

  it("is symmetric: two ranks always agree on how they reach each other", () => {
    for (let a = 0; a < hosts.length; a++) {
      for (let b = 0; b < hosts.length; b++) {
        if (a === b) continue;
        expect(planPeers({ transport: "mixed", hosts }, a).local.includes(b)).toBe(planPeers({ transport: "mixed", hosts }, b).local.includes(a));
      }
    }
  });

  it("routes each peer to the address its plan needs, naming its host", () => {
    const plan = { transport: "mixed" as const, hosts };
    const table = [record(0, "a", true, true), record(1, "a", true, true), record(2, "b", true, true), record(3, "b", true, true), record(4, "c", false, true)];
    const routes = peerRoutes(table, 1, plan);
    expect(routes[1]).toBeUndefined();
    expect(routes[0]).toEqual({ peer: 0, local: true, links: "unix:/tmp/multirank-g-r0.sock", hostName: "a" });
    expect(routes[2]).toEqual({ peer: 2, local: false, links: "tcp:10.0.0.2:41002", data: "tcp://10.0.0.2:42002", curveKey: key, hostName: "b" });
    expect(routes[4]).toMatchObject({ peer: 4, local: false, data: "tcp://10.0.0.4:42004", hostName: "c" });
  });

  it("refuses a table that lacks an address a route needs, or a host that changed since the hello", () => {
    const plan = { transport: "mixed" as const, hosts: ["id-a", "id-a", "id-b"] };
    // Rank 1 shares rank 0's host but published no unix address.
    expect(() => peerRoutes([record(0, "a", true, true), record(1, "a", false, true), record(2, "b", false, true)], 0, plan)).toThrow(
      expect.objectContaining({ code: "MULTIRANK_ERR_TRANSPORT", rank: 1, message: expect.stringContaining("unix link address") }),
    );
    // Rank 2 is on another host but published no tcp addresses.
    expect(() => peerRoutes([record(0, "a", true, true), record(1, "a", true, true), record(2, "b", false, false)], 0, plan)).toThrow(expect.objectContaining({ rank: 2, message: expect.stringContaining("tcp addresses") }));
    expect(() => peerRoutes([record(0, "a", true, true), record(1, "b", true, true), record(2, "b", false, true)], 0, plan)).toThrow(expect.objectContaining({ rank: 1 }));
  });
});

describe("host identity", () => {
  it("is stable in a process, names the host by its hostname, and fits a peer record", () => {
    const a = hostIdentity({});
    expect(a).toEqual(hostIdentity({}));
    expect(a.name).toBe(os.hostname());
    expect(a.id).toMatch(/^[0-9a-f]{32}$/);
  });

  it("MULTIRANK_HOST_ID replaces the id and names the host (tests, containers sharing a kernel)", () => {
    expect(hostIdentity({ MULTIRANK_HOST_ID: "host-b" })).toEqual({ id: "env:host-b", name: "host-b" });
    expect(hostIdentity({ MULTIRANK_HOST_ID: "host-b" }).id).not.toBe(hostIdentity({}).id);
    expect(() => hostIdentity({ MULTIRANK_HOST_ID: "x".repeat(65) })).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("MULTIRANK_HOST_ID") }));
  });
});

describe("the address peers on other hosts use", () => {
  const ifaces = { lo: [{ address: "127.0.0.1", family: "IPv4", internal: true }], eth0: [{ address: "10.1.2.3", family: "IPv4", internal: false }] } as unknown as NodeJS.Dict<os.NetworkInterfaceInfo[]>;
  const probes = (routed: string | undefined, interfaces = ifaces): HostAddrProbes & { asked: string[] } => {
    const asked: string[] = [];
    return { asked, routeTo: async (host) => (asked.push(host), routed), interfaces: () => interfaces };
  };
  const master = { masterAddr: "10.9.9.9", masterPort: 29500, env: {} };

  it("takes options.hostAddr, then MULTIRANK_HOST_ADDR, without probing", async () => {
    const p = probes("10.5.5.5");
    expect(await chooseHostAddr({ ...master, hostAddr: "10.0.0.7", env: { MULTIRANK_HOST_ADDR: "10.0.0.8" } }, p)).toEqual({ address: "10.0.0.7", source: "options.hostAddr" });
    expect(await chooseHostAddr({ ...master, env: { MULTIRANK_HOST_ADDR: "10.0.0.8" } }, p)).toEqual({ address: "10.0.0.8", source: "MULTIRANK_HOST_ADDR" });
    expect(p.asked).toEqual([]);
  });

  it("uses loopback only when masterAddr is loopback", async () => {
    expect(await chooseHostAddr({ ...master, masterAddr: "127.0.0.1" }, probes("10.5.5.5"))).toEqual({ address: "127.0.0.1", source: "loopback masterAddr" });
    // A master name that resolves to loopback here (Debian's 127.0.1.1) must not make this rank publish loopback.
    expect(await chooseHostAddr({ ...master, masterAddr: "head" }, probes("127.0.1.1"))).toEqual({ address: "10.1.2.3", source: "first external IPv4" });
  });

  it("else the interface of the route to masterAddr, else the first external IPv4, else masterAddr", async () => {
    const p = probes("10.5.5.5");
    expect(await chooseHostAddr(master, p)).toEqual({ address: "10.5.5.5", source: "route to masterAddr" });
    expect(p.asked).toEqual(["10.9.9.9"]);
    expect(await chooseHostAddr(master, probes(undefined))).toEqual({ address: "10.1.2.3", source: "first external IPv4" });
    expect(await chooseHostAddr(master, probes("0.0.0.0", { lo: ifaces.lo }))).toEqual({ address: "10.9.9.9", source: "masterAddr" });
  });

  it("finds the route's local address with a UDP connect (no packet sent)", async () => {
    expect(await localAddressTowards("127.0.0.1", 9)).toBe("127.0.0.1");
    expect(await localAddressTowards("localhost", 9)).toMatch(/^(127\.0\.0\.1|::1)$/);
    expect(await localAddressTowards("no-such-host.invalid", 9)).toBeUndefined();
  });
});
