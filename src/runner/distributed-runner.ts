import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { Logger } from "pino";
import { curveKeyPair, type Router } from "zeromq";
import { pack, unpack } from "../codec/packer.js";
import { formatTextEvent, parseTextEvent } from "../codec/text-events.js";
import { childEnvForPlan, planDevices, type RankDevicePlan, type WorkerDevice } from "../devices/index.js";
import {
  AbortError,
  MemoryLimitError,
  MessageTooLargeError,
  MultirankError,
  NativeError,
  RankError,
  RankExitError,
  RankGroupError,
  RankHungError,
  StateError,
  TimeoutError,
  TransportError,
} from "../errors.js";
import { GROUP_BROKEN_EXIT_CODE, RANK_ENV, type ForwardedLog, type RankMessage, type RunnerMessage } from "../transport/messages.js";
import { openRunnerChannel, type RunnerChannel } from "../transport/control-channel.js";
import { offloadLargeBuffers } from "../transport/shared-payload.js";
import { runDirPrefix, sweepLeftovers, type SharedSegment } from "../shm/index.js";
import { joinFrames } from "../transport/frame-pieces.js";
import { deferred, type Deferred } from "../util/deferred.js";
import { defaultLogger } from "../util/logger.js";
import type { AnyWorkerClass, WorkerClass, WorkerInput, WorkerOutput } from "../worker/distributed-worker.js";
import { setLongTimeout, type LongTimer } from "../util/timers.js";
import { readErrorRecords } from "../worker/error-file.js";
import { chooseControlEndpoint, findFreePort, isSameHostEndpoint } from "./endpoints.js";
import { restartsAfter } from "./group-recovery.js";
import { HeartbeatMonitor } from "./heartbeat-monitor.js";
import { KeepaliveTimer } from "./keepalive-timer.js";
import { resolveRunnerOptions, timeoutToMs, type DistributedRunnerOptions, type ResolvedRunnerOptions } from "./options.js";
import { PendingRequest, type StreamEvent } from "./pending-request.js";
import { rankEntry } from "./rank-entry.js";
import { RankProcess, type RankExit } from "./rank-process.js";

/** Where a runner is in its life. */
export type RunnerState = "idle" | "starting" | "ready" | "stopping" | "stopped" | "failed";

/** Options of {@link DistributedRunner.start}; any other field is passed to every rank's `setup(args)`. */
export interface StartOptions {
  /** Seconds to wait for every rank to be ready. @default 1800 */
  timeout?: number;
  /** Aborting it stops the start and the ranks. */
  signal?: AbortSignal;
  [setupArg: string]: unknown;
}

/** Options of {@link DistributedRunner.invoke}. */
export interface InvokeOptions {
  /** Seconds before the request fails with a `TimeoutError` and is cancelled at the ranks. @default the runner's `timeout` */
  timeout?: number;
  /** Aborting it cancels the request at every rank. */
  signal?: AbortSignal;
  /** Called with each `ctx.progress(data)` of rank 0. */
  onProgress?: (data: unknown) => void;
  /** Called with each record a rank logs through `ctx.log`. */
  onLog?: (log: ForwardedLog) => void;
}

/** Options of {@link DistributedRunner.stream}. */
export interface StreamOptions extends InvokeOptions {
  /** Seconds allowed between two streamed results. @default no limit */
  streamingTimeout?: number;
  /** Yield ready-to-send Server-Sent Events (`data: <json>\n\n` bytes) instead of values. @default false */
  asTextEvents?: boolean;
}

/** Options of {@link DistributedRunner.stop}. */
export interface StopOptions {
  /** Seconds for ranks to finish their requests and `teardown()` before SIGTERM, then SIGKILL. @default 10 */
  timeout?: number;
}

/** Events a runner emits. */
export interface RunnerEvents {
  state: [state: RunnerState];
  rankExit: [exit: RankExit & { expected: boolean }];
  /** The runner failed while ready (a rank died or hung), with why; `state` turns `failed` right after. */
  failure: [error: MultirankError];
}

