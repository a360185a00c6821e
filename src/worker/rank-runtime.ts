import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import { containsRawImage, encodeImagesIn } from "../codec/images.js";
import type { ProcessGroup } from "../collectives/index.js";
import { requestScopesOf, type RequestScopes } from "../collectives/process-group.js";
import type { WorkerDevice } from "../devices/index.js";
import { AbortError, serializeError, StateError, type RankPhase } from "../errors.js";
import { GROUP_BROKEN_EXIT_CODE, RESTART_EXIT_CODE, type GroupRendezvous, type RankLimits, type RankMessage, type RunnerMessage } from "../transport/messages.js";
import { connectRankChannel, type RankChannel } from "../transport/control-channel.js";
import { holdCachedMappings, keepPayload } from "../transport/shared-payload.js";
import type { CallContext } from "./call-context.js";
import { kBindWorker, type DistributedWorker, type StreamingResultOptions, type WorkerBinding, type WorkerClass } from "./distributed-worker.js";
import { appendErrorRecord } from "../transport/error-file.js";
import { RequestScheduler } from "./request-scheduler.js";
import { RunnerWatchdog } from "./runner-watchdog.js";
import type { RankEnv } from "./rank-env.js";
import { requestLogger, type RequestLogRecord } from "./request-log.js";
import { StreamOutbox } from "./stream-outbox.js";

/** A request while it runs on this rank. */
interface ActiveRequest {
  id: number;
  streaming: boolean;
  controller: AbortController;
  /**
   * Stream items, progress and item errors, in order; `done` waits for it.
   * Made on first use: most requests never stream, and a request's cost on
   * the hot path is what a rank pays at every invoke.
   */
  stream: StreamOutbox | undefined;
  asTextEvents: boolean | undefined;
}

/** What a rank knows of one request from its `req` message. */
interface RequestMessage {
  id: number;
  payload: unknown;
  streaming: boolean;
  asTextEvents: boolean | undefined;
}

/** Exit code of a rank whose runner is gone (also the death pipe's). */
export const RUNNER_GONE_EXIT_CODE = 70;
/** Exit code of a joining rank the runner refused (wrong join string, world size or rank). */
export const JOIN_REFUSED_EXIT_CODE = 2;

/** How the rank runtime is started; the rank main fills it from the environment. */
export interface RankRuntimeOptions {
  env: RankEnv;
  logger: Logger;
  device: WorkerDevice;
  loadWorker: () => Promise<WorkerClass>;
  /** `rendezvous`: where a joined group meets, from the runner's `setup` (attach mode). */
  createGroup: (rendezvous?: GroupRendezvous) => Promise<ProcessGroup>;
  /** Hears why the runner refused this rank's hello, before it exits with {@link JOIN_REFUSED_EXIT_CODE}. */
  refused?: (reason: string) => void;
  /** Hears why a joined rank gives up on a silent runner, before it exits with {@link RUNNER_GONE_EXIT_CODE}. */
  runnerGone?: (why: string) => void;
  /** Called once the runtime wants the process to end, with the exit code. */
  exit: (code: number) => void;
}

/**
 * The rank side of the control protocol: one connection to the runner, one
 * worker instance, requests run in the runner's order.
 */
export class RankRuntime {
  readonly #env: RankEnv;
  readonly #log: Logger;
  readonly #options: RankRuntimeOptions;
  /** The connection to the runner: a unix stream socket, or ZeroMQ (across hosts, or when asked for). */
  readonly #channel: RankChannel;
  readonly #active = new Map<number, ActiveRequest>();
  // The request an addStreamingResult belongs to is the one whose call() it
  // runs under, async context included: a loop a finished request left behind
  // must not stream into the next request (a "current request" field would).
  readonly #current = new AsyncLocalStorage<ActiveRequest>();
  #scheduler = new RequestScheduler(1);
  #worker: DistributedWorker<unknown, unknown, object> | undefined;
  #group: ProcessGroup | undefined;
  /** Ties the group's collectives to requests, so one that ends half-way leaves the next in step. */
  #scopes: RequestScopes | undefined;
  #groupBroken = false;
  #setupStarted = false;
  /** Attach mode: notices a runner that went away without a word. */
  #watchdog: RunnerWatchdog | undefined;
  #stopping = false;

