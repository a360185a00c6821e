import { execFileSync } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeEach, describe, expect, it } from "vitest";
import { shmAvailable } from "../../src/shm/index.js";
import { allocSharedBuffer, PAYLOAD_SEGMENT_PREFIX, SHARED_PAYLOAD_MIN_BYTES } from "../../src/transport/shared-payload.js";
import { waitFor } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** This process's payload segments still in /dev/shm. */
function ourSegments(): string[] {
  return readdirSync("/dev/shm").filter((name) => name.startsWith(`${PAYLOAD_SEGMENT_PREFIX}-p${process.pid}-`));
}

function sampleSum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 4096) sum = (sum + bytes[i]!) % 1_000_003;
  return sum;
}

describe("large payloads through shared memory", () => {
  it("is available here (the addon is built)", () => {
    if (!shmAvailable()) throw new Error("shared memory unavailable: build the addon (npm run build:native)");
  });

  it("delivers Buffers and typed arrays of every size with the right bytes and types, and removes the segments on stop", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const big = Buffer.alloc(3 * 1024 * 1024).map((_, i) => (i * 7) & 255);
    const floats = new Float32Array(600_000).map((_, i) => i / 3);
    for (const value of [big, floats, Buffer.from("small stays inline")]) {
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      const seen = await runner.invoke<{ kind: string; byteLength: number; sum: number }>({ op: "inspect", value });
      expect(seen).toEqual({ kind: Buffer.isBuffer(value) ? "Buffer" : "Float32Array", byteLength: bytes.length, sum: sampleSum(bytes), rank: 0 });
    }
    // The caller's payload is untouched.
    expect(big[1]).toBe(7);
    // Pooled for later requests (one per size class) until the runner stops.
    expect(ourSegments()).toHaveLength(2);
    await runner.stop();
    expect(ourSegments()).toEqual([]);
  });

  it("moves buffers from 64 KiB up to shared memory and keeps smaller ones in the message", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    // The smaller first: the pool keeps the segment of the larger after its request.
    for (const [size, segments] of [[SHARED_PAYLOAD_MIN_BYTES - 1, 0], [SHARED_PAYLOAD_MIN_BYTES, 1]] as const) {
      const value = Buffer.alloc(size, 3);
      const inFlight = runner.invoke({ op: "inspect", value, sleepMs: 150 });
      expect(ourSegments(), `${size} bytes`).toHaveLength(segments);
      expect(await inFlight).toEqual({ kind: "Buffer", byteLength: size, sum: sampleSum(value), rank: 0 });
    }
  });

  it("counts shared bytes against maxMessageBytes", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, maxMessageBytes: 2 * 1024 * 1024 });
    await runner.start();
    await expect(runner.invoke({ op: "inspect", value: Buffer.alloc(3 * 1024 * 1024) })).rejects.toMatchObject({ code: "MULTIRANK_ERR_MESSAGE_TOO_LARGE", limit: 2 * 1024 * 1024 });
    await runner.stop();
    expect(ourSegments()).toEqual([]);
  });

  it("removes segments of requests in flight when a rank is killed", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const inFlight = runner.invoke({ op: "inspect", value: Buffer.alloc(2 * 1024 * 1024, 1), sleepMs: 10_000 });
    await expect.poll(() => ourSegments()).toHaveLength(1);
    process.kill(runner.pids[1]!, "SIGKILL");
    await expect(inFlight).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANK_EXIT" });
    expect(await waitFor(() => ourSegments().length === 0, 15_000)).toBe(true);
  });

  it("removes segments of requests in flight on stop", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const inFlight = runner.invoke({ op: "inspect", value: Buffer.alloc(2 * 1024 * 1024, 1), sleepMs: 200 });
    expect(ourSegments()).toHaveLength(1);
    await runner.stop();
    await inFlight;
    expect(ourSegments()).toEqual([]);
  });

  it("sends allocSharedBuffer memory by reference, uncopied: edits between requests reach the ranks, a rank's writes stay its own", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2 });
    await runner.start();
    const shared = allocSharedBuffer(4 * 1024 * 1024);
    const mine = ourSegments();
    expect(mine).toHaveLength(1);
    for (const fill of [1, 2]) {
      shared.fill(fill);
      const inFlight = runner.invoke({ op: "inspect", value: shared, sleepMs: 100, scribble: true });
      // No per-request segment: the reference is to the caller's own.
      expect(ourSegments()).toEqual(mine);
      expect(await inFlight).toEqual({ kind: "Buffer", byteLength: shared.length, sum: sampleSum(shared), rank: 0 });
      expect(shared[0]).toBe(fill);
    }
    // A typed-array view of part of it keeps its class and offset.
    const floats = new Float32Array(shared.buffer, shared.byteOffset + 8, 300_000).map((_, i) => i / 4);
    const seen = await runner.invoke<{ kind: string; byteLength: number; sum: number }>({ op: "inspect", value: floats });
    expect(seen).toEqual({ kind: "Float32Array", byteLength: floats.byteLength, sum: sampleSum(new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength)), rank: 0 });
    await runner.stop();
    // Stopping the runner does not take the caller's buffer away.
    expect(ourSegments()).toEqual(mine);
    expect(shared[4]).toBe(2);
  });

  it("a later request carrying the same allocSharedBuffer does not change the bytes under a running one", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, maxMessageBytes: 64 * 1024 * 1024 });
    await runner.start();
    const shared = allocSharedBuffer(1024 * 1024).fill(1);
    await runner.invoke({ op: "inspect", value: shared }); // the rank now keeps a mapping of it
    // The rank reports progress once it has scribbled: only then is the next request sent.
    let scribbled!: () => void;
    const hasScribbled = new Promise<void>((resolve) => (scribbled = resolve));
    const running = runner.invoke<boolean>({ op: "scribbleThenCheck", value: shared, ms: 1000 }, { onProgress: () => scribbled() });
    await hasScribbled;
    // Arrives, and is unpacked, while the first still runs.
    const next = runner.invoke({ op: "inspect", value: shared });
    expect(await running).toBe(true);
    expect(await next).toEqual({ kind: "Buffer", byteLength: shared.length, sum: sampleSum(shared), rank: 0 });
    expect(shared[0]).toBe(1);
  });

  it("is sent as plain bytes over tcp, where ranks may be on other hosts", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, transport: "tcp" });
    await runner.start();
    const shared = allocSharedBuffer(2 * 1024 * 1024).fill(9);
    expect(await runner.invoke({ op: "inspect", value: shared })).toEqual({ kind: "Buffer", byteLength: shared.length, sum: sampleSum(shared), rank: 0 });
  });

  it("unlinks allocSharedBuffer segments when the process exits", () => {
    const script = 'import { allocSharedBuffer } from "multirank"; allocSharedBuffer(1 << 20).fill(1); const names = (await import("node:fs")).readdirSync("/dev/shm").filter((n) => n.includes(`-p${process.pid}-`)); console.log(JSON.stringify({ pid: process.pid, names }));';
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" });
    const { pid, names } = JSON.parse(out) as { pid: number; names: string[] };
    expect(names).toHaveLength(1);
    expect(readdirSync("/dev/shm").filter((n) => n.includes(`-p${pid}-`))).toEqual([]);
  });
});

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/** `size` random bytes (every call different). */
const randomBytes = (size: number): Buffer => randomFillSync(Buffer.allocUnsafe(size));

