/**
 * The build lock of one environment key: a file `<cacheDir>/envs/<key>.lock`
 * naming its owner (pid, the pid's start time, host). Whoever creates it
 * builds; everyone else waits until the environment is complete, or until
 * the owner is seen dead and the lock can be taken over. The lock only saves
 * work: a build that loses a race (two takers of one stale lock) still ends
 * well, because renaming into place tolerates an environment that is
 * already there.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { AbortError, TimeoutError } from "../errors.js";
import { processAlive, processStartTime } from "../shm/owner.js";

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  /** The pid's start time (clock ticks after boot), so a reused pid is not mistaken for the owner. */
  start?: string;
  host: string;
  /** A random token per lock, so this process can tell its own live locks from a leftover. */
  token: string;
  created: number;
}

// Tokens of the locks this process holds now.
const held = new Set<string>();

/**
 * Creates the lock at `lockPath` unless it exists. The owner record is written
 * to a private file first and hard-linked into place, so the lock appears
 * with its content complete: a waiter never reads a half-written owner.
 * @returns the token to release it with, or `undefined` when someone else holds it.
 */
export async function tryLock(lockPath: string): Promise<string | undefined> {
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), token: randomBytes(8).toString("hex"), created: Date.now() };
  const start = processStartTime(process.pid);
  if (start !== undefined) owner.start = start;
  const draft = `${lockPath}.${process.pid}-${owner.token}`;
  await fs.writeFile(draft, JSON.stringify(owner), { flag: "wx" });
  try {
    await fs.link(draft, lockPath);
    held.add(owner.token);
    return owner.token;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw error;
  } finally {
    await fs.rm(draft, { force: true });
  }
}

/** Removes the lock if it is still the one `token` names. */
export async function releaseLock(lockPath: string, token: string): Promise<void> {
  held.delete(token);
  const owner = await readLock(lockPath);
  if (owner?.token === token) await fs.rm(lockPath, { force: true });
}

/** The lock's owner, or `undefined` when there is no lock (or it cannot be read). */
export async function readLock(lockPath: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await fs.readFile(lockPath, "utf8")) as Partial<LockOwner>;
    return typeof owner.pid === "number" && typeof owner.token === "string" ? (owner as LockOwner) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the owner can no longer finish: its process is gone (or the pid now
 * names a later process), or it is this process and no build here holds it.
 * An owner on another host (a shared cache directory) is never judged dead;
 * its lock is waited on until the wait's bound.
 */
export function ownerDead(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return false;
  if (owner.pid === process.pid) return !held.has(owner.token);
  if (!processAlive(owner.pid)) return true;
  const start = processStartTime(owner.pid);
  return owner.start !== undefined && start !== undefined && start !== owner.start;
}

/**
 * Removes a lock whose owner is dead. It is renamed aside first (atomic), and
 * put back if what was renamed turns out to be a newer lock that a faster
 * waiter took in between.
 */
export async function breakStaleLock(lockPath: string, stale: LockOwner): Promise<void> {
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await fs.rename(lockPath, aside);
  } catch {
    return; // someone else broke it first
  }
  const moved = await readLock(aside);
  if (moved !== undefined && moved.token !== stale.token) await fs.link(aside, lockPath).catch(() => {});
  await fs.rm(aside, { force: true });
}

/** Options of {@link waitTurn}. */
export interface WaitTurnOptions {
  lockPath: string;
  /** Whether the environment is complete (then there is nothing to build). */
  complete: () => Promise<boolean>;
  /** How long to wait for a live owner, ms. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called once when this call starts waiting on another owner. */
  onWait?: (owner: LockOwner | undefined) => void;
}

/**
 * Waits until this call may build (it then holds the lock: the token is
 * returned) or the environment is complete (`undefined`). Polls with backoff
 * from 25 ms to 500 ms.
 * @throws {AbortError} when `signal` aborts.
 * @throws {TimeoutError} when a live owner holds the lock for longer than `timeoutMs`.
 */
export async function waitTurn(options: WaitTurnOptions): Promise<string | undefined> {
  const { lockPath, signal } = options;
  const deadline = Date.now() + options.timeoutMs;
  let pause = 25;
  let told = false;
  for (;;) {
    if (signal?.aborted) throw new AbortError("waiting for another build of the environment was aborted", { cause: signal.reason });
    if (await options.complete()) return undefined;
    const token = await tryLock(lockPath);
    if (token !== undefined) return token;
    const owner = await readLock(lockPath);
    if (owner !== undefined && ownerDead(owner)) {
      await breakStaleLock(lockPath, owner);
      continue;
    }
    if (!told) {
      told = true;
      options.onWait?.(owner);
    }
    if (Date.now() > deadline) {
      throw new TimeoutError(`another process (pid ${owner?.pid ?? "unknown"}) has been building this environment for over ${Math.round(options.timeoutMs / 1000)} s; remove ${lockPath} if it is stuck`, options.timeoutMs);
    }
    try {
      await sleep(pause, undefined, signal ? { signal } : undefined);
    } catch {
      throw new AbortError("waiting for another build of the environment was aborted", { cause: signal?.reason });
    }
    pause = Math.min(500, Math.round(pause * 1.5));
  }
}
