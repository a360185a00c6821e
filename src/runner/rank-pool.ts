import { spawn, type ChildProcess } from "node:child_process";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import { StateError } from "../errors.js";
import type { PooledProcessMessage, RankAssignment } from "../transport/rank-pool-messages.js";
import { defaultLogger } from "../util/logger.js";
import { check, nonNegativeInteger } from "../util/validate.js";
import { rankEntry } from "./rank-entry.js";

/** Options of `new RankPool(options)`. */
export interface RankPoolOptions {
  /** Idle rank processes kept started; 0 turns the pool off (ranks are spawned as without one). @default 2 */
  size?: number;
  /**
   * Extra `node` flags of the pooled processes. A runner takes from the pool
   * only when its ranks' flags (`nodeArgs`, and the `--max-old-space-size` of
   * `memoryLimitMiB`) are exactly these: flags cannot change after node starts.
   * @default []
   */
  nodeArgs?: readonly string[];
  /** Where the pool logs (pooled processes that die, refills that stop). @default pino to stderr at MULTIRANK_LOG_LEVEL (info) */
  logger?: Logger;
}

/** What a runner asks of {@link RankPool.take}: the process it would have spawned. */
export interface PooledRankRequest {
  /** The rank's extra `node` flags. */
  nodeArgs: readonly string[];
  /** The rank's whole environment. */
  env: NodeJS.ProcessEnv;
  /** The rank's working directory. */
  cwd: string;
}

/**
 * A pooled process that dies before it is ready this many times in a row
 * makes the pool stop refilling: something is wrong with every start (a
 * broken install), and respawning it forever would only burn CPU.
 */
const MAX_BOOT_FAILURES = 3;

/** Stderr kept from an idle process, for the log line should it die. */
const STDERR_KEEP = 4096;

/**
 * Read by node or by the rank runtime as the process starts, before an
 * assignment could change them: a pooled process can only become a rank
 * whose environment agrees with its own on these.
 */
function isBootVariable(name: string): boolean {
  return name.startsWith("NODE_") || name.startsWith("UV_") || name === "MULTIRANK_ADDON_PATH";
}

interface IdleProcess {
  child: ChildProcess;
  env: NodeJS.ProcessEnv;
  ready: boolean;
  stderr: string;
  /** Settles when it has exited. */
  exited: Promise<void>;
  detach(): void;
}

/**
 * Rank processes started ahead of need: each has started node and loaded the
 * rank runtime (pino, ZeroMQ, msgpackr, the native addon) and waits, idle, to
 * be told which rank of which runner it is. A runner given a pool
 * (`DistributedRunnerOptions.rankPool`) takes its ranks from it instead of
 * spawning them, so a start pays only for loading the worker and `setup()`;
 * the pool refills in the background once that start is over.
 *
 * A pooled process has no device: it has not loaded CUDA, and it is pinned
 * (`CUDA_VISIBLE_DEVICES`, CPU affinity) only once it is a rank, so one pool
 * serves CPU and GPU runners, every world size and every worker alike. It
 * dies with this process (a parent-death signal and a death pipe, as ranks
 * do). What it costs is memory: see "Pre-started ranks" in the README.
 *
 * @example
 * await using pool = new RankPool({ size: 2 });
 * const runner = new DistributedRunner({ worker: "./echo.ts", worldSize: 2, rankPool: pool });
 */
export class RankPool {
  /** Idle processes the pool keeps. */
  readonly size: number;
  readonly #nodeArgs: readonly string[];
  readonly #log: Logger;
  readonly #idle: IdleProcess[] = [];
  readonly #waiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  /** Pooled processes still alive, idle or not yet exited after close. */
  readonly #exits = new Set<Promise<void>>();
  #bootFailures = 0;
  #closed = false;

  /**
   * Validates the options and starts filling the pool.
   * @throws {ValidationError} naming the field.
   */
  constructor(options: RankPoolOptions = {}) {
    check(typeof options === "object" && options !== null, "options must be an object");
    this.size = nonNegativeInteger(options.size ?? 2, "options.size");
    const nodeArgs = options.nodeArgs ?? [];
    check(Array.isArray(nodeArgs) && nodeArgs.every((a) => typeof a === "string"), "options.nodeArgs must be a list of strings");
    this.#nodeArgs = Object.freeze([...nodeArgs]);
    this.#log = (options.logger ?? defaultLogger()).child({ component: "rank-pool" });
    this.refill();
  }

  /** Idle processes now (started or still loading the runtime). */
  get idle(): number {
    return this.#idle.length;
  }

  /** The process IDs of the idle processes. */
  get pids(): number[] {
    return this.#idle.map((p) => p.child.pid!).filter((pid) => pid !== undefined);
  }