describe("pooled payload segments", () => {
  const SIZE = 6 * 1024 * 1024;
  type Gathered = { digests: string[]; lateError: string | null };
  /** Payload segments made since the test began (earlier tests' allocSharedBuffer ones go when collected). */
  let before = new Set<string>();
  const pooledSegments = (): string[] => ourSegments().filter((name) => !before.has(name));
  beforeEach(() => {
    before = new Set(ourSegments());
  });

  it("reuses one segment for ordinary Buffers call after call, and every rank sees each call's exact bytes", async () => {
    const runner = makeRunner({ worker: fixture("payload-keeper"), worldSize: 4 });
    await runner.start();
    let pooled: string[] | undefined;
    for (let call = 0; call < 4; call++) {
      const data = randomBytes(SIZE);
      const seen = await runner.invoke<Gathered>({ op: "digest", data });
      expect(seen.digests, `call ${call}`).toEqual(Array(4).fill(sha256(data)));
      // The same segment each time: no segment made and unlinked per call.
      pooled ??= pooledSegments();
      expect(pooledSegments()).toEqual(pooled);
    }
    expect(pooled).toHaveLength(1);
    await runner.stop();
    expect(pooledSegments()).toEqual([]);
  });

  it("a payload kept with ctx.keep stays intact while later calls run, and its segment is never lent again", async () => {
    const runner = makeRunner({ worker: fixture("payload-keeper"), worldSize: 2 });
    await runner.start();
    const first = randomBytes(SIZE);
    await runner.invoke({ op: "keep", tag: "a", data: first });
    // Its segment was unlinked, not pooled: the ranks' mappings are all that is left of it.
    expect(pooledSegments()).toEqual([]);
    for (let call = 0; call < 3; call++) {
      const later = randomBytes(SIZE);
      expect((await runner.invoke<Gathered>({ op: "digest", data: later })).digests).toEqual([sha256(later), sha256(later)]);
    }
    expect((await runner.invoke<Gathered>({ op: "stored", tag: "a" })).digests).toEqual([sha256(first), sha256(first)]);
  });

  it("a payload view held without ctx.keep shows a later request's bytes (the documented rule)", async () => {
    const runner = makeRunner({ worker: fixture("payload-keeper"), worldSize: 2 });
    await runner.start();
    await runner.invoke({ op: "hold", tag: "h", data: randomBytes(SIZE) });
    const later = randomBytes(SIZE);
    await runner.invoke({ op: "digest", data: later });
    expect((await runner.invoke<Gathered>({ op: "stored", tag: "h" })).digests).toEqual([sha256(later), sha256(later)]);
  });

  it("ctx.keep of allocSharedBuffer memory keeps a copy: the owner's later writes do not reach it", async () => {
    const runner = makeRunner({ worker: fixture("payload-keeper"), worldSize: 2 });
    await runner.start();
    const shared = allocSharedBuffer(SIZE);
    randomFillSync(shared);
    const before = sha256(shared);
    await runner.invoke({ op: "keep", tag: "s", data: shared });
    randomFillSync(shared);
    expect((await runner.invoke<Gathered>({ op: "digest", data: shared })).digests).toEqual([sha256(shared), sha256(shared)]);
    expect((await runner.invoke<Gathered>({ op: "stored", tag: "s" })).digests).toEqual([before, before]);
  });

  it("ctx.keep after the call ended throws a StateError", async () => {
    const runner = makeRunner({ worker: fixture("payload-keeper"), worldSize: 1 });
    await runner.start();
    await runner.invoke({ op: "keepLate", tag: "l", data: randomBytes(SIZE) });
    await expect.poll(async () => (await runner.invoke<Gathered>({ op: "stored", tag: "l" })).lateError, { timeout: 15_000 }).toBe("MULTIRANK_ERR_STATE");
  });
});
