/**
 * Attach mode across "hosts" with their own addresses and hostnames: network
 * namespaces on a private bridge (test/helpers/netns.ts). The runner runs on
 * host-a, two ranks each on host-b and host-c (world size 4, torchrun's
 * variables, the join string in a 0600 file), and an impostor on host-d.
 * Needs root: skipped with a message otherwise, except in CI (CI set), where
 * it fails instead.
 */
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeJoinInfo, encodeJoinInfo } from "../../src/transport/join-info.js";
import { NetnsHosts, netnsUnavailable } from "../helpers/netns.js";
import { launchRank, launchRanks, RunnerOnHost, type RankOnHost } from "../helpers/netns-cluster.js";

/** Short, so the fault tests take seconds; the bound is the same formula as the default's 10 s + 2.5 s. */
const HEARTBEAT_S = 2;
/** heartbeatTimeout plus one ping interval (a quarter of it, at most 5 s), as the README says. */
const BOUND_MS = HEARTBEAT_S * 1000 + Math.min((HEARTBEAT_S * 1000) / 4, 5000);
/** Room for a busy 2-core machine on top of the bound. */
const SLACK_MS = 3000;
const LAYOUT = ["host-b", "host-c"];
const hostOf = (rank: number): string => LAYOUT[Math.floor(rank / 2)]!;

const unavailable = netnsUnavailable();
const skip = unavailable !== undefined && !process.env.CI;
if (skip) process.stderr.write(`multihost-netns: skipped: ${unavailable} (in CI, where CI is set, it runs as root and must pass)\n`);

