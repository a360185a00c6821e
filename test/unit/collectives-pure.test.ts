import { describe, expect, it } from "vitest";
import { chooseReduceAlgorithm, DIRECT_MAX_BYTES, finishReduce, reduceInto, REDUCE_OPS, splitRanges } from "../../src/collectives/index.js";
import { resolveGroupOptions, processGroupOptionsFromEnv } from "../../src/collectives/options.js";
import { decodeValue, encodeValue } from "../../src/collectives/wire.js";
import { Mailbox } from "../../src/collectives/mailbox.js";
import { isPeerRecord } from "../../src/collectives/peer-record.js";
import { Packr } from "msgpackr";
import { createProcessGroup } from "../../src/collectives/index.js";
import type { CollectiveBackend, CollectiveCall } from "../../src/collectives/backend.js";
import { BackendProcessGroup } from "../../src/collectives/process-group.js";
import { pino } from "pino";

describe("reduction ops", () => {
  it("sum, min, max, prod, avg on Float32Array", () => {
    const run = (op: (typeof REDUCE_OPS)[number]): number[] => {
      const acc = new Float32Array([1, -2, 3.5, NaN]);
      reduceInto(acc, new Float32Array([2, 5, -1, 0]), op);
      reduceInto(acc, new Float32Array([0.5, 1, 2, 1]), op);
      finishReduce(acc, op, 3);
      return Array.from(acc);
    };
    expect(run("sum").slice(0, 3)).toEqual([3.5, 4, 4.5]);
    expect(run("avg").slice(0, 3).map((v) => +v.toFixed(5))).toEqual([1.16667, 1.33333, 1.5]);
    expect(run("min").slice(0, 3)).toEqual([0.5, -2, -1]);
    expect(run("max").slice(0, 3)).toEqual([2, 5, 3.5]);
    expect(run("prod").slice(0, 3)).toEqual([1, -10, -7]);
    for (const op of REDUCE_OPS) expect(Number.isNaN(run(op)[3]), op).toBe(true); // NaN propagates
  });

  it("Int32: sum and prod wrap like int32, avg truncates toward zero", () => {
    const a = new Int32Array([2147483647, 65536, -7]);
    reduceInto(a, new Int32Array([1, 65536, 0]), "sum");
    expect(Array.from(a)).toEqual([-2147483648, 131072, -7]);
    const p = new Int32Array([65536]);
    reduceInto(p, new Int32Array([65536]), "prod");
    expect(p[0]).toBe(0);
    const v = new Int32Array([-7, 7]);
    finishReduce(v, "avg", 2);
    expect(Array.from(v)).toEqual([-3, 3]);
  });
});

describe("splitRanges (reduceScatter's split)", () => {
  it("numpy array_split: the first length % parts ranges get one more", () => {
    expect(splitRanges(10, 4)).toEqual([{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }, { start: 8, end: 10 }]);
    expect(splitRanges(2, 3)).toEqual([{ start: 0, end: 1 }, { start: 1, end: 2 }, { start: 2, end: 2 }]);
    for (const [len, parts] of [[0, 1], [7, 7], [1001, 3], [30001, 4]]) {
      const r = splitRanges(len, parts);
      expect(r[0].start).toBe(0);
      expect(r[parts - 1].end).toBe(len);
      for (let i = 1; i < parts; i++) expect(r[i].start).toBe(r[i - 1].end);
    }
  });
});

describe("algorithm choice", () => {
  it("local at size 1, direct when small, shm on one host, ring otherwise", () => {
    expect(chooseReduceAlgorithm({ bytes: 1 << 30, size: 1, sharedMemory: true })).toBe("local");
    expect(chooseReduceAlgorithm({ bytes: DIRECT_MAX_BYTES, size: 4, sharedMemory: true })).toBe("direct");
    expect(chooseReduceAlgorithm({ bytes: DIRECT_MAX_BYTES + 1, size: 4, sharedMemory: true })).toBe("shm");
    expect(chooseReduceAlgorithm({ bytes: 64 << 20, size: 4, sharedMemory: false })).toBe("ring");
  });
});

