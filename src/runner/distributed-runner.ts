import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { curveKeyPair, type Router } from "zeromq";
import { pack } from "../codec/packer.js";
import { formatTextEvent } from "../codec/text-events.js";
import type { WorkerDevice } from "../devices/index.js";
import { AbortError, MemoryLimitError, MultirankError, RankError, RankGroupError, RankHungError, StateError, TimeoutError, type RankExitError } from "../errors.js";
import { encodeJoinInfo } from "../transport/join-info.js";
import { GROUP_BROKEN_EXIT_CODE, type RunnerMessage } from "../transport/messages.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import { defaultLogger } from "../util/logger.js";
import { setLongTimeout } from "../util/timers.js";
import type { AnyWorkerClass, WorkerClass, WorkerInput, WorkerOutput } from "../worker/distributed-worker.js";
import { ControlSession, foreignMessageLog, type ForeignMessageLog } from "./control-session.js";
import { ErrorLedger } from "./error-ledger.js";
import { restartsAfter } from "./group-recovery.js";
import { KeepaliveTimer } from "./keepalive-timer.js";
import { resolveRunnerOptions, timeoutToMs, type DistributedRunnerOptions, type ResolvedRunnerOptions } from "./options.js";
import type { StreamEvent } from "./pending-request.js";
import { RankLauncher, type LaunchPlan } from "./rank-launcher.js";
import type { RankExit, RankProcess } from "./rank-process.js";
import { RequestSubmitter } from "./request-submitter.js";
import type { InvokeOptions, RunnerEvents, RunnerState, StartOptions, StopOptions, StreamOptions } from "./runner-types.js";

export type { InvokeOptions, RunnerEvents, RunnerState, StartOptions, StopOptions, StreamOptions } from "./runner-types.js";

/**
 * Runs one worker module across `worldSize` rank processes and drives them
 * over a unix socket on one host or ZeroMQ across hosts: the Node counterpart of fal's `fal.distributed.DistributedRunner`,
 * with fal's method names in camelCase.
 *
 * The type argument, a worker class (`typeof MyModel`, imported with
 * `import type`), types `invoke`'s and `stream`'s input and `invoke`'s result;
 * without it they are `unknown`. The module loaded is still `options.worker`.
 *
 * @example
 * await using runner = new DistributedRunner({ worker: "./workers/echo.ts", worldSize: 2 });
 * await runner.start();
 * console.log(await runner.invoke({ text: "hi" }));
 * for await (const event of runner.stream({ prompt: "a cat" }, { asTextEvents: true })) res.write(event);
 * @example
 * import type Echo from "./workers/echo.js";
 * const typed = new DistributedRunner<typeof Echo>({ worker: "./workers/echo.ts" });
 * const { text } = await typed.invoke({ text: "hi" }); // input and result typed as Echo's call()
 */
export class DistributedRunner<W extends AnyWorkerClass = WorkerClass> extends EventEmitter<RunnerEvents> {
  readonly #options: ResolvedRunnerOptions;
  readonly #log: Logger;
  readonly #keepaliveTimer: KeepaliveTimer | undefined;
  readonly #ledger = new ErrorLedger();
  readonly #launcher: RankLauncher;
  readonly #submitter: RequestSubmitter;
  readonly #foreign: ForeignMessageLog;
  #state: RunnerState = "idle";
  #session: ControlSession | undefined;
  #setupArgs: Record<string, unknown> = {};
  #startTimeoutSeconds: number | undefined;
  #stopping: Promise<void> | undefined;
  /** Attach mode: the run's keys and secret, and the port bound first, kept across restarts so one join string serves them all. */
  readonly #attach: { serverKeys: { publicKey: string; secretKey: string }; secret: string } | undefined;
  #attachPort: number | undefined;
  #joinInfo: string | undefined;