describe.skipIf(skip)("attach mode across network-namespace hosts", () => {
  let hosts: NetnsHosts | undefined;
  let dir: string | undefined;
  let joinFile = "";
  let runner: RunnerOnHost;
  let ranks: RankOnHost[] = [];
  const strays: RankOnHost[] = [];

  beforeAll(() => {
    expect(unavailable, "network namespaces must work in CI (run the tests as root with iproute2)").toBeUndefined();
    dir = mkdtempSync(join(tmpdir(), "mr-netns-"));
    joinFile = join(dir, "join");
    hosts = NetnsHosts.create(["host-a", "host-b", "host-c", "host-d"]);
    runner = new RunnerOnHost(hosts, "host-a", { worldSize: 4, joinFile, heartbeatTimeout: HEARTBEAT_S });
  });

  afterEach(async () => {
    hosts?.restore("host-c");
    // Impostors and ranks a fault test left behind; the next test starts its own.
    for (const r of strays.splice(0)) r.child.kill("SIGKILL");
  });

  afterAll(async () => {
    // Kills the runner and every rank (everything in the namespaces), then removes them.
    hosts?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the runner's group: stops an earlier group (killing what is left of it), asks for a start, and launches four ranks once it listens. */
  async function startGroup(logLevel = "warn"): Promise<RankOnHost[]> {
    await runner.call("stop", undefined, 5);
    for (const r of ranks) r.child.kill("SIGKILL");
    await Promise.all(ranks.map((r) => r.exited));
    const listening = once(runner, "listening");
    const started = runner.request("start", undefined, 120);
    await Promise.race([listening, started]);
    ranks = launchRanks(hosts!, LAYOUT, 2, joinFile, logLevel);
    const reply = await started;
    expect(reply.ok, JSON.stringify(reply) + ranks.map((r) => r.stderr()).join("\n")).toBe(true);
    return ranks;
  }

  it("serves invoke, stream and collectives across hosts: unix links on a host, tcp between hosts", async () => {
    await startGroup("debug");
    expect(statSync(joinFile).mode & 0o777).toBe(0o600);
    expect(await runner.call("invoke", { op: "echo" })).toEqual({ rank: 0, host: "host-b" });
    expect(await runner.call("stream", { stream: 2 })).toEqual([{ i: 0, host: "host-b" }, { i: 1, host: "host-b" }, { streamed: 2 }]);
    expect(await runner.call("invoke", { op: "collectives" })).toEqual({
      sum: [1 + 2 + 3 + 4, 2],
      broadcast: { from: 3, host: "host-c" },
      all: [0, 1, 2, 3].map((rank) => ({ rank, host: hostOf(rank) })),
    });
    for (const r of ranks) {
      const line = r.lines.find((l) => l.includes('"process group connected"'));
      expect(line, `rank ${r.rank} logged no "process group connected": ${r.lines.slice(-5).join("\n")}`).toBeDefined();
      const connected = JSON.parse(line!) as { transport: string; host: string; routes: Record<string, { link: string; data: string; host: string }> };
      expect(connected.transport).toBe("mixed");
      expect(connected.host).toBe(r.host);
      for (let peer = 0; peer < 4; peer++) {
        if (peer === r.rank) continue;
        const same = hostOf(peer) === r.host;
        expect(connected.routes[peer], `rank ${r.rank} to ${peer}`).toEqual({ link: same ? "unix" : "tcp", data: same ? "link" : "zmq", host: hostOf(peer) });
      }
    }
    // Rank 0 offered the rendezvous at host-b's address, the route towards the runner's host.
    const b = hosts!.host("host-b").address;
    expect(ranks[0]!.lines.some((l) => l.includes("address for peers on other hosts") && l.includes(b))).toBe(true);
  }, 120_000);

  it("refuses and logs an impostor on a fourth host (wrong secret) while the real ranks keep answering", async () => {
    if (ranks.length === 0) await startGroup();
    const info = decodeJoinInfo(readFileSync(joinFile, "utf8"));
    const impostor = launchRank(hosts!, "host-d", { rank: 1, worldSize: 4, localRank: 0, localWorldSize: 1, join: encodeJoinInfo({ ...info, secret: "0f".repeat(32) }) });
    strays.push(impostor);
    expect(await impostor.exited).toBe(2);
    expect(impostor.stderr()).toMatch(/the runner refused rank 1: rank 1's hello has a wrong token/);
    expect(impostor.stderr()).not.toContain(info.secret);
    const refusal = await runner.waitFor("log", (e) => String(e.record?.msg).includes("refused a rank's hello"));
    expect(JSON.stringify(refusal.record)).not.toContain(info.secret);
    expect(await runner.call("invoke", { op: "collectives" })).toMatchObject({ sum: [10, 2] });
    expect(ranks.every((r) => r.child.exitCode === null)).toBe(true);
  }, 120_000);

  it("a host cut off mid-request fails the request within the heartbeat bound, naming a rank there and the host", async () => {
    await startGroup();
    const failures = runner.events.filter((e) => e.ev === "failure").length;
    const request = runner.request("invoke", { sleep: 60_000 });
    const cutAt = Date.now();
    hosts!.cut("host-c");
    const reply = await request;
    expect(reply.ok).toBe(false);
    const error = (reply as { error: { code?: string; rank?: number; host?: string; message?: string } }).error;
    expect(error.code, error.message).toBe("MULTIRANK_ERR_RANK_HUNG");
    expect([2, 3]).toContain(error.rank);
    expect(error.host).toBe("host-c");
    expect(error.message).toContain(`rank ${error.rank} on host host-c`);
    expect(reply.at - cutAt).toBeLessThan(BOUND_MS + SLACK_MS);
    const failure = await runner.waitFor("failure", (e) => runner.events.filter((x) => x.ev === "failure").indexOf(e) >= failures);
    expect(failure.error?.code).toBe("MULTIRANK_ERR_RANK_HUNG");
    // The ranks on host-b were told to tear down (or left when their links to host-c broke).
    for (const r of ranks.slice(0, 2)) expect([0, 71]).toContain(await r.exited);
    strays.push(...ranks.slice(2));
  }, 120_000);

  it("a rank SIGKILLed mid-request fails it within the heartbeat bound, naming the rank and its host", async () => {
    await startGroup();
    const request = runner.request("invoke", { sleep: 60_000 });
    const killedAt = Date.now();
    ranks[3]!.child.kill("SIGKILL");
    const reply = await request;
    expect(reply.ok).toBe(false);
    const error = (reply as { error: { code?: string; rank?: number; host?: string; message?: string } }).error;
    expect(error.code, error.message).toBe("MULTIRANK_ERR_RANK_HUNG");
    expect(error.rank).toBe(3);
    expect(error.host).toBe("host-c");
    expect(error.message).toContain("rank 3 on host host-c");
    expect(reply.at - killedAt).toBeLessThan(BOUND_MS + SLACK_MS);
    for (const r of ranks.slice(0, 3)) expect([0, 71]).toContain(await r.exited);
  }, 120_000);

  it("stop() ends every rank on every host with exit code 0 and leaves nothing running there", async () => {
    await startGroup();
    expect(await runner.call("stop")).toBe("stopped");
    expect(await Promise.all(ranks.map((r) => r.exited))).toEqual([0, 0, 0, 0]);
    for (const host of LAYOUT) expect(hosts!.pids(host), host).toEqual([]);
  }, 120_000);
});
