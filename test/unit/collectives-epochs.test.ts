import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { CollectiveBackend, CollectiveCall } from "../../src/collectives/backend.js";
import { EpochClock } from "../../src/collectives/epochs.js";
import { Mailbox, type Message } from "../../src/collectives/mailbox.js";
import type { MeshEvents, MessageMesh } from "../../src/collectives/mesh.js";
import { BackendProcessGroup, requestScopesOf, type RequestScopes } from "../../src/collectives/process-group.js";
import { SharedSlots } from "../../src/collectives/shm.js";
import { unpackHeader, type Header } from "../../src/collectives/wire.js";
import { CpuBackend } from "../../src/collectives/cpu-backend.js";
import type { PeerLinks } from "../../src/collectives/links.js";

const silent = pino({ level: "silent" });

describe("epoch clock", () => {
  it("keeps epoch 0, running epochs and those not begun yet; drops ended and skipped ones", () => {
    const clock = new EpochClock();
    expect(clock.live(0)).toBe(true);
    expect(clock.live(3)).toBe(true); // a faster peer is already there
    clock.begin(3);
    expect(clock.live(3)).toBe(true);
    expect(clock.live(2)).toBe(false); // skipped: requests start in id order
    clock.end(3);
    expect(clock.live(3)).toBe(false);
    expect(clock.live(4)).toBe(true);
    expect(clock.live(0)).toBe(true);
  });
});

describe("mailbox epochs", () => {
  it("keys collectives by (epoch, seq), closes them per epoch and reports what it drops unread", async () => {
    const dropped: number[] = [];
    const m = new Mailbox((_src, message) => dropped.push(message.header.j ?? 0));
    const signal = new AbortController().signal;
    const msg = (j: number, q: number): Message => ({ header: { k: "c", s: 1, j, q }, frames: [] });
    m.deliver(1, 0, msg(1, 0), 1);
    m.deliver(1, 0, msg(2, 0), 2);
    expect((await m.take(1, 0, signal, 2)).header.j).toBe(2);
    m.closeCollective(2, 0);
    m.deliver(1, 0, msg(2, 0), 2); // late for epoch 2: dropped
    expect(dropped).toEqual([2]);
    m.deliver(1, 0, msg(3, 0), 3);
    m.closeEpochs((epoch) => epoch < 3);
    expect(dropped).toEqual([2, 1]);
    expect((await m.take(1, 0, signal, 3)).header.j).toBe(3);
  });
});

/** A fake backend that records calls; collectives of `hang` epochs wait until their signal aborts. */
function fakeBackend(hang: Set<number>) {
  const log = { begun: [] as string[], ended: [] as number[], begunEpochs: [] as number[] };
  const wait = (call: CollectiveCall): Promise<void> => {
    log.begun.push(`${call.epoch}:${call.seq}`);
    return hang.has(call.epoch) ? new Promise((_, reject) => call.signal.addEventListener("abort", () => reject(call.signal.reason))) : Promise.resolve();
  };
  const backend = {
    name: "fake",
    rank: 0,
    size: 2,
    begin: () => {},
    barrier: wait,
    abandon: () => {},
    finish: () => {},
    beginEpoch: (e: number) => void log.begunEpochs.push(e),
    endEpoch: (e: number) => void log.ended.push(e),
    onFailure: () => {},
    fail: () => {},
    close: async () => {},
  } as unknown as CollectiveBackend;
  return { backend, log };
}

describe("the facade's request scopes", () => {
  it("numbers collectives per request, ends a request's calls with it, and rejects calls after it", async () => {
    const { backend, log } = fakeBackend(new Set([5]));
    const g = new BackendProcessGroup(backend, silent, 60_000);
    const scopes = requestScopesOf(g)!;
    let current = 0;
    const broken: Error[] = [];
    scopes.track({ current: () => current, concurrent: false, onBroken: (e) => broken.push(e) });
    await g.barrier(); // setup: epoch 0
    scopes.begin(5);
    current = 5;
    const hanging = g.barrier();
    const queued = g.barrier();
    scopes.begin(6);
    current = 6;
    // Another request's collectives are not queued behind request 5's.
    await g.barrier();
    await g.barrier();
    expect(log.begun).toEqual(["0:0", "5:0", "6:0", "6:1"]);
    scopes.end(5);
    await expect(hanging).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED", message: expect.stringMatching(/request 5\) was aborted on rank 0: its request ended/) });
    await expect(queued).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(log.ended).toEqual([5]);
    current = 5;
    await expect(g.barrier()).rejects.toThrow(/after its request 5 ended/);
    current = 0;
    await g.barrier();
    expect(log.begun.at(-1)).toBe("0:1");
    g.fail(new Error("link down"));
    g.fail(new Error("again"));
    expect(broken.map((e) => e.message)).toEqual(["link down"]);
  });
});

