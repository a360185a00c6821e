// What a killed process leaves in /dev/shm: swept by owner pid; and the
// collectives' mapped buffers, whose names are gone once every peer mapped them.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.js";
import { processAlive, SharedSegment, shmAvailable, SHM_DIR, sweepStaleSegments } from "../../src/shm/index.js";
import { freePort, groupSecret } from "../fixtures/collectives-spawn.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CHILD = path.join(REPO, "test/fixtures/shm-child.ts");
const PREFIX = `mrtest-sweep-${process.pid}`;

const children = new Set<ChildProcess>();

interface Child {
  child: ChildProcess;
  /** Resolves with the value of the first line tagged `tag` (rejects if the child exits first). */
  line(tag: string): Promise<unknown>;
  exited: Promise<void>;
}

function start(env: Record<string, string>): Child {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD], { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const seen = new Map<string, unknown>();
  const waiters: { tag: string; resolve(v: unknown): void; reject(e: Error): void }[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    const i = l.indexOf(" ");
    if (i < 0) return;
    seen.set(l.slice(0, i), JSON.parse(l.slice(i + 1)));
    for (const w of waiters.splice(0)) (seen.has(w.tag) ? w.resolve(seen.get(w.tag)) : waiters.push(w));
  });
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      children.delete(child);
      for (const w of waiters.splice(0)) w.reject(new Error(`child exited before ${w.tag}: ${stderr.slice(-2000)}`));
      resolve();
    }),
  );
  return {
    child,
    exited,
    line: (tag) => (seen.has(tag) ? Promise.resolve(seen.get(tag)) : new Promise((resolve, reject) => waiters.push({ tag, resolve, reject }))),
  };
}

async function kill(c: Child): Promise<void> {
  c.child.kill("SIGKILL");
  await c.exited;
}

const inShm = (pred: (name: string) => boolean): string[] => fs.readdirSync(SHM_DIR).filter(pred);

beforeAll(() => {
  if (!shmAvailable()) throw new Error("shared memory is unavailable: build the addon (npm run build:native) on Linux");
});

afterEach(async () => {
  await Promise.all(
    [...children].map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      return gone;
    }),
  );
  children.clear();
  for (const name of inShm((n) => n.startsWith(PREFIX))) fs.rmSync(path.join(SHM_DIR, name), { force: true });
});

describe("stale segments", () => {
  it("sweepStaleSegments removes what a SIGKILLed owner left, and only that", async () => {
    const mine = SharedSegment.create({ size: 4096, prefix: PREFIX });
    try {
      const owner = start({ MODE: "create", PREFIX });
      const name = (await owner.line("NAME")) as string;
      expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(true);
      // Alive: left alone.
      expect(sweepStaleSegments(PREFIX)).toEqual([]);
      expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(true);

      await kill(owner);
      expect(processAlive(owner.child.pid!)).toBe(false);
      // The data outlived its owner: that is why it must be swept.
      const peek = SharedSegment.open(name, { readOnly: true });
      expect(peek.buffer[12345]).toBe(0xab);
      peek.close();

      expect(sweepStaleSegments(PREFIX)).toEqual([name]);
      expect(fs.existsSync(path.join(SHM_DIR, name))).toBe(false);
      // Ours (a live pid) survived; other prefixes are never touched.
      expect(fs.existsSync(path.join(SHM_DIR, mine.name))).toBe(true);
      expect(sweepStaleSegments(PREFIX)).toEqual([]);
    } finally {
      mine.unlink();
      mine.close();
    }
  });

  it("names of other shapes and other prefixes are ignored; a bad prefix is refused", () => {
    const foreign = path.join(SHM_DIR, `${PREFIX}-not-ours`);
    const deadLookalike = path.join(SHM_DIR, `${PREFIX}x-p999999999-0123456789ab`);
    fs.writeFileSync(foreign, "");
    fs.writeFileSync(deadLookalike, "");
    try {
      expect(sweepStaleSegments(PREFIX)).toEqual([]);
      expect(fs.existsSync(foreign)).toBe(true);
      expect(fs.existsSync(deadLookalike)).toBe(true);
      expect(sweepStaleSegments(`${PREFIX}x`)).toEqual([path.basename(deadLookalike)]);
    } finally {
      fs.rmSync(foreign, { force: true });
      fs.rmSync(deadLookalike, { force: true });
    }
    expect(() => sweepStaleSegments("../etc")).toThrow(ValidationError);
    expect(sweepStaleSegments(PREFIX, { dir: "/nonexistent-dir" })).toEqual([]);
  });

  it("a process group's mapped buffers leave no name behind when every rank is SIGKILLed", async () => {
    const port = await freePort();
    const size = 3;
    const secret = groupSecret();
    const ranks = Array.from({ length: size }, (_, r) =>
      start({ MODE: "group", MULTIRANK_GROUP_SECRET: secret, RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(size), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) }),
    );
    const reports = (await Promise.all(ranks.map((c) => c.line("REDUCED")))) as { pid: number; value: number }[];
    expect(reports.map((r) => r.value)).toEqual([6, 6, 6]);
    const pids = reports.map((r) => r.pid);
    const ofRanks = (n: string): boolean => n.startsWith("multirank-coll-") && pids.some((pid) => n.includes(`-p${pid}-`));
    // Every peer confirmed it mapped the buffers, so their names are already gone while the ranks live.
    expect(inShm(ofRanks)).toEqual([]);
    await Promise.all(ranks.map(kill));
    expect(inShm(ofRanks)).toEqual([]);
  });
});
