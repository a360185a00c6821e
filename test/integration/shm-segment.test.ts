// SharedSegment across processes: the same bytes, read-only views, unlink,
// refusal when /dev/shm is too small, close. Needs the built addon (Linux).
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { NativeError, StateError, ValidationError } from "../../src/errors.js";
import { loadAddon } from "../../src/devices/addon.js";
import { SharedSegment, segmentOwner, shmAvailable, shmFreeBytes, SHM_DIR } from "../../src/shm/index.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CHILD = path.join(REPO, "test/fixtures/shm-child.ts");
const PREFIX = `mrtest-seg-${process.pid}`;

const children = new Set<ChildProcess>();
const segments: SharedSegment[] = [];

/** Runs the fixture in `mode`; resolves with its tagged lines once it exits. */
function runChild(env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: Record<string, unknown> }> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD], { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const lines: Record<string, unknown> = {};
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const i = line.indexOf(" ");
    if (i > 0) lines[line.slice(0, i)] = JSON.parse(line.slice(i + 1));
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      children.delete(child);
      if (code !== 0 && !lines.ERROR) reject(new Error(`child exited ${code ?? signal}: ${stderr.slice(-2000)}`));
      else resolve({ code, signal, lines });
    });
  });
}

function create(size: number): SharedSegment {
  const seg = SharedSegment.create({ size, prefix: PREFIX });
  segments.push(seg);
  return seg;
}

/** The addon's shmRemap, called directly (SharedSegment.refresh always passes its own name). */
function callRemap(buffer: ArrayBuffer, name: string): void {
  loadAddon().shmRemap(buffer, name);
}

const leftovers = (): string[] => fs.readdirSync(SHM_DIR).filter((n) => n.startsWith(PREFIX));

beforeAll(() => {
  if (!shmAvailable()) throw new Error("shared memory is unavailable: build the addon (npm run build:native) on Linux");
});

afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
  for (const seg of segments.splice(0)) {
    seg.unlink();
    seg.close();
  }
  for (const name of leftovers()) fs.rmSync(path.join(SHM_DIR, name), { force: true });
});

