/**
 * Gateways in processes of their own (test/fixtures/gateway/redis-gateway.ts),
 * for the multi-gateway tests: several on one Redis, one SIGKILLed mid-job.
 *
 * Each gateway leads its own process group (spawned detached), and its rank
 * processes are in that group, so one `kill(-pgid)` ends a "host" entirely.
 * Every gateway started is stopped, with its whole group, even when a test
 * fails: one started inside a test when the test ends (`onTestFinished`), one
 * started in a hook by {@link cleanUpGatewayProcesses}' hook, and any left
 * when this process exits then (SIGKILL). The fixture also exits when this
 * process's end closes its stdin pipe.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, onTestFinished } from "vitest";
import type { RedisGatewayConfig } from "../fixtures/gateway/redis-gateway.js";
import type { LedgerLine } from "../fixtures/gateway/workers/ledger.js";

export type { RedisGatewayConfig } from "../fixtures/gateway/redis-gateway.js";
export type { LedgerLine } from "../fixtures/gateway/workers/ledger.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/gateway/redis-gateway.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../..", import.meta.url));
/** Default bound on the READY line: a cold tsx start of the gateway on a busy 2-core machine. */
const READY_MS = 60_000;
/** Bound on a graceful close (the fixture's shutdownGrace is 2 s) and on a killed group's exit. */
const EXIT_MS = 15_000;

/** What {@link startGatewayProcess} takes besides the fixture's config. */
export interface GatewayProcessOptions {
  /** Extra environment for the gateway (and its ranks). */
  env?: Record<string, string>;
  /** Longest wait for the READY line, ms. @default 60000 */
  readyTimeoutMs?: number;
  /** Another fixture script with the same contract (config in argv[2], `READY <url>` on stdout). @default test/fixtures/gateway/redis-gateway.ts */
  fixture?: string;
}

/** A gateway process the test started. */
export interface GatewayProcess {
  /** `http://127.0.0.1:PORT`, from its READY line. */
  readonly url: string;
  /** The gateway's pid, which is also its process group's id. */
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the gateway process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What it wrote to stderr (its logs, at TEST_LOG_LEVEL), the last 64 KiB. */
  stderr(): string;
  /**
   * Sends `signal` and waits for the gateway to exit. `scope` "group" (the
   * default for SIGKILL: a host dying) signals the gateway and every rank it
   * started and also waits until none of them is left; "gateway" (the default
   * otherwise) signals the gateway process alone.
   */
  kill(signal?: NodeJS.Signals, scope?: "gateway" | "group"): Promise<void>;
  /** SIGTERM (a graceful close, bounded at 15 s), then SIGKILL to whatever of its group is left; idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const started = new Set<Started>();

/**
 * Spawns the redis-gateway fixture with `config` and waits (bounded) for its
 * READY line; throws with its stderr's tail when it exits or times out first.
 * Inside a test it is stopped when the test ends.
 */
export async function startGatewayProcess(config: RedisGatewayConfig, options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", options.fixture ?? FIXTURE, JSON.stringify(config)], {
    cwd: REPO,
    env: { ...process.env, ...options.env },
    // A piped stdin: the fixture exits when this process is gone (exitWithParent).
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
  const gateway = new Started(child);
  started.add(gateway);
  try {
    await gateway.ready(options.readyTimeoutMs ?? READY_MS);
  } catch (error) {
    await gateway.stop();
    throw error;
  }
  try {
    onTestFinished(() => gateway.stop());
  } catch {
    // Not inside a test (a beforeAll): cleanUpGatewayProcesses' hook stops it.
  }
  return gateway;
}

/** Stops every gateway process this process started, and their ranks. */
export async function stopAllGatewayProcesses(): Promise<void> {
  await Promise.all([...started].map((gateway) => gateway.stop()));
}

/** Registers a hook that stops every gateway process started so far: after each test (the default) or after the suite. */
export function cleanUpGatewayProcesses(scope: "each" | "all" = "each"): void {
  (scope === "each" ? afterEach : afterAll)(stopAllGatewayProcesses);
}

// The last resort: the test process is exiting with gateways still running.
process.on("exit", () => {
  for (const gateway of started) killGroup(gateway.pid, "SIGKILL");
});

/** The lines of a ledger file written by the ledger worker (none while it does not exist). */
export function readLedger(path: string): LedgerLine[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LedgerLine);
}

/** Live (non-zombie) processes whose process group is `pgid`, read from /proc. */
export function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // After the command name: state, ppid, pgrp.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z") pids.push(Number(entry));
    } catch {
      // Ended while we looked.
    }
  }
  return pids;
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits (polling /proc, bounded) until process group `pgid` is empty; returns whether it emptied. */
async function groupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupPids(pgid).length > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

class Started implements GatewayProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url = "";
  #stderr = "";
  #stdout = "";
  #stopping: Promise<void> | undefined;

  constructor(child: ChildProcess) {
    this.child = child;
    this.pid = child.pid ?? -1;
    child.stderr!.on("data", (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-65536);
    });
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => {
        this.#stderr += `${String(error)}\n`;
        resolve({ code: null, signal: null });
      });
    });
  }

  stderr(): string {
    return this.#stderr;
  }

  #tail(): string {
    return this.#stderr.trimEnd().split("\n").slice(-40).join("\n") || "(nothing on stderr; set TEST_LOG_LEVEL=debug for the gateway's logs)";
  }

  ready(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.stdout!.off("data", onData);
      };
      const onData = (chunk: Buffer): void => {
        this.#stdout += chunk.toString();
        const match = /^READY (\S+)$/m.exec(this.#stdout);
        if (!match) return;
        cleanup();
        this.url = match[1]!;
        // Drained from here on, so the pipe never fills.
        this.child.stdout!.resume();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`gateway process ${this.pid} printed no READY line within ${timeoutMs} ms; stderr:\n${this.#tail()}`));
      }, timeoutMs);
      this.child.stdout!.on("data", onData);
      void this.exited.then(({ code, signal }) => {
        if (this.url) return;
        cleanup();
        reject(new Error(`gateway process ${this.pid} exited (${signal ?? `code ${code}`}) before READY; stdout: ${JSON.stringify(this.#stdout)}; stderr:\n${this.#tail()}`));
      });
    });
  }

  async kill(signal: NodeJS.Signals = "SIGKILL", scope: "gateway" | "group" = signal === "SIGKILL" ? "group" : "gateway"): Promise<void> {
    if (scope === "group") killGroup(this.pid, signal);
    else if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    if (!(await within(this.exited, EXIT_MS))) throw new Error(`gateway process ${this.pid} did not exit within ${EXIT_MS} ms of ${signal}; stderr:\n${this.#tail()}`);
    if (scope === "group" && !(await groupGone(this.pid, EXIT_MS))) {
      throw new Error(`processes of gateway ${this.pid}'s group still run ${EXIT_MS} ms after ${signal}: ${groupPids(this.pid).join(", ")}`);
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill("SIGTERM");
        await within(this.exited, EXIT_MS);
      }
      // Whatever is left of its group (ranks of a gateway that did not close, or closed badly) ends now.
      killGroup(this.pid, "SIGKILL");
      await within(this.exited, EXIT_MS);
      await groupGone(this.pid, EXIT_MS);
      this.child.stdin?.destroy();
      started.delete(this);
    })();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
