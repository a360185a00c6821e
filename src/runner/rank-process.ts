import { spawn, type ChildProcess } from "node:child_process";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import { forEachLine, LineTail } from "../util/line-splitter.js";
import { deferred } from "../util/deferred.js";
import { RankCgroup } from "./rank-cgroup.js";

/** How a rank process ended. */
export interface RankExit {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What {@link RankProcess} needs to start one rank. */
export interface RankSpawnOptions {
  rank: number;
  execPath: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logger: Logger;
  stderrTailLines: number;
  deathPipe: boolean;
  /** Put the rank in its own cgroup with this `memory.max` (bytes), where cgroup v2 allows it. */
  memoryLimitBytes?: number;
  /** The cgroup's name, unique on the host; required with `memoryLimitBytes`. */
  cgroupName?: string;
  /**
   * A process already started for this rank (taken from a `RankPool`, with its
   * environment sent), adopted instead of spawning one; `execPath`, `args`,
   * `env` and `cwd` then only describe it.
   */
  child?: ChildProcess;
}

/** V8's last words when a heap allocation fails at its limit ("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"). */
const HEAP_OOM = /JavaScript heap out of memory|FATAL ERROR: .*heap limit/;

const PINO_LEVELS: Record<number, "trace" | "debug" | "info" | "warn" | "error" | "fatal"> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/**
 * Re-logs one line a rank printed. Ranks log pino JSON on stdout; those keep
 * their level and fields. Anything else (console.log, a native library) is
 * logged as text under the rank's name.
 */
function relayLine(logger: Logger, stream: "stdout" | "stderr", line: string): void {
  if (line.startsWith('{"level":')) {
    try {
      const record = JSON.parse(line) as { level: number; msg?: string; time?: number; pid?: number; hostname?: string; rank?: number };
      const level = PINO_LEVELS[record.level] ?? "info";
      if (!logger.isLevelEnabled(level)) return;
      const { level: _l, msg, time: _t, pid: _p, hostname: _h, rank: _r, ...fields } = record;
      logger[level](fields, msg ?? "");
      return;
    } catch {
      // Not JSON after all: log it as text below.
    }
  }
  if (stream === "stderr") logger.warn({ stream }, line);
  else logger.info({ stream }, line);
}

/** One rank's OS process: spawn, relay its output, remember its last stderr lines, report its exit. */
export class RankProcess {
  readonly rank: number;
  readonly #child: ChildProcess;
  readonly #stderrTail: LineTail;
  readonly #exited = deferred<RankExit>();
  readonly #stderrDone = deferred<void>();
  #exit: RankExit | undefined;
  #cgroup: RankCgroup | undefined;
  #cgroupEvents: Record<string, number> = {};
  #heapOutOfMemory = false;

  constructor(options: RankSpawnOptions) {
    this.rank = options.rank;
    this.#stderrTail = new LineTail(options.stderrTailLines);
    const logger = options.logger;
    this.#child =
      options.child ??
      spawn(options.execPath, options.args, {
        cwd: options.cwd,
        env: options.env,
        // fd 3 is the death pipe: the rank exits when it reads end-of-file on it.
        stdio: ["ignore", "pipe", "pipe", options.deathPipe ? "pipe" : "ignore"],
        windowsHide: true,
      });
    const { stdout, stderr } = this.#child;
    if (stdout) forEachLine(stdout, (line) => relayLine(logger, "stdout", line));
    if (stderr) {
      forEachLine(stderr, (line) => {
        if (!this.#heapOutOfMemory && HEAP_OOM.test(line)) this.#heapOutOfMemory = true;
        this.#stderrTail.push(line);
        relayLine(logger, "stderr", line);
      });
      stderr.once("close", () => this.#stderrDone.resolve());
    } else {
      this.#stderrDone.resolve();
    }
    // The death pipe's parent end must not keep the runner's event loop alive.
    const deathPipe = this.#child.stdio[3] as (Writable & { unref?: () => void }) | null;
    deathPipe?.on("error", () => {});
    deathPipe?.unref?.();
    this.#child.once("error", (error) => {
      logger.error({ err: error }, "could not start rank process");
      this.#settle(null, null);
    });
    this.#child.once("exit", (code, signal) => this.#settle(code, signal));
    // Moved right after spawn, while node is still starting: what it allocated
    // so far stays charged to our group, everything the worker does to its own.
    if (options.memoryLimitBytes !== undefined && this.#child.pid !== undefined) {
      this.#cgroup = RankCgroup.create({ name: options.cgroupName ?? `multirank-${process.pid}-r${options.rank}`, limitBytes: options.memoryLimitBytes, pid: this.#child.pid, logger });
    }
  }

  #settle(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#exit) return;
    if (this.#cgroup) {
      // Read before removal: the counters go with the group.
      this.#cgroupEvents = this.#cgroup.events();
      this.#cgroup.remove();
    }
    this.#exit = { rank: this.rank, code, signal };
    this.#exited.resolve(this.#exit);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** How it ended; undefined while it runs. */
  get exit(): RankExit | undefined {
    return this.#exit;
  }

  /** The rank's memory cgroup directory, when it has one (see `memoryLimitBytes`). */
  get cgroup(): string | undefined {
    return this.#cgroup?.dir;
  }

  /**
   * Whether the rank died of its memory limit, and which: `"heap"` when V8
   * reported its heap out of memory on stderr, `"cgroup"` when the kernel's
   * OOM killer killed a process of its cgroup (or SIGKILL ended it after the
   * group hit its limit). Meaningful once it has exited and its stderr drained
   * ({@link stderrTail}).
   */
  memoryLimitHit(): "heap" | "cgroup" | undefined {
    if (!this.#exit) return undefined;
    if (this.#heapOutOfMemory) return "heap";
    const events = this.#cgroupEvents;
    if ((events.oom_kill ?? 0) > 0) return "cgroup";
    if (this.#cgroup && this.#exit.signal === "SIGKILL" && (events.oom ?? 0) > 0) return "cgroup";
    return undefined;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** Resolves when the process has exited. */
  get exited(): Promise<RankExit> {
    return this.#exited.promise;
  }

  /** The last stderr lines, after waiting (briefly) for stderr to drain. */
  async stderrTail(waitMs = 250): Promise<string> {
    await Promise.race([this.#stderrDone.promise, new Promise((r) => setTimeout(r, waitMs).unref())]);
    return this.#stderrTail.toString();
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.alive) return;
    try {
      this.#child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}