describe("wire encoding", () => {
  it("round-trips typed arrays as raw bytes, Buffers, and objects through msgpack", () => {
    const f64 = new Float64Array([1.5, -2]);
    const e = encodeValue(f64, true);
    expect(e.meta).toEqual({ t: "ta", d: "Float64Array" });
    expect(e.frame.byteLength).toBe(16);
    f64[0] = 9; // copy: the frame does not alias
    expect(Array.from(decodeValue(e.meta, e.frame) as Float64Array)).toEqual([1.5, -2]);
    // An unaligned frame still decodes (copied).
    const unaligned = Buffer.alloc(17).subarray(1);
    unaligned.set(e.frame);
    expect(Array.from(decodeValue(e.meta, unaligned) as Float64Array)).toEqual([1.5, -2]);
    const b = encodeValue(Buffer.from("hi"), true);
    expect((decodeValue(b.meta, b.frame) as Buffer).toString()).toBe("hi");
    const o = encodeValue({ a: [1, "x"], f: new Float32Array([0.5]) }, true);
    expect(decodeValue(o.meta, o.frame)).toEqual({ a: [1, "x"], f: new Float32Array([0.5]) });
    expect(() => encodeValue({ f: () => 1 }, true)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_SERIALIZATION" })); // refused, as in payloads, not silently dropped
  });
});

describe("mailbox", () => {
  it("queues per sender and channel, drops finished collectives, rejects on departure", async () => {
    const m = new Mailbox();
    const signal = new AbortController().signal;
    const msg = (q: number) => ({ header: { k: "c" as const, s: 1, q }, frames: [] });
    m.deliver(1, 5, msg(5));
    const waiting = m.take(1, 6, signal);
    m.deliver(1, 6, msg(6));
    expect((await waiting).header.q).toBe(6);
    expect((await m.take(1, 5, signal)).header.q).toBe(5);
    m.closeCollective(0, 6);
    m.deliver(1, 6, msg(6)); // late: dropped
    const gone = new Error("gone");
    const pending = m.take(1, 6, signal);
    m.depart(1, gone);
    await expect(pending).rejects.toBe(gone);
  });
});

describe("options", () => {
  it("names the field in validation errors", () => {
    expect(() => resolveGroupOptions({ rank: 0, size: 0, masterAddr: "x", masterPort: 1 })).toThrow(/options\.size must be a positive integer/);
    expect(() => resolveGroupOptions({ rank: 2, size: 2, masterAddr: "x", masterPort: 1 })).toThrow(/options\.rank/);
    expect(() => resolveGroupOptions({ rank: 0, size: 2, masterAddr: "", masterPort: 1 })).toThrow(/options\.masterAddr/);
    expect(() => resolveGroupOptions({ rank: 0, size: 2, masterAddr: "h", masterPort: 70000 })).toThrow(/options\.masterPort/);
    expect(() => resolveGroupOptions({ rank: 0, size: 2, masterAddr: "h", masterPort: 1, rendezvousSocket: "group.sock" })).toThrow(/options\.rendezvousSocket must be an absolute path/);
    expect(() => resolveGroupOptions({ rank: 0, size: 2, masterAddr: "h", masterPort: 1, rendezvousSocket: `/${"x".repeat(120)}` })).toThrow(/options\.rendezvousSocket is 121 bytes long/);
    expect(resolveGroupOptions({ rank: 0, size: 2, masterAddr: "h", masterPort: 1, rendezvousSocket: "/tmp/g.sock" }).rendezvousSocket).toBe("/tmp/g.sock");
    expect(() => resolveGroupOptions({ rank: 0, size: 2, masterAddr: "h", masterPort: 1, timeout: -1 })).toThrow(/options\.timeout/);
    try {
      resolveGroupOptions({ rank: 0, size: 0, masterAddr: "x", masterPort: 1 });
    } catch (e) {
      expect((e as { code: string }).code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
    }
  });

  it("reads torchrun's variables", () => {
    expect(processGroupOptionsFromEnv({ RANK: "1", WORLD_SIZE: "4", MASTER_ADDR: "10.0.0.1", MASTER_PORT: "29500" })).toEqual({ rank: 1, size: 4, masterAddr: "10.0.0.1", masterPort: 29500 });
    expect(() => processGroupOptionsFromEnv({ WORLD_SIZE: "2" })).toThrow(/RANK/);
  });
});

describe("world size 1 (no sockets)", () => {
  it("every op is the identity and arguments are validated", async () => {
    const g = await createProcessGroup({ rank: 0, size: 1, masterAddr: "127.0.0.1", masterPort: 1 });
    await g.barrier();
    expect(await g.broadcast({ a: 1 })).toEqual({ a: 1 });
    expect(await g.allGather(3)).toEqual([3]);
    expect(await g.gather(3)).toEqual([3]);
    const data = new Float32Array([1, 2, 3]);
    const r = await g.allReduce(data, "avg");
    expect(r).not.toBe(data);
    expect(Array.from(r)).toEqual([1, 2, 3]);
    expect(Array.from(await g.reduceScatter(new Int32Array([4, 5]), "max"))).toEqual([4, 5]);
    await expect(g.allReduce([1, 2] as unknown as Float32Array)).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    await expect(g.allReduce(data, "median" as "sum")).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    await expect(g.broadcast(1, 1)).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    await expect(g.send(1, 0)).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    const ac = new AbortController();
    ac.abort();
    await expect(g.barrier({ signal: ac.signal })).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    g.fail(new Error("boom"));
    await expect(g.barrier()).rejects.toThrow("boom");
    await g.close();
    await g.close(); // idempotent
  });
});

describe("call order and timeouts in the facade", () => {
  it("starts a collective at once when idle, queues it behind a running one, and times a queued one out", async () => {
    const begun: number[] = [];
    let release: () => void = () => {};
    const backend = {
      name: "fake",
      rank: 0,
      size: 2,
      begin: (call: CollectiveCall) => void begun.push(call.seq),
      // The first barrier hangs until released; later ones finish at once.
      barrier: (call: CollectiveCall) => (call.seq === 0 ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve()),
      abandon: () => {},
      finish: () => {},
      onFailure: () => {},
      fail: () => {},
      close: async () => {},
    } as unknown as CollectiveBackend;
    const g = new BackendProcessGroup(backend, pino({ level: "silent" }), 60_000);
    const first = g.barrier();
    expect(begun).toEqual([0]); // started in the caller's tick: nothing was queued
    const queued = g.barrier({ timeout: 0.05 });
    const third = g.barrier();
    await expect(queued).rejects.toMatchObject({ code: "MULTIRANK_ERR_TIMEOUT" });
    expect(begun).toEqual([0]); // still waiting for the first
    release();
    await first;
    await third;
    expect(begun).toEqual([0, 2]);
  });
});

describe("peer records in the rendezvous table", () => {
  it("accepts what a rank publishes on one host and across hosts, after a msgpack round trip, and nothing else", () => {
    const packr = new Packr({ useRecords: false });
    const host = { id: "0123456789abcdef0123456789abcdef", name: "gpu-a" };
    const remote = { links: "tcp:10.0.0.2:41001", data: "tcp://10.0.0.2:41000", curveKey: "k".repeat(40) };
    const oneHost = { host, links: "unix:/tmp/multirank-ab12-r1-p42.sock", pid: 42, shared: "mmap" };
    const acrossHosts = { host, remote, pid: 43 };
    const both = { host, links: "unix:/tmp/x.sock", remote, pid: 44 };
    for (const record of [oneHost, acrossHosts, both, { host, pid: 1 }]) expect(isPeerRecord(packr.unpack(packr.pack(record)))).toBe(true);
    // The space-separated string ranks published before, records of the version before (no host), and records missing or mistyping a field.
    const bads = [
      "links unix:/tmp/x.sock 42 mmap -",
      null,
      { links: "unix:/x", pid: 42 },
      { host, links: "unix:/x", pid: "42" },
      { host, links: "unix:/x", pid: 1.5 },
      { host, links: "unix:/x", pid: 1, shared: "gpu" },
      { host: { id: "", name: "a" }, pid: 1 },
      { host, pid: 1, links: 7 },
      { host, pid: 1, remote: { ...remote, data: 7 } },
      { host, pid: 1, remote: { links: "tcp:10.0.0.2:1", data: "tcp://10.0.0.2:2" } },
    ];
    for (const bad of bads) {
      expect(isPeerRecord(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});
