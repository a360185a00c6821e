import { randomBytes } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { childEnvForPlan, planDevices, type RankDevicePlan } from "../devices/index.js";
import { NativeError } from "../errors.js";
import { RANK_ENV } from "../transport/messages.js";
import type { ControlSession } from "./control-session.js";
import { findFreePort } from "../util/free-port.js";
import type { ResolvedRunnerOptions } from "./options.js";
import { rankEntry } from "./rank-entry.js";
import { RankProcess, type RankExit } from "./rank-process.js";
import { compileWorker } from "./worker-compiler.js";

/** What every rank of one start shares, settled before any rank is spawned. */
export interface LaunchPlan {
  /** Each rank's devices and CPUs; undefined: unpinned, on the CPU. */
  plans: RankDevicePlan[] | undefined;
  /** The process group's rendezvous port (a free one when the option is 0). */
  masterPort: number;
  /** A `.ts` worker compiled once for all ranks (see worker-compiler.ts); undefined: ranks load the worker as given. */
  compiledWorker: string | undefined;
}

const TYPESCRIPT = /\.(m|c)?tsx?$/;

/**
 * Starts a session's rank processes: plans their devices, builds each rank's
 * environment (the torchrun-style `RANK`/`WORLD_SIZE`/`MASTER_*` variables and
 * the runner's own `RANK_ENV` block) and spawns a {@link RankProcess} per rank.
 */
export class RankLauncher {
  readonly #options: ResolvedRunnerOptions;
  readonly #log: Logger;