/** Everything one `start()` creates and `stop()` removes. */
interface Session {
  runDir: string;
  /** The control channel: a unix stream socket on one host, else ZeroMQ. */
  channel: RunnerChannel;
  endpoint: string;
  token: string;
  ranks: RankProcess[];
  routingIds: Buffer[];
  rankOf: Map<string, number>;
  connected: Set<number>;
  ready: Set<number>;
  devices: WorkerDevice[];
  setupErrors: MultirankError[];
  startup: Deferred<void>;
  requests: Map<number, PendingRequest>;
  /** Shared-memory segments of requests still in flight; unlinked when they finish or the session ends. */
  segments: Set<SharedSegment>;
  fatal: Map<number, RankError>;
  errorFiles: string[];
  failure: MultirankError | undefined;
  closed: boolean;
  /** The runner is ending this session on purpose: rank exits are expected. */
  closing: boolean;
  cleanup: Promise<void> | undefined;
  receiveLoop: Promise<void>;
  /** Watches the ranks' event loops once the group is ready (unless heartbeats are off). */
  heartbeats: HeartbeatMonitor | undefined;
}

const SIGTERM_GRACE_MS = 2000;
/** How long messages a dead rank sent before it died get to arrive before its requests fail. */
const LAST_MESSAGES_GRACE_MS = 50;

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
  #state: RunnerState = "idle";
  #session: Session | undefined;
  #setupArgs: Record<string, unknown> = {};
  #setupMessage: Buffer | undefined;
  #startTimeoutSeconds: number | undefined;
  #nextRequestId = 1;
  #runnerErrors: MultirankError[] = [];
  #harvested: MultirankError[] = [];
  #errorCursor = new Map<string, number>();
  #stopping: Promise<void> | undefined;
  #foreignMessages = 0;

  /**
   * @throws {ValidationError} when an option is invalid; the message names it.
   */
  constructor(options: DistributedRunnerOptions) {
    super();
    this.#options = resolveRunnerOptions(options);
    this.#log = (this.#options.logger ?? defaultLogger()).child({ component: "runner" });
    const interval = this.#options.keepaliveIntervalMs;
    if (interval !== undefined) this.#keepaliveTimer = new KeepaliveTimer(interval, () => this.#keepaliveFired());
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
    return (this.#session?.ranks ?? []).map((rank) => rank.pid ?? -1);
  }

  /** The control endpoint the ranks connect to: `unix:<path>` by default, or ZeroMQ's `ipc://...` / `tcp://...`. */
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
    // Packed once, before any process exists: an argument that cannot be sent fails here.
    this.#setupMessage = pack({ t: "setup", args: setupArgs } satisfies RunnerMessage, "setup arguments", this.#options.maxMessageBytes);
    this.#setupArgs = setupArgs;
    this.#startTimeoutSeconds = timeout;
    this.#setState("starting");
    let session: Session;
    try {
      session = await this.#openSession();
    } catch (error) {
      this.#setState("failed");
      throw error;
    }
    const timer = setLongTimeout(timeoutMs, () => {
      const missing = [...Array(this.#options.worldSize).keys()].filter((rank) => !session.ready.has(rank));
      session.startup.reject(new TimeoutError(`start timed out after ${timeout} s; ranks not ready: ${missing.join(", ")}`, timeoutMs));
    });
    const onAbort = (): void => session.startup.reject(new AbortError("start was aborted", { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await session.startup.promise;
    } catch (error) {
      await this.#closeSession(session, "SIGKILL");
      this.#setState("failed");
      throw error;
    } finally {
      timer.cancel();
      signal?.removeEventListener("abort", onAbort);
    }
    this.#startHeartbeats(session);
    this.#setState("ready");
    this.maybeStartKeepalive();
  }

  #startHeartbeats(session: Session): void {
    const timeoutMs = this.#options.heartbeatTimeoutMs;
    if (timeoutMs === 0) return;
    session.heartbeats = new HeartbeatMonitor(this.#options.worldSize, timeoutMs, {
      ping: (n) => {
        if (session.closed) return;
        const bytes = pack({ t: "ping", n } satisfies RunnerMessage);
        for (const rank of session.connected) session.channel.send([session.routingIds[rank]!, bytes]).catch(() => {});
      },
      hung: (rank, silentMs) => void this.#onRankHung(session, rank, silentMs),
    });
    session.heartbeats.start();
  }

  /** A rank stopped answering heartbeats: handled like a crash, except that nothing can be asked of it. */
  async #onRankHung(session: Session, rank: number, silentMs: number): Promise<void> {
    if (session.closed || session.closing || session !== this.#session) return;
    const error = new RankHungError(rank, silentMs, this.#options.heartbeatTimeoutMs);
    this.#log.error({ rank, silentMs: Math.round(silentMs) }, "rank is hung (no heartbeat); stopping the group");
    this.#runnerErrors.push(error);
    session.failure ??= error;
    this.maybeCancelKeepalive();
    this.emit("failure", error);
    this.#setState("failed");
    for (const request of session.requests.values()) request.fail(error);
    // A hung event loop cannot run a teardown, and may not even run a SIGTERM handler.
    await this.#closeSession(session, "SIGKILL");
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
    const { request } = this.#submit(payload, false, options);
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
    const { request, session } = this.#submit(payload, true, options);
    const events = request.events!;
    const asText = options.asTextEvents === true;
    try {
      for (;;) {
        let timer: LongTimer | undefined;
        if (streamingTimeoutMs !== undefined && events.size === 0) {
          timer = setLongTimeout(streamingTimeoutMs, () => {
            const error = new TimeoutError(`request ${request.id}: no streaming result for ${options.streamingTimeout} s`, streamingTimeoutMs);
            this.#cancel(session, request, error, "timeout");
          });
        }
        let next: IteratorResult<StreamEvent>;
        try {
          next = await request.nextEvent();
        } finally {
          timer?.cancel();
        }
        if (next.done) return;
        yield asText ? toTextEvent(next.value) : toValue(next.value);
      }
    } finally {
      if (!request.settled) this.#cancel(session, request, new AbortError(`stream of request ${request.id} was closed by its consumer`), "aborted");
    }
  }

  #submit(payload: unknown, streaming: boolean, options: InvokeOptions): { request: PendingRequest; session: Session } {
    const session = this.#requireReady();
    const timeoutMs = options.timeout === undefined ? this.#options.timeoutMs : timeoutToMs(options.timeout, "options.timeout");
    const { signal } = options;
    if (signal?.aborted) throw new AbortError("the request was aborted before it was sent", { cause: signal.reason });
    const id = this.#nextRequestId++;
    // Large buffers go through one shared-memory segment instead of the socket
    // (once, not once per rank); only on one host, where ipc is the transport.
    const shared = isSameHostEndpoint(session.endpoint) ? offloadLargeBuffers(payload) : { payload, segment: undefined, sharedBytes: 0, retained: [] };
    const message: RunnerMessage = { t: "req", id, payload: shared.payload, streaming };
    // Packed once, before anything is sent: a bad payload changes nothing.
    let bytes: Buffer;
    try {
      bytes = pack(message, "payload", this.#options.maxMessageBytes - shared.sharedBytes);
    } catch (error) {
      releaseSegment(shared.segment);
      if (error instanceof MessageTooLargeError && shared.sharedBytes > 0) {
        throw new MessageTooLargeError("payload", error.size + shared.sharedBytes, this.#options.maxMessageBytes);
      }
      throw error;
    }
    // The ranks map the segment by name; this process needs no mapping of its own.
    shared.segment?.close();
    if (shared.segment) session.segments.add(shared.segment);
    const ranks = [...Array(this.#options.worldSize).keys()];
    const request = new PendingRequest(id, streaming, ranks, {
      cancelAtRanks: (reason) => this.#sendCancel(session, request, reason),
      grantCredit: (bytes) => {
        // Only rank 0's results are forwarded, so only rank 0 is held by the window.
        if (session.closed || !request.waitingOn.has(0)) return;
        session.channel.send([session.routingIds[0]!, pack({ t: "credit", id, bytes } satisfies RunnerMessage)]).catch(() => {});
      },
      creditThreshold: Math.max(1, Math.floor(this.#options.streamHighWaterMark / 4)),
      finished: () => {
        session.requests.delete(id);
        // Reachable until here: collecting it would unlink a name a rank may not have mapped yet.
        shared.retained.length = 0;
        // Every rank has answered, so every rank has mapped it: the name can go.
        if (shared.segment) {
          session.segments.delete(shared.segment);
          releaseSegment(shared.segment);
        }
      },
      onProgress: options.onProgress,
      onLog: options.onLog,
    });
    session.requests.set(id, request);
    this.maybeResetKeepalive();
    const timer = setLongTimeout(timeoutMs, () => {
      const seconds = options.timeout ?? this.#options.timeoutMs / 1000;
      this.#cancel(session, request, new TimeoutError(`request ${id} timed out after ${seconds} s`, timeoutMs), "timeout");
    });
    const onAbort = (): void => this.#cancel(session, request, new AbortError(`request ${id} was aborted`, { cause: signal?.reason }), "aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    request.onSettled(() => {
      timer.cancel();
      signal?.removeEventListener("abort", onAbort);
      this.maybeResetKeepalive();
    });
    for (const rank of ranks) {
      session.channel.send([session.routingIds[rank]!, bytes]).catch((error: unknown) => {
        request.fail(new TransportError(`could not send request ${id} to rank ${rank}`, { rank, cause: error }));
        // That rank will never answer; the others must not wait for it in a collective.
        request.forgetRank(rank);
        this.#sendCancel(session, request, "failed");
      });
    }
    return { request, session };
  }

  #cancel(session: Session, request: PendingRequest, error: MultirankError, reason: "aborted" | "timeout"): void {
    if (request.settled) return;
    request.fail(error);
    this.#sendCancel(session, request, reason);
  }

  #sendCancel(session: Session, request: PendingRequest, reason: "aborted" | "timeout" | "failed"): void {
    if (session.closed) return;
    const bytes = pack({ t: "cancel", id: request.id, reason } satisfies RunnerMessage);
    for (const rank of request.waitingOn) {
      session.channel.send([session.routingIds[rank]!, bytes]).catch(() => {});
    }
  }

  #requireReady(): Session {
    const session = this.#session;
    if (this.#state === "ready" && session && !session.closed) return session;
    if (this.#state === "failed") {
      throw new StateError("runner has failed; call restart() (see gatherErrors() for why)", { cause: this.#session?.failure ?? this.#runnerErrors.at(-1) });
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
    if (this.#session && !this.#session.closed) this.#harvestErrorFiles(this.#session);
    const errors = [...this.#harvested, ...this.#runnerErrors];
    this.#harvested = [];
    this.#runnerErrors = [];
    return errors;
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
        if (!(error instanceof RankError) && error instanceof MultirankError) this.#runnerErrors.push(error);
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
    const socket = session.channel.zmqSocket;
    if (!socket) throw new StateError('the control channel is a unix stream socket, not ZeroMQ; pass transport: "ipc" or "tcp" to get a ZeroMQ socket');
    return socket;
  }

  /** Closes the control socket (fal's `close_zmq_socket`); ranks are then unreachable. Prefer `stop()`. */
  closeZmqSocket(): void {
    const session = this.#session;
    if (session && !session.channel.closed) session.channel.close();
  }

  /**
   * Stops gracefully: ranks finish the requests they have, run `teardown()`
   * and exit; ranks still running after `timeout` seconds get SIGTERM, then
   * SIGKILL. Idempotent. Leaves no child process.
   */
  stop(options: StopOptions = {}): Promise<void> {
    const timeoutMs = timeoutToMs(options.timeout ?? 10, "stop options.timeout");
    this.#stopping ??= this.#stop(timeoutMs).finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.maybeCancelKeepalive();
    const session = this.#session;
    if (!session || session.closed) {
      if (this.#state !== "idle") this.#setState("stopped");
      return;
    }
    this.#setState("stopping");
    const teardown = pack({ t: "teardown" } satisfies RunnerMessage);
    for (const rank of session.connected) session.channel.send([session.routingIds[rank]!, teardown]).catch(() => {});
    await this.#closeSession(session, undefined, timeoutMs);
    this.#setState("stopped");
  }

  /** Kills every rank now (SIGKILL) and releases everything. In-flight requests fail. */
  async terminate(): Promise<void> {
    this.maybeCancelKeepalive();
    const session = this.#session;
    if (session && !session.closed) {
      this.#setState("stopping");
      await this.#closeSession(session, "SIGKILL");
    }
    if (this.#state !== "idle") this.#setState("stopped");
  }

  /** Stops (gracefully) and starts again with the same setup arguments. */
  async restart(options: StopOptions = {}): Promise<void> {
    await this.stop(options);
    await this.start({ ...this.#setupArgs, ...(this.#startTimeoutSeconds === undefined ? {} : { timeout: this.#startTimeoutSeconds }) });
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

  async #openSession(): Promise<Session> {
    const options = this.#options;
    // What killed runners and ranks left (run dirs, /dev/shm segments, link
    // sockets): nobody else would ever remove it. Synchronous and cheap.
    const swept = sweepLeftovers();
    if (swept.tmp.length + swept.shm.length > 0) this.#log.debug({ swept }, "removed leftovers of processes that are gone");
    // The owner's pid and start time in the name tell a later sweep whether it is still in use.
    const runDir = mkdtempSync(join(tmpdir(), runDirPrefix()));
    const endpoint = chooseControlEndpoint({ transport: options.transport, workerAddr: options.workerAddr, workerPort: options.workerPort, runDir });
    const serverKeys = endpoint.secure ? curveKeyPair() : undefined;
    const rankKeys = serverKeys ? Array.from({ length: options.worldSize }, () => curveKeyPair()) : [];
    let channel: RunnerChannel;
    try {
      // A little over the limit: the header around a maximal payload must still fit.
      channel = await openRunnerChannel(endpoint.bind, {
        maxMessageBytes: options.maxMessageBytes + 64 * 1024,
        curveSecretKey: serverKeys?.secretKey,
        clientKeys: rankKeys.map((keys) => keys.publicKey),
        onDenied: (address, why) => this.#foreign(address, `a connection with ${why}`),
        log: this.#log,
      });
    } catch (error) {
      rmSync(runDir, { recursive: true, force: true });
      throw new TransportError(`could not bind the control socket at ${endpoint.bind}`, { cause: error });
    }
    const boundEndpoint = channel.endpoint || endpoint.bind;
    let plans: RankDevicePlan[] | undefined;
    let masterPort = options.masterPort;
    try {
      plans = this.#planDevices();
      if (masterPort === 0) masterPort = await findFreePort(options.masterAddr);
    } catch (error) {
      channel.close();
      rmSync(runDir, { recursive: true, force: true });
      throw error;
    }
    const nonce = randomBytes(4).toString("hex");
    // New for every start, and only in the ranks' environment (which other users cannot read).
    const groupSecret = randomBytes(32).toString("hex");
    const session: Session = {
      runDir,
      channel,
      endpoint: boundEndpoint,
      token: randomBytes(16).toString("hex"),
      ranks: [],
      routingIds: [],
      rankOf: new Map(),
      connected: new Set(),
      ready: new Set(),
      devices: [],
      setupErrors: [],
      startup: deferred<void>(),
      requests: new Map(),
      segments: new Set(),
      fatal: new Map(),
      errorFiles: [],
      failure: undefined,
      closed: false,
      closing: false,
      cleanup: undefined,
      receiveLoop: Promise.resolve(),
      heartbeats: undefined,
    };
    session.startup.promise.catch(() => {});
    this.#session = session;
    session.receiveLoop = this.#receive(session);
    const entry = rankEntry();
    // V8's own limit works everywhere; the cgroup (where we may make one) also catches memory outside the heap.
    const memoryArgs = options.memoryLimitMiB === undefined ? [] : [`--max-old-space-size=${options.memoryLimitMiB}`];
    const workerModule = options.worker.startsWith("file:") || isAbsolute(options.worker) ? options.worker : resolve(options.cwd, options.worker);
    for (let rank = 0; rank < options.worldSize; rank++) {
      const routingId = `r${rank}-${nonce}`;
      session.routingIds.push(Buffer.from(routingId));
      session.rankOf.set(routingId, rank);
      const errorFile = join(runDir, `rank-${rank}.errors.jsonl`);
      session.errorFiles.push(errorFile);
      const keys = rankKeys[rank];
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...options.env,
        ...(plans ? childEnvForPlan(plans[rank]!) : {}),
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(options.worldSize),
        LOCAL_WORLD_SIZE: String(options.worldSize),
        MASTER_ADDR: options.masterAddr,
        MASTER_PORT: String(masterPort),
        [RANK_ENV.controlEndpoint]: boundEndpoint,
        [RANK_ENV.routingId]: routingId,
        [RANK_ENV.token]: session.token,
        [RANK_ENV.workerModule]: workerModule,
        [RANK_ENV.errorFile]: errorFile,
        [RANK_ENV.maxMessageBytes]: String(options.maxMessageBytes),
        [RANK_ENV.logLevel]: this.#log.level,
        [RANK_ENV.streamWindow]: String(options.streamHighWaterMark),
        [RANK_ENV.groupSecret]: groupSecret,
        ...(options.deathPipe ? { [RANK_ENV.deathPipeFd]: "3" } : {}),
        ...(serverKeys && keys
          ? { [RANK_ENV.curveServerKey]: serverKeys.publicKey, [RANK_ENV.curvePublicKey]: keys.publicKey, [RANK_ENV.curveSecretKey]: keys.secretKey }
          : {}),
      };
      const process_ = new RankProcess({
        rank,
        execPath: process.execPath,
        args: [...entry.execArgv, ...options.nodeArgs, ...memoryArgs, entry.script],
        env,
        cwd: options.cwd,
        logger: this.#log.child({ rank }),
        stderrTailLines: options.stderrTailLines,
        deathPipe: options.deathPipe,
        ...(options.memoryLimitMiB === undefined ? {} : { memoryLimitBytes: options.memoryLimitMiB * 1024 * 1024, cgroupName: `multirank-${process.pid}-${nonce}-r${rank}` }),
      });
      session.ranks.push(process_);
      void process_.exited
        .then((exit) => this.#onRankExit(session, process_, exit))
        .catch((error: unknown) => this.#log.error({ err: error, rank }, "handling a rank exit failed"));
    }
    return session;
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

  async #receive(session: Session): Promise<void> {
    try {
      const maxBytes = this.#options.maxMessageBytes + 64 * 1024;
      for await (const frames of session.channel) {
        const [identity, ...pieces] = frames;
        const rank = identity ? session.rankOf.get(identity.toString("latin1")) : undefined;
        if (rank === undefined || pieces.length === 0) {
          this.#foreign(identity?.toString("hex"), "unknown peer");
          continue;
        }
        // Over tcp a rank sends large messages in pieces (frame-pieces.ts).
        if (pieces.reduce((sum, piece) => sum + piece.byteLength, 0) > maxBytes) {
          this.#foreign(identity.toString("hex"), `a message over maxMessageBytes from rank ${rank}'s identity`);
          continue;
        }
        const body = joinFrames(pieces);
        let message: RankMessage;
        try {
          message = unpack<RankMessage>(body, "control message");
          if (typeof message !== "object" || message === null || typeof message.t !== "string") throw new Error("not a control message");
        } catch {
          this.#foreign(identity.toString("hex"), `undecodable message from rank ${rank}'s identity`);
          continue;
        }
        if (message.t !== "hello" && !session.connected.has(rank)) {
          this.#foreign(identity.toString("hex"), `message before hello from rank ${rank}'s identity`);
          continue;
        }
        session.heartbeats?.heard(rank);
        try {
          this.#onMessage(session, rank, message, body.byteLength);
        } catch (error) {
          // One message must never end the loop: everything in flight depends on it.
          this.#log.error({ err: error, rank, type: message.t }, "handling a control message failed");
        }
      }
    } catch (error) {
      if (!session.closed) this.#log.error({ err: error }, "control socket receive loop failed");
    }
  }

  #foreign(peer: string | undefined, why: string): void {
    // Logged, never acted on; rate-limited so a noisy peer cannot flood the log.
    this.#foreignMessages++;
    if (this.#foreignMessages <= 10 || this.#foreignMessages % 1000 === 0) {
      this.#log.warn({ peer, count: this.#foreignMessages }, `ignored a message on the control socket: ${why}`);
    }
  }

  #onMessage(session: Session, rank: number, message: RankMessage, bytes: number): void {
    switch (message.t) {
      case "hello": {
        if (message.token !== session.token) {
          this.#foreign(session.routingIds[rank]?.toString("hex"), "hello with a wrong token");
          return;
        }
        session.connected.add(rank);
        session.channel.send([session.routingIds[rank]!, this.#setupMessage!]).catch((error: unknown) => {
          session.startup.reject(new TransportError(`could not send setup to rank ${rank}`, { rank, cause: error }));
        });
        return;
      }
      case "ready":
        session.ready.add(rank);
        session.devices[rank] = message.device as WorkerDevice;
        this.#checkStartup(session);
        return;
      case "setup-failed":
        session.setupErrors.push(new RankError(message.error, rank, "setup"));
        if (session.setupErrors.length === 1) {
          // Give the other ranks a moment to report their own setup errors too.
          setTimeout(() => this.#failStartup(session), 1000).unref();
        }
        this.#checkStartup(session);
        return;
      case "fatal":
        session.fatal.set(rank, new RankError(message.error, rank, "process"));
        return;
      case "teardown-done":
      case "pong":
        return;
      default:
        this.#routeToRequest(session, rank, message, bytes);
    }
  }

  /** `bytes`: the message's size on the wire, counted against the request's stream window. */
  #routeToRequest(session: Session, rank: number, message: RankMessage, bytes: number): void {
    if (!("id" in message)) return;
    const request = session.requests.get(message.id);
    if (!request) return; // Finished or never ours: nothing may reach another caller.
    switch (message.t) {
      case "items":
        request.items(message.items, bytes);
        return;
      case "item-error":
        request.itemError(rank, message.error);
        return;
      case "progress":
        request.progress(message.data);
        return;
      case "log":
        request.log(message.log);
        return;
      case "done":
        request.rankDone(rank, message.ok ? { ok: true, result: message.result, hasResult: message.hasResult } : { ok: false, error: message.error, cancelled: message.cancelled });
        return;
    }
  }

  #checkStartup(session: Session): void {
    const reported = session.ready.size + session.setupErrors.length;
    if (reported < this.#options.worldSize) return;
    if (session.setupErrors.length > 0) this.#failStartup(session);
    else session.startup.resolve();
  }

  #failStartup(session: Session): void {
    const errors = session.setupErrors;
    if (errors.length === 0) return;
    session.startup.reject(errors.length === 1 ? errors[0] : new RankGroupError(`${errors.length} ranks failed setup`, errors));
  }

  async #onRankExit(session: Session, rank: RankProcess, exit: RankExit): Promise<void> {
    const expected = session.closed || session.closing || this.#state === "stopping";
    this.emit("rankExit", { ...exit, expected });
    if (expected || session !== this.#session) return;
    const stderrTail = await rank.stderrTail();
    // What the rank sent just before dying may still be in the socket: let it land first.
    await new Promise((resolve) => setTimeout(resolve, LAST_MESSAGES_GRACE_MS));
    const limitMiB = this.#options.memoryLimitMiB;
    const overLimit = limitMiB === undefined ? undefined : rank.memoryLimitHit();
    const error =
      limitMiB !== undefined && overLimit
        ? new MemoryLimitError(exit.rank, limitMiB, overLimit, { exitCode: exit.code, signal: exit.signal, stderrTail }, { cause: session.fatal.get(exit.rank) })
        : new RankExitError(exit.rank, exit.code, exit.signal, stderrTail, { cause: session.fatal.get(exit.rank) });
    if (session.closed) return;
    // A rank whose group broke because the session already failed (a peer crashed) adds nothing.
    if (session.failure && exit.code === GROUP_BROKEN_EXIT_CODE) return;
    // A broken process group (not a crash) is recovered by restarting the ranks, once ready before.
    const restart = this.#state === "ready" && restartsAfter(exit, session.ranks.filter((r) => r !== rank).map((r) => r.exit));
    if (restart) {
      const why = (session.fatal.get(exit.rank)?.cause as Error | undefined)?.message ?? "see its error";
      this.#log.error({ rank: exit.rank, code: exit.code }, `process group broken on rank ${exit.rank}: ${why}; restarting the ranks`);
    } else if (error instanceof MemoryLimitError) {
      this.#log.error({ rank: exit.rank, limitMiB: error.limitMiB, via: error.via, code: exit.code, signal: exit.signal }, "rank went over its memory limit and died; stopping the others");
    } else this.#log.error({ rank: exit.rank, code: exit.code, signal: exit.signal }, "rank exited unexpectedly; stopping the others");
    this.#runnerErrors.push(error);
    session.failure ??= error;
    this.maybeCancelKeepalive();
    // The dead rank's error file is complete now: read it before anyone asks.
    this.#harvestErrorFiles(session);
    session.startup.reject(error);
    if (this.#state === "starting") return; // start() closes the session itself
    this.emit("failure", error);
    this.#setState("failed");
    // Fail what is in flight now, not once the other ranks have exited.
    for (const request of session.requests.values()) request.fail(error);
    // A group with a dead rank would hang in its next collective: stop the rest.
    await this.#closeSession(session, "SIGTERM");
    if (restart) await this.#restartBrokenGroup();
  }

  /** Starts the ranks again after a broken process group, unless someone stopped or restarted the runner meanwhile. */
  async #restartBrokenGroup(): Promise<void> {
    if (this.#state !== "failed" || this.#stopping) return;
    try {
      await this.start({ ...this.#setupArgs, ...(this.#startTimeoutSeconds === undefined ? {} : { timeout: this.#startTimeoutSeconds }) });
    } catch (error) {
      this.#log.error({ err: error }, "restarting the ranks after a broken process group failed");
      if (error instanceof MultirankError) this.#runnerErrors.push(error);
    }
  }

  /**
   * Ends a session: waits up to `graceMs` for ranks to exit on their own (after
   * a teardown), else sends `signal` (then SIGKILL), fails what is still in
   * flight, closes the socket, keeps the error files' contents, removes the
   * run directory.
   */
  async #closeSession(session: Session, signal: NodeJS.Signals | undefined, graceMs = 0): Promise<void> {
    session.closing = true;
    session.heartbeats?.stop();
    const allExited = Promise.all(session.ranks.map((rank) => rank.exited));
    if (graceMs > 0 && !(await settlesWithin(allExited, graceMs))) signal ??= "SIGTERM";
    if (signal) {
      for (const rank of session.ranks) rank.kill(signal);
      if (signal !== "SIGKILL" && !(await settlesWithin(allExited, SIGTERM_GRACE_MS))) {
        for (const rank of session.ranks) rank.kill("SIGKILL");
      }
    }
    await allExited;
    session.cleanup ??= this.#releaseSession(session);
    await session.cleanup;
  }

  async #releaseSession(session: Session): Promise<void> {
    session.closed = true;
    session.heartbeats?.stop();
    this.#harvestErrorFiles(session);
    const reason = session.failure ?? new StateError("the runner stopped before the request finished");
    for (const request of session.requests.values()) request.fail(reason);
    session.requests.clear();
    for (const segment of session.segments) releaseSegment(segment);
    session.segments.clear();
    session.startup.reject(reason);
    session.channel.abortSends(new StateError("the control socket is closed"));
    session.channel.close();
    await session.receiveLoop;
    this.#harvestErrorFiles(session);
    for (const file of session.errorFiles) this.#errorCursor.delete(file);
    rmSync(session.runDir, { recursive: true, force: true });
  }

  #harvestErrorFiles(session: Session): void {
    for (const file of session.errorFiles) {
      const records = readErrorRecords(file);
      const seen = this.#errorCursor.get(file) ?? 0;
      for (const record of records.slice(seen)) this.#harvested.push(new RankError(record.error, record.rank, record.phase));
      this.#errorCursor.set(file, records.length);
    }
  }
}

/** Unlinks and unmaps; a segment already gone is not an error here. */
function releaseSegment(segment: SharedSegment | undefined): void {
  if (!segment) return;
  try {
    segment.unlink();
    segment.close();
  } catch {
    // Swept by someone else, or unmapped already: nothing left to free.
  }
}

function toValue(event: StreamEvent): unknown {
  if (event.kind === "item" && event.event) return parseTextEvent(event.event);
  return event.data;
}

function toTextEvent(event: StreamEvent): Buffer {
  if (event.kind === "item" && event.event) return Buffer.from(event.event.buffer, event.event.byteOffset, event.event.byteLength);
  return formatTextEvent(event.data);
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: LongTimer | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setLongTimeout(ms, () => resolve(false));
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    timer?.cancel();
  }
}