  /**
   * @throws {ValidationError} when an option is invalid; the message names it.
   */
  constructor(options: DistributedRunnerOptions) {
    super();
    this.#options = resolveRunnerOptions(options);
    this.#log = (this.#options.logger ?? defaultLogger()).child({ component: "runner" });
    this.#foreign = foreignMessageLog(this.#log);
    this.#launcher = new RankLauncher(this.#options, this.#log);
    this.#submitter = new RequestSubmitter(this.#options, () => this.maybeResetKeepalive());
    const interval = this.#options.keepaliveIntervalMs;
    if (interval !== undefined) this.#keepaliveTimer = new KeepaliveTimer(interval, () => this.#keepaliveFired());
    if (this.#options.launcher === "external") this.#attach = { serverKeys: curveKeyPair(), secret: randomBytes(32).toString("hex") };
  }

  /**
   * With `launcher: "external"`: the one string ranks need to join (the
   * control endpoint, the runner's CURVE public key, the run's secret and the
   * world size), for `multirank rank` in `MULTIRANK_JOIN` or a file
   * (`MULTIRANK_JOIN_FILE`, or the `joinFile` option). Known once `start()`
   * bound the control socket (the `listening` event), and the same for every
   * restart of this runner. It holds a secret: never log it, never put it on
   * a command line.
   * @throws {StateError} spawned ranks (`launcher: "spawn"`), or before the first `start()` bound the socket.
   */
  get joinInfo(): string {
    if (!this.#attach) throw new StateError('joinInfo is for launcher: "external"; this runner spawns its ranks');
    if (this.#joinInfo === undefined) throw new StateError("joinInfo is known once start() bound the control socket (the runner's listening event)");
    return this.#joinInfo;
  }

  /** Where the runner is in its life: idle, starting, ready, stopping, stopped or failed. */
  get state(): RunnerState {
    return this.#state;
  }

  /** The number of ranks. */
  get worldSize(): number {
    return this.#options.worldSize;
  }

  /** The device each rank reported at start, by rank. */
  get devices(): readonly WorkerDevice[] {
    return this.#session?.devices ?? [];
  }

  /** PIDs of the rank processes, by rank (empty when not running). */
  get pids(): readonly number[] {
    const session = this.#session;
    if (session?.attached) return Array.from({ length: this.worldSize }, (_, rank) => session.joined(rank)?.pid ?? -1);
    return (session?.ranks ?? []).map((rank) => rank.pid ?? -1);
  }

  /** The control endpoint the ranks connect to: `unix:<path>` by default on one host, or ZeroMQ's `ipc://...` / `tcp://...` (see the `transport` option). */
  get endpoint(): string | undefined {
    return this.#session?.endpoint;
  }

  /**
   * Spawns the ranks, runs every rank's `setup(setupArgs)` and resolves when
   * all are ready. On failure it rejects with the rank's error (`RankError`,
   * `RankExitError`), or `RankGroupError` when several failed, or
   * `TimeoutError`, and leaves no process behind.
   */
  async start(options: StartOptions = {}): Promise<void> {
    const { timeout = 1800, signal, ...setupArgs } = options;
    const timeoutMs = timeoutToMs(timeout, "start options.timeout");
    if (this.#state === "starting" || this.#state === "ready") throw new StateError(`runner is already ${this.#state}`);
    if (this.#state === "stopping") throw new StateError("runner is stopping; await stop() before start()");
    signal?.throwIfAborted();
    // Packed once, before any process or channel exists, so an argument that
    // cannot be sent fails here; setup arguments never carry shared-memory
    // references, so the plain codec packs them as the channel's would.
    const setupMessage = pack({ t: "setup", args: setupArgs } satisfies RunnerMessage, "setup arguments", this.#options.maxMessageBytes);
    this.#setupArgs = setupArgs;
    this.#startTimeoutSeconds = timeout;
    this.#setState("starting");
    let session: ControlSession;
    try {
      session = await this.#openSession(setupMessage);
    } catch (error) {
      this.#setState("failed");
      throw error;
    }
    const timer = setLongTimeout(timeoutMs, () => {
      const missing = session.notJoined();
      const why =
        missing.length > 0
          ? `ranks that never joined: ${missing.join(", ")} (of ${this.worldSize}; did the launcher start \`multirank rank\` with this runner's join string?)`
          : `ranks not ready: ${session.notReady().join(", ")}`;
      session.failStartup(new TimeoutError(`start timed out after ${timeout} s; ${why}`, timeoutMs));
    });
    const onAbort = (): void => session.failStartup(new AbortError("start was aborted", { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await session.started;
    } catch (error) {
      await session.close("SIGKILL");
      this.#setState("failed");
      throw error;
    } finally {
      timer.cancel();
      signal?.removeEventListener("abort", onAbort);
    }
    const heartbeatTimeoutMs = this.#options.heartbeatTimeoutMs;
    // Joined ranks have been watched since they joined.
    if (heartbeatTimeoutMs !== 0 && !session.attached) session.startHeartbeats(heartbeatTimeoutMs, (rank, silentMs) => void this.#onRankHung(session, rank, silentMs));
    this.#setState("ready");
    this.maybeStartKeepalive();
  }

  /** Binds the control channel, then spawns the ranks (the session is current from then on). */
  async #openSession(setupMessage: Buffer): Promise<ControlSession> {
    if (this.#attach) return this.#openAttachSession(setupMessage);
    const { worldSize, maxMessageBytes, transport, workerAddr, workerPort } = this.#options;
    const session = await ControlSession.open({ worldSize, maxMessageBytes, transport, workerAddr, workerPort, setupMessage, ledger: this.#ledger, foreign: this.#foreign, log: this.#log });
    let plan: LaunchPlan;
    try {
      plan = await this.#launcher.plan();
    } catch (error) {
      session.discard();
      throw error;
    }
    this.#session = session;
    session.listen();
    this.#launcher.launch(session, plan, (rank, exit) => this.#onRankExit(session, rank, exit));
    return session;
  }

  /**
   * Attach mode: binds the control channel (the port of the first start
   * again, so the join string stays valid), publishes the join string, and
   * waits for ranks: nothing is spawned.
   */
  async #openAttachSession(setupMessage: Buffer): Promise<ControlSession> {
    const attach = this.#attach!;
    const { worldSize, maxMessageBytes, transport, workerAddr, workerPort, heartbeatTimeoutMs, joinFile } = this.#options;
    const args = this.#setupArgs;
    let session: ControlSession | undefined;
    session = await ControlSession.open({
      worldSize,
      maxMessageBytes,
      transport,
      workerAddr,
      workerPort: this.#attachPort ?? workerPort,
      setupMessage,
      attach: {
        ...attach,
        setupFor: (group) =>
          session!.codec.pack({
            t: "setup",
            args,
            ...(group ? { group } : {}),
            // The runner pings at least four times per heartbeatTimeout: that long without a word means it is gone.
            ...(heartbeatTimeoutMs > 0 ? { runnerSilenceMs: heartbeatTimeoutMs } : {}),
            // A joined rank cannot read these from an environment the runner made.
            limits: { maxMessageBytes, streamWindow: this.#options.streamHighWaterMark },
          } satisfies RunnerMessage),
        heartbeatTimeoutMs,
        hung: (rank, silentMs) => void this.#onRankHung(session!, rank, silentMs),
        lost: (rank, error) => void this.#onRankLost(session!, rank, error, "a joined rank reported a fatal error; stopping the group"),
      },
      ledger: this.#ledger,
      foreign: this.#foreign,
      log: this.#log,
    });
    const bound = /^tcp:\/\/(.+):(\d+)$/.exec(session.endpoint);
    if (!bound) {
      session.discard();
      throw new StateError(`the control socket bound an endpoint ranks cannot join: ${session.endpoint}`);
    }
    this.#attachPort = Number(bound[2]);
    // A wildcard address is where the runner listens, not where ranks find it.
    const host = ["0.0.0.0", "[::]", "*"].includes(bound[1]!) ? hostname() : bound[1]!;
    this.#joinInfo = encodeJoinInfo({ endpoint: `tcp://${host}:${this.#attachPort}`, serverKey: attach.serverKeys.publicKey, secret: attach.secret, worldSize });
    if (joinFile !== undefined) {
      try {
        writeFileAtomicSync(joinFile, `${this.#joinInfo}\n`, 0o600);
      } catch (error) {
        session.discard();
        throw new StateError(`could not write options.joinFile (${joinFile})`, { cause: error });
      }
    }
    this.#session = session;
    session.listen();
    this.#log.info({ endpoint: session.endpoint, worldSize, ...(joinFile === undefined ? {} : { joinFile }) }, "waiting for ranks to join");
    this.emit("listening");
    return session;
  }

  /**
   * Sends `payload` to every rank and resolves with rank 0's result.
   *
   * @throws {SerializationError} the payload cannot be packed (nothing was sent)
   * @throws {MessageTooLargeError} the packed payload is over `maxMessageBytes`
   * @throws {RankError} `call` threw on a rank ({@link RankGroupError} for several)
   * @throws {RankExitError} a rank died while the request ran
   * @throws {MemoryLimitError} a rank went over `memoryLimitMiB` and died of it
   * @throws {TimeoutError} / {AbortError} the request was cancelled at the ranks
   */
  async invoke<T = WorkerOutput<W>>(payload: WorkerInput<W> = {} as WorkerInput<W>, options: InvokeOptions = {}): Promise<T> {
    const request = this.#submitter.submit(this.#requireReady(), payload, false, options);
    return (await request.result) as T;
  }

  /**
   * Sends `payload` to every rank and yields rank 0's streaming results as
   * they come, then its return value (if any) as the last item. Breaking out
   * of the loop cancels the request at every rank. With `asTextEvents`, yields
   * `data: <json>\n\n` Buffers with images as `data:` URLs.
   */
  stream(payload: WorkerInput<W>, options: StreamOptions & { asTextEvents: true }): AsyncGenerator<Buffer, void, undefined>;
  stream<T = unknown>(payload?: WorkerInput<W>, options?: StreamOptions): AsyncGenerator<T, void, undefined>;
  stream(payload: unknown = {}, options: StreamOptions = {}): AsyncGenerator<unknown, void, undefined> {
    return this.#stream(payload, options);
  }

  async *#stream(payload: unknown, options: StreamOptions): AsyncGenerator<unknown, void, undefined> {
    const streamingTimeoutMs = options.streamingTimeout === undefined ? undefined : timeoutToMs(options.streamingTimeout, "options.streamingTimeout");
    const session = this.#requireReady();
    const request = this.#submitter.submit(session, payload, true, options);
    const asText = options.asTextEvents === true;
    try {
      for (;;) {
        const next = await this.#submitter.nextEvent(session, request, options.streamingTimeout, streamingTimeoutMs);
        if (next.done) return;
        yield asText ? toTextEvent(next.value) : toValue(next.value);
      }
    } finally {
      if (!request.settled) this.#submitter.cancel(session, request, new AbortError(`stream of request ${request.id} was closed by its consumer`), "aborted");
    }
  }

  #requireReady(): ControlSession {
    const session = this.#session;
    if (this.#state === "ready" && session && !session.closed) return session;
    if (this.#state === "failed") {
      throw new StateError("runner has failed; call restart() (see gatherErrors() for why)", { cause: this.#session?.failure ?? this.#ledger.lastRecorded });
    }
    throw new StateError(`runner is ${this.#state}; call start() first`);
  }

  /** True when every rank is up and the runner takes requests. */
  isAlive(): boolean {
    const session = this.#session;
    return this.#state === "ready" && session !== undefined && !session.closed && session.ranks.every((rank) => rank.alive);
  }

  /** Throws unless {@link isAlive}: a `RankGroupError` with the gathered errors, or a `StateError`. */
  ensureAlive(): void {
    if (this.isAlive()) return;
    const errors = this.gatherErrors();
    if (errors.length > 0) throw new RankGroupError(`runner is not alive (${this.#state})`, errors);
    throw new StateError(`runner is not alive (${this.#state})`);
  }

  /**
   * Every error since the last call: rank errors in setup, call and teardown
   * (read from the ranks' error files, so a rank that died while sending is
   * included), rank exits, and keepalive failures. Clears the list.
   */
  gatherErrors(): MultirankError[] {
    if (this.#session && !this.#session.closed) this.#session.errors.harvest();
    return this.#ledger.gatherErrors();
  }

  /** Sends the keepalive payload now, as a request. @param timeout seconds, default 60 */
  async keepalive(timeout = 60): Promise<void> {
    await this.invoke(this.#options.keepalivePayload as WorkerInput<W>, { timeout });
  }

  /** Starts the keepalive timer, if `keepaliveInterval` is set. */
  maybeStartKeepalive(): void {
    if (this.#state === "ready") this.#keepaliveTimer?.start();
  }

  /** Restarts the idle wait of the keepalive timer, if it runs. */
  maybeResetKeepalive(): void {
    this.#keepaliveTimer?.reset();
  }

  /** Stops the keepalive timer, if it runs. */
  maybeCancelKeepalive(): void {
    this.#keepaliveTimer?.cancel();
  }

  #keepaliveFired(): void {
    this.keepalive()
      .catch((error: unknown) => {
        this.#log.warn({ err: error }, "keepalive request failed");
        // Rank-side failures are already in the ranks' error files; keep the rest.
        if (!(error instanceof RankError) && error instanceof MultirankError) this.#ledger.record(error);
      })
      .finally(() => this.maybeStartKeepalive());
  }

  /**
   * The runner's ZeroMQ ROUTER socket (fal's `get_zmq_socket`), while running.
   * @throws StateError when not running, or when the control channel is the
   * unix stream socket (the default on one host; pass `transport: "ipc"` or
   * `"tcp"` for a ZeroMQ socket).
   */
  getZmqSocket(): Router {
    const session = this.#session;
    if (!session || session.closed) throw new StateError(`runner is ${this.#state}; there is no socket`);
    const socket = session.zmqSocket;
    if (!socket) throw new StateError('the control channel is a unix stream socket, not ZeroMQ; pass transport: "ipc" or "tcp" to get a ZeroMQ socket');
    return socket;
  }

  /** Closes the control socket (fal's `close_zmq_socket`); ranks are then unreachable. Prefer `stop()`. */
  closeZmqSocket(): void {
    this.#session?.closeChannel();
  }

  /**
   * Stops gracefully: ranks finish the requests they have, run `teardown()`
   * and exit; ranks still running after `timeout` seconds get SIGTERM, then
   * SIGKILL. Idempotent. Leaves no child process.
   */
  stop(options: StopOptions = {}): Promise<void> {
    return this.#stopOnce(options, false);
  }

  /** `forRestart` (attach mode): the joined ranks exit with RESTART_EXIT_CODE, so their launcher starts them again. */
  #stopOnce(options: StopOptions, forRestart: boolean): Promise<void> {
    const timeoutMs = timeoutToMs(options.timeout ?? 10, "stop options.timeout");
    this.#stopping ??= this.#stop(timeoutMs, forRestart).finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(timeoutMs: number, forRestart: boolean): Promise<void> {
    this.maybeCancelKeepalive();
    const session = this.#session;
    if (!session || session.closed) {
      if (this.#state !== "idle") this.#setState("stopped");
      return;
    }
    this.#setState("stopping");
    session.sendToConnected(session.codec.pack({ t: "teardown", ...(forRestart && session.attached ? { restart: true } : {}) } satisfies RunnerMessage));
    await session.close(undefined, timeoutMs);
    this.#setState("stopped");
  }

  /** Kills every rank now (SIGKILL) and releases everything. In-flight requests fail. */
  async terminate(): Promise<void> {
    this.maybeCancelKeepalive();
    const session = this.#session;
    if (session && !session.closed) {
      this.#setState("stopping");
      await session.close("SIGKILL");
    }
    if (this.#state !== "idle") this.#setState("stopped");
  }

  /** Stops (gracefully) and starts again with the same setup arguments. */
  async restart(options: StopOptions = {}): Promise<void> {
    await this.#stopOnce(options, this.#attach !== undefined);
    if (!this.#attach) return this.#startAgain();
    // Attach mode: the ranks exited with RESTART_EXIT_CODE; only their
    // launcher can start them again (torchrun's restarts, a Job's or a Pod's policy).
    try {
      await this.#startAgain();
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      throw new TimeoutError(`restart: the launcher did not restart the ranks: ${error.message}`, error.timeoutMs ?? 0, { cause: error });
    }
  }

  /** `await using runner = ...` stops it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #setState(state: RunnerState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }

  /** Starts with the last start's setup arguments and timeout. */
  #startAgain(): Promise<void> {
    return this.start({ ...this.#setupArgs, ...(this.#startTimeoutSeconds === undefined ? {} : { timeout: this.#startTimeoutSeconds }) });
  }

  async #onRankExit(session: ControlSession, rank: RankProcess, exit: RankExit): Promise<void> {
    const expected = session.closed || session.closing || this.#state === "stopping";
    this.emit("rankExit", { ...exit, expected });
    if (expected || session !== this.#session) return;
    const error: MemoryLimitError | RankExitError = await session.exitError(rank, exit, this.#options.memoryLimitMiB);
    if (session.closed) return;
    // A rank whose group broke because the session already failed (a peer crashed) adds nothing.
    if (session.failure && exit.code === GROUP_BROKEN_EXIT_CODE) return;
    // A broken process group (not a crash) is recovered by restarting the ranks, once ready before.
    const restart = this.#state === "ready" && restartsAfter(exit, session.ranks.filter((r) => r !== rank).map((r) => r.exit));
    if (restart) {
      const why = (session.errors.fatal(exit.rank)?.cause as Error | undefined)?.message ?? "see its error";
      this.#log.error({ rank: exit.rank, code: exit.code }, `process group broken on rank ${exit.rank}: ${why}; restarting the ranks`);
    } else if (error instanceof MemoryLimitError) {
      this.#log.error({ rank: exit.rank, limitMiB: error.limitMiB, via: error.via, code: exit.code, signal: exit.signal }, "rank went over its memory limit and died; stopping the others");
    } else this.#log.error({ rank: exit.rank, code: exit.code, signal: exit.signal }, "rank exited unexpectedly; stopping the others");
    this.#ledger.record(error);
    session.failure ??= error;
    this.maybeCancelKeepalive();
    // The dead rank's error file is complete now: read it before anyone asks.
    session.errors.harvest();
    session.failStartup(error);
    if (this.#state === "starting") return; // start() closes the session itself
    this.emit("failure", error);
    this.#setState("failed");
    // Fail what is in flight now, not once the other ranks have exited.
    session.failRequests(error);
    // A group with a dead rank would hang in its next collective: stop the rest.
    await session.close("SIGTERM");
    if (restart) await this.#restartBrokenGroup();
  }

  /** Starts the ranks again after a broken process group, unless someone stopped or restarted the runner meanwhile. */
  async #restartBrokenGroup(): Promise<void> {
    if (this.#state !== "failed" || this.#stopping) return;
    try {
      await this.#startAgain();
    } catch (error) {
      this.#log.error({ err: error }, "restarting the ranks after a broken process group failed");
      if (error instanceof MultirankError) this.#ledger.record(error);
    }
  }

  /** A rank stopped answering heartbeats: handled like a crash, except that nothing can be asked of it. */
  async #onRankHung(session: ControlSession, rank: number, silentMs: number): Promise<void> {
    const host = session.joined(rank)?.host;
    const error = new RankHungError(rank, silentMs, this.#options.heartbeatTimeoutMs, host);
    await this.#onRankLost(session, rank, error, "rank is hung (no heartbeat); stopping the group", { silentMs: Math.round(silentMs) });
  }

  /** A rank is gone (hung, or a joined rank's fatal error): the group fails with `error`. */
  async #onRankLost(session: ControlSession, rank: number, error: MultirankError, why: string, fields: Record<string, unknown> = {}): Promise<void> {
    if (session.closed || session.closing || session !== this.#session) return;
    const host = session.joined(rank)?.host;
    this.#log.error({ rank, ...fields, ...(host === undefined ? {} : { host }) }, why);
    this.#ledger.record(error);
    session.failure ??= error;
    // A joined rank can go silent while the group sets up: start() ends the session.
    if (this.#state === "starting") return session.failStartup(error);
    this.maybeCancelKeepalive();
    this.emit("failure", error);
    this.#setState("failed");
    session.failRequests(error);
    // A hung event loop cannot run a teardown, and may not even run a SIGTERM handler.
    await session.close("SIGKILL");
  }
}

/** What a stream yields without `asTextEvents`: the request asked the ranks for values, so items arrive as data. */
function toValue(event: StreamEvent): unknown {
  return event.data;
}

/**
 * What a stream yields with `asTextEvents`: the ranks made each item a text
 * event already (it passes through untouched); only the final return value,
 * which `invoke` also reads, is formatted here.
 */
function toTextEvent(event: StreamEvent): Buffer {
  if (event.kind === "item" && event.event) return Buffer.from(event.event.buffer, event.event.byteOffset, event.event.byteLength);
  return formatTextEvent(event.data);
}