  /** `log`: the runner's logger; each rank logs through a child of it, and ranks log at its level. */
  constructor(options: ResolvedRunnerOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  /**
   * Plans devices and finds the master port.
   * @throws {NativeError} device discovery failed (and `devices` is not "auto")
   * @throws {ValidationError} the devices cannot serve `worldSize` ranks
   */
  async plan(): Promise<LaunchPlan> {
    const plans = this.#planDevices();
    let masterPort = this.#options.masterPort;
    if (masterPort === 0) masterPort = await findFreePort(this.#options.masterAddr);
    return { plans, masterPort, compiledWorker: await this.#compileWorker() };
  }

  /**
   * Compiles a `.ts` worker here, once, so that no rank pays for tsx. A
   * worker that cannot be compiled to the same behaviour still runs: its
   * ranks load it through tsx, as they did before, and the log says why.
   */
  async #compileWorker(): Promise<string | undefined> {
    const path = this.#workerModule();
    if (!TYPESCRIPT.test(path) || process.env.MULTIRANK_COMPILE_WORKER === "0") return undefined;
    const started = performance.now();
    const compiled = await compileWorker(path.startsWith("file:") ? fileURLToPath(path) : path);
    if (!compiled.ok) {
      this.#log.info({ worker: path, reason: compiled.reason }, "worker not compiled ahead; ranks load it through tsx");
      return undefined;
    }
    this.#log.debug({ worker: path, compiled: compiled.path, cached: compiled.cached, ms: Math.round(performance.now() - started) }, "worker compiled");
    return compiled.path;
  }

  #workerModule(): string {
    const { worker, cwd } = this.#options;
    return worker.startsWith("file:") || isAbsolute(worker) ? worker : resolve(cwd, worker);
  }

  /** Spawns every rank of `session`; `onExit` hears of each rank's exit (expected or not). */
  launch(session: ControlSession, plan: LaunchPlan, onExit: (rank: RankProcess, exit: RankExit) => Promise<void>): void {
    const options = this.#options;
    // New for every start, and only in the ranks' environment (which other users cannot read).
    const groupSecret = randomBytes(32).toString("hex");
    // Every spawned rank is on this host: unless a port was asked for, the group
    // meets at a unix socket, not a tcp port through ZeroMQ (as the control channel does).
    const groupSocket = options.worldSize > 1 && options.masterPort === 0 ? session.groupSocketPath() : undefined;
    const entry = rankEntry();
    // V8's own limit works everywhere; the cgroup (where we may make one) also catches memory outside the heap.
    const memoryArgs = options.memoryLimitMiB === undefined ? [] : [`--max-old-space-size=${options.memoryLimitMiB}`];
    const workerModule = this.#workerModule();
    const pool = options.rankPool;
    let pooled = 0;
    for (let rank = 0; rank < options.worldSize; rank++) {
      const env = this.#rankEnv(session, plan, rank, { workerModule, groupSecret, groupSocket, errorFile: session.errors.fileFor(rank) });
      const nodeArgs = [...options.nodeArgs, ...memoryArgs];
      const child = pool?.take({ nodeArgs, env, cwd: options.cwd });
      if (child) pooled++;
      const process_ = new RankProcess({
        rank,
        ...(child ? { child } : {}),
        execPath: process.execPath,
        args: [...entry.execArgv, ...nodeArgs, entry.script],
        env,
        cwd: options.cwd,
        logger: this.#log.child({ rank }),
        stderrTailLines: options.stderrTailLines,
        deathPipe: options.deathPipe,
        ...(options.memoryLimitMiB === undefined ? {} : { memoryLimitBytes: options.memoryLimitMiB * 1024 * 1024, cgroupName: `multirank-${process.pid}-${session.nonce}-r${rank}` }),
      });
      session.addRank(process_);
      void process_.exited
        .then((exit) => onExit(process_, exit))
        .catch((error: unknown) => this.#log.error({ err: error, rank }, "handling a rank exit failed"));
    }
    if (pool && pooled > 0) {
      this.#log.debug({ pooled, worldSize: options.worldSize }, "ranks taken from the rank pool");
      // Refilled once this start is over: new processes booting now would take CPU from it.
      const refill = (): void => pool.refill();
      session.started.then(refill, refill);
    }
  }

  /** The environment of `rank`: the runner's, `options.env`, the device plan's, then what the rank needs to join. */
  #rankEnv(session: ControlSession, plan: LaunchPlan, rank: number, shared: { workerModule: string; groupSecret: string; groupSocket: string | undefined; errorFile: string }): NodeJS.ProcessEnv {
    const options = this.#options;
    const keys = session.keys;
    const rankKeys = keys?.rankKeys[rank];
    return {
      ...process.env,
      ...options.env,
      ...(plan.plans ? childEnvForPlan(plan.plans[rank]!) : {}),
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: String(options.worldSize),
      LOCAL_WORLD_SIZE: String(options.worldSize),
      MASTER_ADDR: options.masterAddr,
      MASTER_PORT: String(plan.masterPort),
      [RANK_ENV.controlEndpoint]: session.endpoint,
      [RANK_ENV.routingId]: session.routingId(rank),
      [RANK_ENV.token]: session.token,
      [RANK_ENV.workerModule]: shared.workerModule,
      ...(plan.compiledWorker === undefined ? {} : { [RANK_ENV.compiledWorker]: plan.compiledWorker }),
      [RANK_ENV.errorFile]: shared.errorFile,
      [RANK_ENV.maxMessageBytes]: String(options.maxMessageBytes),
      [RANK_ENV.logLevel]: this.#log.level,
      [RANK_ENV.streamWindow]: String(options.streamHighWaterMark),
      [RANK_ENV.groupSecret]: shared.groupSecret,
      ...(shared.groupSocket === undefined ? {} : { [RANK_ENV.rendezvousSocket]: shared.groupSocket }),
      ...(options.deathPipe ? { [RANK_ENV.deathPipeFd]: "3" } : {}),
      ...(keys && rankKeys ? { [RANK_ENV.curveServerKey]: keys.serverKey, [RANK_ENV.curvePublicKey]: rankKeys.publicKey, [RANK_ENV.curveSecretKey]: rankKeys.secretKey } : {}),
    };
  }

  #planDevices(): RankDevicePlan[] | undefined {
    const { devices, worldSize, isolateDevices, cpusPerRank } = this.#options;
    const perRank = cpusPerRank === undefined ? {} : { cpusPerRank };
    try {
      return planDevices(devices, worldSize, { isolateDevices, ...perRank });
    } catch (error) {
      // "auto" must work on any machine: without a usable addon, run on the CPU,
      // unpinned unless cores per rank were asked for (a promise we must keep).
      if (devices === "auto" && error instanceof NativeError) {
        if (cpusPerRank !== undefined) return planDevices("cpu", worldSize, { isolateDevices, cpusPerRank });
        this.#log.warn({ err: error }, "device discovery failed; ranks run unpinned on the CPU");
        return undefined;
      }
      throw error;
    }
  }
}