  constructor(options: RankRuntimeOptions) {
    this.#options = options;
    this.#env = options.env;
    this.#log = options.logger;
    const { env } = options;
    this.#channel = connectRankChannel({
      routingId: env.routingId,
      endpoint: env.controlEndpoint,
      // A little over the limit: the header around a maximal payload must still fit.
      maxMessageBytes: env.maxMessageBytes + 64 * 1024,
      lingerMs: 2000,
      curve: env.curve,
      log: options.logger,
    });
  }

  /** Connects, says hello, and serves the runner's messages until teardown. */
  async run(): Promise<void> {
    const { rank, worldSize, token, join } = this.#env;
    await this.#send({ t: "hello", rank, pid: process.pid, token, ...(join ? { worldSize, host: join.host, ...(join.group ? { group: join.group } : {}) } : {}) });
    for await (const frames of this.#channel) {
      let message: RunnerMessage;
      try {
        message = this.#channel.codec.unpack<RunnerMessage>(frames[0]!, "control message");
      } catch (error) {
        this.#log.warn({ err: error }, "ignoring a control message that could not be unpacked");
        continue;
      }
      this.#watchdog?.heard();
      // A request holds the shared buffers it was given until it ends.
      this.#handle(message, holdCachedMappings());
    }
    // The connection ended without a teardown: the runner closed it or is gone
    // (a unix socket ends; a ZeroMQ DEALER would wait). A rank nobody can reach
    // must not linger.
    if (!this.#stopping) {
      this.#log.warn("the runner closed the control connection; the rank exits");
      this.#options.exit(RUNNER_GONE_EXIT_CODE);
    }
  }

  /**
   * Sends a `ctx.log` record (from the rank logger's `RequestLogStream`) to the runner for
   * that request's caller, while the request runs.
   */
  forwardLog(record: RequestLogRecord): void {
    const id = record.requestId;
    if (!this.#active.has(id)) return;
    const log = { level: record.level, msg: record.msg, time: record.time, rank: this.#env.rank };
    this.#send({ t: "log", id, log }).catch(() => {});
  }

  /** Records a fatal error (file first, then socket) before the process ends. */
  async reportFatal(error: unknown, groupBroken = false): Promise<void> {
    const serialized = this.#record("process", error);
    await Promise.race([this.#send({ t: "fatal", error: serialized, ...(groupBroken ? { groupBroken } : {}) }).catch(() => {}), new Promise((r) => setTimeout(r, 200))]);
  }

  /** `release` ends the hold on shared buffers the message came with (only a request keeps it). */
  #handle(message: RunnerMessage, release: () => void): void {
    if (message.t !== "req") release();
    switch (message.t) {
      case "setup":
        if (!this.#setupStarted) {
          this.#setupStarted = true;
          if (this.#env.join && message.runnerSilenceMs !== undefined) this.#watchRunner(message.runnerSilenceMs);
          if (this.#env.join && message.limits) this.#adoptLimits(message.limits);
          void this.#setup(message.args, message.group);
        }
        return;
      case "refused":
        this.#refused(message.reason);
        return;
      case "req":
        this.#enqueueRequest({ id: message.id, payload: message.payload, streaming: message.streaming, asTextEvents: message.asTextEvents }, release);
        return;
      case "cancel":
        this.#cancel(message.id, message.reason);
        return;
      case "ping":
        // Answered here, on the main thread: a blocked event loop does not answer.
        this.#send({ t: "pong", n: message.n }).catch(() => {});
        return;
      case "credit":
        this.#credit(message.id, message.bytes);
        return;
      case "teardown":
        void this.#teardown(message.restart === true && this.#env.join !== undefined);
        return;
      default:
        this.#log.warn({ type: (message as { t?: unknown }).t }, "ignoring a control message of unknown type");
    }
  }

  /** The runner will not take this rank: say why and leave (nothing else will ever come). */
  #refused(reason: unknown): void {
    if (this.#stopping) return;
    this.#stopping = true;
    const why = typeof reason === "string" ? reason : "no reason given";
    this.#log.error({ reason: why }, "the runner refused this rank");
    this.#options.refused?.(why);
    this.#channel.close();
    this.#options.exit(JOIN_REFUSED_EXIT_CODE);
  }

  async #setup(args: Record<string, unknown>, rendezvous: GroupRendezvous | undefined): Promise<void> {
    try {
      const WorkerCtor = await this.#options.loadWorker();
      const concurrency = WorkerCtor.concurrency ?? 1;
      this.#scheduler = new RequestScheduler(concurrency);
      const worker = new WorkerCtor();
      this.#group = await this.#options.createGroup(rendezvous);
      this.#scopes = requestScopesOf(this.#group);
      this.#scopes?.track({
        // A loop a finished request left behind still runs under that request: its collectives reject.
        current: () => this.#current.getStore()?.id ?? 0,
        concurrent: this.#scheduler.concurrency > 1,
        onBroken: (error) => this.#onGroupBroken(error),
      });
      worker[kBindWorker](this.#binding(this.#group));
      this.#worker = worker;
      await worker.setup(args);
      await this.#send({ t: "ready", device: this.#options.device });
    } catch (error) {
      const serialized = this.#record("setup", error);
      await this.#send({ t: "setup-failed", error: serialized }).catch(() => {});
    }
  }

  #binding(group: ProcessGroup): WorkerBinding {
    const { rank, worldSize } = this.#env;
    return {
      rank,
      worldSize,
      device: this.#options.device,
      group,
      log: this.#log,
      addStreamingResult: (result, options) => this.#addStreamingResult(result, options),
      addStreamingError: (error) => this.#addStreamingError(error),
      runInWorker: (fn) => this.#runInWorker(fn),
    };
  }

  #enqueueRequest(request: RequestMessage, release: () => void): void {
    if (this.#stopping) return release();
    const { id } = request;
    this.#scheduler.enqueue({
      id,
      exclusive: false,
      run: () => this.#runRequest(request, release),
      dropped: (reason) => {
        release();
        void this.#send({ t: "done", id, ok: false, cancelled: true, error: serializeError(new AbortError(`request ${id} cancelled before it started (${reason})`)) }).catch(() => {});
      },
    });
  }

  #cancel(id: number, reason: string): void {
    if (this.#scheduler.dropQueued(id, reason)) return;
    const active = this.#active.get(id);
    if (active && !active.controller.signal.aborted) {
      active.controller.abort(new AbortError(`request ${id} was cancelled by the runner (${reason})`));
      // Its collectives end now, even those not given ctx.signal: the peers are leaving them too.
      this.#scopes?.end(id);
    }
  }

  /**
   * The group failed (a peer lost, a link down, `fail()`) or was closed under
   * the requests: every later collective would reject, request after request,
   * while the runner reports `ready`. The rank says why and exits with
   * {@link GROUP_BROKEN_EXIT_CODE}; the runner restarts the ranks.
   */
  #onGroupBroken(cause: Error): void {
    if (this.#stopping || this.#groupBroken) return;
    // A peer that gave up on a silent runner breaks the group a moment before this rank's own watchdog fires:
    // the runner going quiet is the cause, and the exit code should say so on every rank.
    const watchdog = this.#watchdog;
    if (watchdog && watchdog.silentFor() >= watchdog.silenceMs / 2) {
      this.#leaveSilentRunner(watchdog.silentFor());
      return;
    }
    this.#groupBroken = true;
    const error = new StateError(`process group broken on rank ${this.#env.rank}: ${cause.message}`, { rank: this.#env.rank, cause });
    this.#log.error({ err: error }, "the process group is broken; the rank exits");
    void this.reportFatal(error, true).finally(() => this.#options.exit(GROUP_BROKEN_EXIT_CODE));
  }

  /**
   * `release` ends the hold on the shared buffers the payload came in: called
   * as soon as the answer is packed (nothing reads the payload after that),
   * before it is sent, so the runner's next request finds the mapping free.
   */
  async #runRequest({ id, payload, streaming, asTextEvents }: RequestMessage, release: () => void): Promise<void> {
    const worker = this.#worker;
    if (!worker) {
      release();
      await this.#send({ t: "done", id, ok: false, cancelled: false, error: serializeError(new Error("worker is not set up")) }).catch(() => {});
      return;
    }
    const controller = new AbortController();
    const active: ActiveRequest = { id, streaming, controller, stream: undefined, asTextEvents };
    this.#active.set(id, active);
    this.#scopes?.begin(id);
    let log: Logger | undefined;
    const rankLog = this.#log;
    // Pooled payload segments the worker keeps: named in the `done`, so the runner never writes into them again.
    let kept: Set<string> | undefined;
    let ended = false;
    const endHold = (): void => {
      ended = true;
      release();
    };
    const keptList = (): { kept?: string[] } => (kept && kept.size > 0 ? { kept: [...kept] } : {});
    const ctx: CallContext = {
      requestId: id,
      streaming,
      signal: active.controller.signal,
      progress: (data) => void this.#enqueueOnStream(active, () => this.#send({ t: "progress", id, data })),
      // A child logger costs a serialisation of its bindings: make it only if used.
      get log(): Logger {
        return (log ??= requestLogger(rankLog, id));
      },
      keep: <T>(value: T): T => {
        // After the done went out the runner may already have lent the segment again.
        if (ended) throw new StateError(`ctx.keep() called after request ${id} ended: keep payload buffers before call() returns`);
        return keepPayload(value, (kept ??= new Set()));
      },
    };
    try {
      let output: unknown;
      try {
        output = await this.#call(active, () => worker.call(payload, ctx));
      } finally {
        // Before the answer goes out: collectives the call left running end now.
        this.#scopes?.end(id);
      }
      await active.stream?.drain();
      if (active.controller.signal.aborted) throw active.controller.signal.reason;
      if (this.#env.rank === 0) {
        const result = containsRawImage(output) ? await encodeImagesIn(output, { quality: worker.imageQuality.final, format: worker.imageFormat }) : output;
        const sending = this.#send({ t: "done", id, ok: true, result, hasResult: output !== undefined, ...keptList() });
        endHold();
        await sending;
      } else {
        endHold();
        await this.#send({ t: "done", id, ok: true, hasResult: false, ...keptList() });
      }
    } catch (error) {
      // Cancelled only when the error is the cancellation itself: a worker that
      // failed on its own just before a cancel arrived still reports its error.
      const cancelled = active.controller.signal.aborted && isCancellation(error, active.controller.signal);
      const serialized = cancelled ? serializeError(error) : this.#record("call", error, id);
      endHold();
      await this.#send({ t: "done", id, ok: false, cancelled, error: serialized, ...keptList() }).catch((sendError) => {
        this.#log.error({ err: sendError, requestId: id }, "could not report the end of a request");
      });
    } finally {
      endHold();
      this.#scopes?.end(id);
      this.#active.delete(id);
      active.stream?.end();
    }
  }

  /** The request's outbox, made on first use. */
  #outboxOf(active: ActiveRequest): StreamOutbox {
    return (active.stream ??= new StreamOutbox({
      id: active.id,
      signal: active.controller.signal,
      window: this.#env.streamWindow,
      maxMessageBytes: this.#env.maxMessageBytes,
      textEvents: active.asTextEvents,
      codec: this.#channel.codec,
      send: (bytes) => this.#channel.send([bytes]),
    }));
  }

  #credit(id: number, bytes: number): void {
    this.#active.get(id)?.stream?.credit(bytes);
  }

  #call<R>(active: ActiveRequest, fn: () => R): R {
    return this.#current.run(active, fn);
  }

  /** The request whose call() the current code runs under, if it is still running. */
  #currentRequest(): ActiveRequest | undefined {
    const active = this.#current.getStore();
    return active && this.#active.get(active.id) === active ? active : undefined;
  }

  #enqueueOnStream(active: ActiveRequest, send: () => Promise<void>): Promise<void> {
    // Only rank 0 speaks for the group; other ranks drop items before any work.
    if (this.#env.rank !== 0) return Promise.resolve();
    return this.#outboxOf(active).enqueue(send);
  }

  #requireActive(what: string): ActiveRequest | undefined {
    const active = this.#currentRequest();
    if (!active) this.#log.warn(`${what} called outside of call(); it was dropped`);
    return active;
  }

  #addStreamingResult(result: unknown, options: StreamingResultOptions): Promise<void> {
    const active = this.#requireActive("addStreamingResult");
    // Only rank 0 speaks for the group, and only a streaming caller hears it (invoke drops items).
    if (!active || !this.#worker || this.#env.rank !== 0 || !active.streaming) return Promise.resolve();
    const worker = this.#worker;
    return this.#outboxOf(active).addResult(result, {
      asTextEvent: options.asTextEvent === true,
      quality: options.quality ?? worker.imageQuality.stream,
      imageFormat: options.imageFormat ?? worker.imageFormat,
    });
  }

  #addStreamingError(error: unknown): Promise<void> {
    const active = this.#requireActive("addStreamingError");
    if (!active) return Promise.resolve();
    return this.#enqueueOnStream(active, () => this.#send({ t: "item-error", id: active.id, error: serializeError(error) }));
  }

  #runInWorker<R>(fn: () => R | Promise<R>): Promise<R> {
    // Inside call() the request already holds the order; queueing would deadlock.
    if (this.#currentRequest()) return Promise.resolve().then(fn);
    return new Promise<R>((resolve, reject) => {
      this.#scheduler.enqueue({
        exclusive: true,
        run: async () => {
          try {
            resolve(await fn());
          } catch (error) {
            reject(error);
          }
        },
        dropped: (reason) => reject(new AbortError(`runInWorker cancelled: ${reason}`)),
      });
    });
  }

  /**
   * A joined rank takes the runner's limits from its setup (a spawned rank
   * has them in its environment): a message over the runner's
   * maxMessageBytes fails here, with a clear error, instead of being dropped
   * by the runner. Messages from the runner are bounded by the channel's own
   * limit, set at start (MULTIRANK_MAX_MESSAGE_BYTES).
   */
  #adoptLimits(limits: RankLimits): void {
    if (Number.isSafeInteger(limits.maxMessageBytes) && limits.maxMessageBytes > 0) this.#env.maxMessageBytes = limits.maxMessageBytes;
    if (Number.isSafeInteger(limits.streamWindow) && limits.streamWindow > 0) this.#env.streamWindow = limits.streamWindow;
  }

  /** A joined rank leaves once its runner has been silent `silenceMs` (it has no death pipe). */
  #watchRunner(silenceMs: number): void {
    this.#watchdog = new RunnerWatchdog(silenceMs, (silentMs) => this.#leaveSilentRunner(silentMs));
  }

  #leaveSilentRunner(silentMs: number): void {
    if (this.#stopping) return;
    this.#watchdog?.stop();
    const why = `the runner has been silent for ${(silentMs / 1000).toFixed(1)} s (it is gone or cut off); the rank exits`;
    this.#log.error({ silentMs: Math.round(silentMs) }, why);
    this.#options.runnerGone?.(why);
    this.#stopping = true;
    this.#channel.close();
    this.#options.exit(RUNNER_GONE_EXIT_CODE);
  }

  /** `forRestart`: a joined rank exits with RESTART_EXIT_CODE, so its launcher starts it again. */
  async #teardown(forRestart = false): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#watchdog?.stop();
    let error: ReturnType<typeof serializeError> | undefined;
    try {
      await this.#scheduler.idle();
      if (this.#worker) await this.#worker.teardown();
    } catch (caught) {
      error = this.#record("teardown", caught);
    }
    try {
      await this.#group?.close();
    } catch (caught) {
      this.#log.warn({ err: caught }, "closing the process group failed");
    }
    await this.#send(error ? { t: "teardown-done", error } : { t: "teardown-done" }).catch(() => {});
    this.#channel.abortSends(new AbortError("rank is exiting"));
    this.#channel.close();
    this.#options.exit(forRestart ? RESTART_EXIT_CODE : 0);
  }

  /** Writes the error to the error file and returns its wire form. */
  #record(phase: RankPhase, error: unknown, requestId?: number): ReturnType<typeof serializeError> {
    const serialized = serializeError(error);
    appendErrorRecord(this.#env.errorFile, {
      rank: this.#env.rank,
      phase,
      ...(requestId === undefined ? {} : { requestId }),
      error: serialized,
      time: Date.now(),
    });
    return serialized;
  }

  #send(message: RankMessage): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = this.#channel.codec.pack(message, describe(message), this.#env.maxMessageBytes);
    } catch (error) {
      return Promise.reject(error);
    }
    // A request's end may go out with the others ending this turn (one write for many under load);
    // everything else (progress, logs, stream items, errors) at once.
    return message.t === "done" ? this.#channel.send([bytes], BATCH) : this.#channel.send([bytes]);
  }
}

const BATCH = Object.freeze({ batch: true });

function isCancellation(error: unknown, signal: AbortSignal): boolean {
  if (error === signal.reason) return true;
  const name = (error as { name?: unknown } | null)?.name;
  return name === "AbortError" || (error as { code?: unknown } | null)?.code === "MULTIRANK_ERR_ABORTED";
}

function describe(message: RankMessage): string {
  switch (message.t) {
    case "done":
      return message.ok ? `result of request ${message.id}` : `error of request ${message.id}`;
    case "progress":
      return `progress of request ${message.id}`;
    default:
      return `${message.t} message`;
  }
}