/** Two CpuBackends wired through memory (messages arrive a macrotask later), each behind a facade. */
function pairOfGroups(slots?: (rank: number) => SharedSlots) {
  const events: MeshEvents[] = [];
  const watchers: { match: (h: Header) => boolean; resolve: () => void }[] = [];
  /** Resolves once a message matching `match` has been handed to its receiver. */
  const delivered = (match: (h: Header) => boolean): Promise<void> => new Promise((resolve) => watchers.push({ match, resolve }));
  const meshes = [0, 1].map(
    (rank) =>
      ({
        start: (e: MeshEvents) => void (events[rank] = e),
        send: (peer: number, frames: Buffer[]) => {
          const header = unpackHeader(frames[0]!)!;
          const rest = frames.slice(1).map((f) => Buffer.from(f));
          setImmediate(() => {
            events[peer]!.onMessage(header, rest);
            for (const w of watchers.filter((w) => w.match(header))) w.resolve();
          });
          return Promise.resolve();
        },
        close: () => {},
        onLost: () => {},
      }) as MessageMesh & { onLost(l: (p: number) => void): void },
  );
  const groups = [0, 1].map((rank) => new BackendProcessGroup(new CpuBackend(rank, 2, meshes[rank]!, meshes[rank] as unknown as PeerLinks, slots?.(rank)), silent, 60_000));
  const current = [0, 0];
  const scopes = groups.map((g, rank) => {
    const s = requestScopesOf(g)!;
    s.track({ current: () => current[rank]!, concurrent: false, onBroken: () => {} });
    return s;
  });
  /** Runs `fn` on `rank` as request `epoch` (begun, not ended). */
  const within = <T>(rank: number, epoch: number, fn: (g: BackendProcessGroup) => Promise<T>): Promise<T> => {
    scopes[rank]!.begin(epoch);
    current[rank] = epoch;
    return fn(groups[rank]!);
  };
  return { groups, scopes: scopes as RequestScopes[], within, delivered };
}

const sumOf = (rank: number, length: number) => (g: BackendProcessGroup) => g.allReduce(new Float32Array(length).fill(rank + 1), "sum", { timeout: 5 });

describe("CpuBackend across requests (in memory)", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("keeps a faster peer's messages for a request not begun here, and drops those of one that ended", async () => {
    const { scopes, within, delivered } = pairOfGroups();
    // Request 1: rank 0 sums, rank 1 ends the request without calling.
    const lonely = within(0, 1, sumOf(0, 4));
    scopes[1]!.begin(1);
    scopes[1]!.end(1);
    await delivered((h) => h.k === "c" && h.j === 1);
    scopes[0]!.end(1);
    await expect(lonely).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    // Request 2: rank 0 is there first; its message waits for rank 1.
    const first = within(0, 2, sumOf(0, 4));
    await delivered((h) => h.k === "c" && h.j === 2);
    const second = within(1, 2, sumOf(1, 4));
    expect(Array.from(await first)).toEqual([3, 3, 3, 3]);
    expect(Array.from(await second)).toEqual([3, 3, 3, 3]);
  });

  it("releases a shared buffer the peer was told to read but never did, so the next request can write it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "multirank-epochs-"));
    dirs.push(dir);
    const made = [0, 1].map((rank) => SharedSlots.create("e0", rank, dir));
    made[0]!.openPeers([1], [0, process.pid]);
    made[1]!.openPeers([0], [process.pid, 0]);
    const { groups, scopes, within, delivered } = pairOfGroups((rank) => made[rank]!);
    const large = 1 << 15; // 128 KiB: the shared-memory path
    // Request 1: rank 0 writes its buffer and tells rank 1, which never calls.
    const lonely = within(0, 1, sumOf(0, large));
    scopes[1]!.begin(1);
    await delivered((h) => h.w === 1);
    scopes[1]!.end(1);
    scopes[0]!.end(1);
    await expect(lonely).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    // Request 2 uses the same buffer (sequence 0 again): it must not wait for a release that never comes.
    for (const epoch of [2, 3]) {
      const [a, b] = await Promise.all([within(0, epoch, sumOf(0, large)), within(1, epoch, sumOf(1, large))]);
      expect(a.every((v) => v === 3) && b.every((v) => v === 3)).toBe(true);
      scopes[0]!.end(epoch);
      scopes[1]!.end(epoch);
    }
    await Promise.all(groups.map((g) => g.close()));
  });
});