  /**
   * Resolves once `size` idle processes have loaded the runtime (at once for a
   * pool of size 0, or a closed one).
   * @throws {StateError} the pool stopped refilling because its processes keep dying as they start.
   */
  full(): Promise<void> {
    if (this.#isFull()) return Promise.resolve();
    if (this.#bootFailures >= MAX_BOOT_FAILURES) return Promise.reject(this.#brokenError());
    // The idle processes do not keep this process alive; a caller waiting for them must.
    const keepAlive = setInterval(() => {}, 1 << 30);
    return new Promise<void>((resolve, reject) => this.#waiters.add({ resolve, reject })).finally(() => clearInterval(keepAlive));
  }

  /**
   * Starts processes until `size` are idle. Runners call it when a start that
   * took processes is over (so the refill does not compete with that start
   * for the CPU); it is harmless at any time.
   */
  refill(): void {
    while (!this.#closed && this.#bootFailures < MAX_BOOT_FAILURES && this.#idle.length < this.size) this.#startOne();
  }

  /**
   * Hands an idle process over as a rank: it gets `request.env` in place of
   * its own environment, `request.cwd` as its working directory, and runs the
   * rank from there. Returns undefined when no idle process can be that rank
   * (none left, other node flags, or another value of a variable node reads
   * at its start, such as `NODE_OPTIONS`): spawn it instead.
   * The process does not come back to the pool; call {@link refill} later.
   */
  take(request: PooledRankRequest): ChildProcess | undefined {
    if (this.#closed || !sameList(request.nodeArgs, this.#nodeArgs)) return undefined;
    // Ready ones first; one still loading is still ahead of a fresh spawn.
    const candidates = [...this.#idle.filter((p) => p.ready), ...this.#idle.filter((p) => !p.ready)];
    for (const idle of candidates) {
      if (!sameBootEnv(idle.env, request.env)) continue;
      this.#idle.splice(this.#idle.indexOf(idle), 1);
      const { child } = idle;
      if (child.exitCode !== null || child.signalCode !== null || !child.connected) continue;
      idle.detach();
      this.#exits.delete(idle.exited);
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(request.env)) if (value !== undefined) env[key] = value;
      try {
        child.send({ t: "assign", env, cwd: request.cwd } satisfies RankAssignment);
      } catch (error) {
        this.#log.debug({ err: error, pid: child.pid }, "a pooled process could not be told its rank; trying another");
        child.kill("SIGKILL");
        continue;
      }
      // From here it is a rank: its runner's event loop waits for it, as for a spawned one.
      child.ref();
      refStream(child.stdout);
      refStream(child.stderr);
      return child;
    }
    return undefined;
  }

  /** Kills the idle processes and stops refilling; resolves when they have exited. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const idle of this.#idle.splice(0)) {
      // Referenced again, or an otherwise idle event loop would not wait to see it exit.
      idle.child.ref();
      idle.child.kill("SIGKILL");
    }
    for (const waiter of this.#waiters) waiter.resolve();
    this.#waiters.clear();
    await Promise.all(this.#exits);
  }

  /** Calls {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #startOne(): void {
    const entry = rankEntry();
    // MULTIRANK_PARENT_PID: the parent-death signal checks this process is still alive as it arms.
    const env = { ...process.env, MULTIRANK_PARENT_PID: String(process.pid) };
    const child = spawn(process.execPath, [...entry.execArgv, ...this.#nodeArgs, entry.poolScript], {
      env,
      cwd: process.cwd(),
      // fd 3: the death pipe, as a spawned rank's; fd 4: the channel its assignment comes by.
      stdio: ["ignore", "pipe", "pipe", "pipe", "ipc"],
      serialization: "json",
      windowsHide: true,
    });
    const exited = new Promise<void>((resolve) => {
      if (child.pid === undefined) resolve();
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    const idle: IdleProcess = { child, env, ready: false, stderr: "", exited, detach: () => {} };
    // An idle process must not keep this process alive; take() undoes this.
    child.unref();
    unrefStream(child.stdout);
    unrefStream(child.stderr);
    const deathPipe = child.stdio[3] as (Writable & { unref?: () => void }) | null;
    deathPipe?.on("error", () => {});
    deathPipe?.unref?.();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    const onMessage = (message: PooledProcessMessage): void => {
      if (message?.t !== "ready") return;
      idle.ready = true;
      this.#bootFailures = 0;
      if (this.#isFull()) this.#settleWaiters();
    };
    const onStderr = (chunk: Buffer): void => {
      idle.stderr = (idle.stderr + chunk.toString("utf8")).slice(-STDERR_KEEP);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      const at = this.#idle.indexOf(idle);
      if (at === -1) return; // closed: killed on purpose
      this.#idle.splice(at, 1);
      if (!idle.ready) this.#bootFailures++;
      this.#log.warn({ pid: child.pid, code, signal, stderr: idle.stderr.trim() || undefined }, "an idle pooled rank process died");
      if (this.#bootFailures >= MAX_BOOT_FAILURES) {
        this.#log.error({ failures: this.#bootFailures }, "pooled rank processes keep dying as they start; the pool stops refilling and runners spawn their ranks");
        for (const waiter of this.#waiters) waiter.reject(this.#brokenError());
        this.#waiters.clear();
        return;
      }
      this.refill();
    };
    const onError = (error: Error): void => {
      this.#log.warn({ err: error }, "could not start a pooled rank process");
      onExit(null, null);
    };
    child.on("message", onMessage);
    child.stderr?.on("data", onStderr);
    child.once("exit", onExit);
    child.once("error", onError);
    idle.detach = () => {
      child.off("message", onMessage);
      child.stderr?.off("data", onStderr);
      child.off("exit", onExit);
      child.off("error", onError);
    };
    this.#exits.add(exited);
    void exited.then(() => this.#exits.delete(exited));
    this.#idle.push(idle);
  }

  #isFull(): boolean {
    return this.#closed || this.#idle.filter((p) => p.ready).length >= this.size;
  }

  #settleWaiters(): void {
    for (const waiter of this.#waiters) waiter.resolve();
    this.#waiters.clear();
  }

  #brokenError(): StateError {
    return new StateError(`the rank pool stopped refilling: ${MAX_BOOT_FAILURES} pooled processes in a row died as they started (see the log)`);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameBootEnv(pooled: NodeJS.ProcessEnv, rank: NodeJS.ProcessEnv): boolean {
  for (const key of new Set([...Object.keys(pooled), ...Object.keys(rank)])) {
    if (isBootVariable(key) && (pooled[key] ?? "") !== (rank[key] ?? "")) return false;
  }
  return true;
}

function unrefStream(stream: unknown): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}

function refStream(stream: unknown): void {
  (stream as { ref?: () => void } | null)?.ref?.();
}