describe("SharedSegment", () => {
  it("a second process opens the segment by name and sees and changes the same bytes", async () => {
    const seg = create(1 << 20);
    expect(seg.name.startsWith(`${PREFIX}-p${process.pid}-`)).toBe(true);
    expect(segmentOwner(seg.name, PREFIX)).toBe(process.pid);
    expect(seg.ownerPid).toBe(process.pid);
    expect(seg.size).toBe(1 << 20);
    expect(seg.created).toBe(true);
    expect(fs.statSync(path.join(SHM_DIR, seg.name)).size).toBe(1 << 20);
    seg.buffer.set([1, 2, 3, 250]);

    const { lines } = await runChild({ MODE: "open", NAME: seg.name });
    expect(lines.SEEN).toEqual({ size: 1 << 20, head: [1, 2, 3, 250], created: false });
    // The child's write landed in our mapping: no copy, no message.
    expect(seg.buffer[4]).toBe(0xcd);
    // Typed views over the mapping work like over any ArrayBuffer.
    const floats = new Float32Array(seg.arrayBuffer, 8, 4);
    floats[0] = 1.5;
    expect(new Float32Array(seg.arrayBuffer, 8, 1)[0]).toBe(1.5);
  });

  it("a read-only view never writes the segment and a write through it does not crash", async () => {
    const seg = create(4096);
    seg.buffer[0] = 42;
    const { lines } = await runChild({ MODE: "open-ro", NAME: seg.name });
    expect(lines.SEEN).toEqual({ before: 42, after: 0x11, readOnly: true });
    expect(seg.buffer[0]).toBe(42);
  });

  it("refresh shows a copy-on-write mapping the segment's current bytes again, in the same ArrayBuffer", () => {
    const seg = create(8192);
    seg.buffer.fill(1);
    const view = SharedSegment.open(seg.name, { readOnly: true });
    const memory = view.arrayBuffer;
    const bytes = new Uint8Array(memory);
    bytes[0] = 99; // a private copy of the first page
    seg.buffer[1] = 2;
    seg.buffer[5000] = 3;
    expect([bytes[0], bytes[1], bytes[5000]]).toEqual([99, 1, 3]);
    view.refresh();
    expect(view.arrayBuffer).toBe(memory);
    expect([bytes[0], bytes[1], bytes[5000]]).toEqual([1, 2, 3]);
    expect(seg.buffer[0]).toBe(1);
    // Only copy-on-write mappings refresh, and only live ones of the same segment.
    expect(() => seg.refresh()).toThrow(StateError);
    view.close();
    expect(() => view.refresh()).toThrow(StateError);
    const other = create(4096);
    const wrongSize = SharedSegment.open(other.name, { readOnly: true });
    expect(() => callRemap(wrongSize.arrayBuffer, seg.name)).toThrow(/is not 4096 bytes long/);
    expect(() => callRemap(new ArrayBuffer(4096), seg.name)).toThrow(/not a live shared memory mapping/);
    wrongSize.close();
  });

  it("unlink removes the name (open then fails with ENOENT) while mappings stay valid", () => {
    const seg = create(8192);
    const peer = SharedSegment.open(seg.name);
    segments.push(peer);
    seg.unlink();
    seg.unlink(); // idempotent
    expect(fs.existsSync(path.join(SHM_DIR, seg.name))).toBe(false);
    let error: unknown;
    try {
      SharedSegment.open(seg.name);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NativeError);
    expect((error as NativeError).code).toBe("MULTIRANK_ERR_NATIVE");
    expect((error as NativeError).status).toBe("ENOENT");
    seg.buffer[100] = 7;
    expect(peer.buffer[100]).toBe(7);
  });

  it("refuses a size larger than the free space of /dev/shm with ENOSPC, naming both, and leaves nothing", () => {
    const free = shmFreeBytes();
    expect(free).toBeGreaterThan(0);
    const size = free + 1024 * 1024 * 1024;
    let error: unknown;
    try {
      create(size);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NativeError);
    expect((error as NativeError).status).toBe("ENOSPC");
    expect((error as NativeError).message).toContain(String(size));
    expect((error as NativeError).message).toMatch(/\/dev\/shm has \d+ bytes free/);
    expect(leftovers()).toEqual([]);
  });

  it("validates its arguments before touching the system", () => {
    for (const size of [0, -1, 1.5, Number.NaN, "1" as unknown as number]) {
      expect(() => SharedSegment.create({ size, prefix: PREFIX })).toThrow(ValidationError);
    }
    expect(() => SharedSegment.create({ size: 10, prefix: "bad/prefix" })).toThrow(ValidationError);
    expect(() => SharedSegment.open("")).toThrow(ValidationError);
    try {
      SharedSegment.open("a/b");
    } catch (e) {
      expect((e as ValidationError).code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
    }
    expect(leftovers()).toEqual([]);
  });

  it("close unmaps at once: views become empty instead of dangling, and it is idempotent", () => {
    const seg = create(4096);
    const view = seg.buffer;
    const floats = new Float32Array(seg.arrayBuffer);
    seg.close();
    seg.close();
    expect(seg.closed).toBe(true);
    expect(view.length).toBe(0);
    expect(floats.length).toBe(0);
    expect(view[0]).toBeUndefined();
    expect(() => seg.buffer).toThrow(StateError);
    // The name is still there until unlinked.
    expect(fs.existsSync(path.join(SHM_DIR, seg.name))).toBe(true);
  });

  it("Symbol.dispose closes and unlinks a segment this process created", () => {
    let name = "";
    {
      using seg = SharedSegment.create({ size: 4096, prefix: PREFIX });
      name = seg.name;
      expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(true);
    }
    expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(false);
  });
});
