import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import { curveKeyPair, type Router } from "zeromq";
import type { Codec } from "../codec/packer.js";
import type { WorkerDevice } from "../devices/index.js";
import { MemoryLimitError, RankError, RankExitError, RankGroupError, StateError, TransportError, type MultirankError } from "../errors.js";
import { runDirPrefix, sweepLeftovers } from "../shm/index.js";
import { openRunnerChannel, type RunnerChannel } from "../transport/control-channel.js";
import { joinFrames } from "../transport/frame-pieces.js";
import type { GroupRendezvous, RankMessage, RunnerMessage } from "../transport/messages.js";
import { deferred, type Deferred } from "../util/deferred.js";
import { setLongTimeout, type LongTimer } from "../util/timers.js";
import { chooseControlEndpoint, type ControlTransport } from "./endpoints.js";
import type { ErrorLedger, SessionErrors } from "./error-ledger.js";
import { HeartbeatMonitor } from "./heartbeat-monitor.js";
import type { PendingRequest } from "./pending-request.js";
import type { RankExit, RankProcess } from "./rank-process.js";
import { RankJoins, type JoinedRank } from "./rank-joins.js";

// sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_UNIX_SOCKET_PATH = 107;

const SIGTERM_GRACE_MS = 2000;
/** Attach mode: how long joined ranks get to finish a teardown when the group failed (nothing can be killed from here). */
const ATTACH_TEARDOWN_GRACE_MS = 2000;
/**
 * Attach mode: the silence allowed a joined rank until it is set up, if
 * longer than `heartbeatTimeout`. Loading the worker (tsx compiling it, a
 * synchronous model load) may block its event loop; a rank killed meanwhile
 * is still noticed within this, not at the start timeout. The spawn mode's
 * heartbeat default.
 */
const SETUP_SILENCE_MS = 60_000;
/** How long messages a dead rank sent before it died get to arrive before its requests fail. */
const LAST_MESSAGES_GRACE_MS = 50;

/** Logs a message the runner ignores; shared by a runner's sessions. */
export type ForeignMessageLog = (peer: string | undefined, why: string) => void;

/** Logs ignored control messages: never acted on, rate-limited so a noisy peer cannot flood the log. */
export function foreignMessageLog(log: Logger): ForeignMessageLog {
  let count = 0;
  return (peer, why) => {
    count++;
    if (count <= 10 || count % 1000 === 0) log.warn({ peer, count }, `ignored a message on the control socket: ${why}`);
  };
}

/** What {@link ControlSession.open} needs. */
export interface ControlSessionOptions {
  worldSize: number;
  /** The runner's `maxMessageBytes`: the largest payload either way. */
  maxMessageBytes: number;
  transport: ControlTransport;
  workerAddr: string;
  workerPort: number;
  /** The packed `setup` message, sent to each rank once it says hello. */
  setupMessage: Buffer;
  /** Attach mode (`launcher: "external"`): ranks join on their own; without it the runner spawns them. */
  attach?: AttachSessionOptions | undefined;
  ledger: ErrorLedger;
  foreign: ForeignMessageLog;
  log: Logger;
}

/** What an attach-mode session needs: the run's keys and secret, kept across restarts so one join string serves them all. */
export interface AttachSessionOptions {
  /** The runner's CURVE key pair (Z85). */
  serverKeys: { publicKey: string; secretKey: string };
  /** The run's secret, hex. */
  secret: string;
  /** Packs the `setup` message with where the group meets, once every rank joined. */
  setupFor(group: GroupRendezvous | undefined): Buffer;
  /** Heartbeats from each join (0: off); `hung` hears of a rank silent past it. */
  heartbeatTimeoutMs: number;
  hung(rank: number, silentMs: number): void;
  /** A joined rank reported a fatal error: its process is ending, and nothing will say so later (no exit event reaches the runner). */
  lost(rank: number, error: RankError): void;
}

/** The CURVE keys of a tcp session: the runner's public key and each rank's pair. */
export interface SessionKeys {
  serverKey: string;
  rankKeys: ReadonlyArray<{ publicKey: string; secretKey: string }>;
}

/**
 * Everything one `start()` creates and `stop()` removes: the run directory,
 * the control channel (a unix stream socket on one host, else ZeroMQ) and its
 * receive loop, the rank processes, what each rank reported at startup, the
 * requests in flight, and the heartbeats once the group is ready. It routes
 * every message from a rank to the startup or to its request.
 */
export class ControlSession {
  readonly #runDir: string;
  readonly #channel: RunnerChannel;
  readonly #worldSize: number;
  readonly #maxMessageBytes: number;
  readonly #setupMessage: Buffer;
  readonly #attach: AttachSessionOptions | undefined;
  /** Attach mode: who joined, from where. */
  readonly #joins: RankJoins | undefined;
  readonly #foreign: ForeignMessageLog;
  readonly #log: Logger;
  /** The endpoint the ranks connect to (`unix:<path>`, `ipc://...` or `tcp://...`). */
  readonly endpoint: string;
  /** The ranks prove with it in their hello that they were started by this session. */
  readonly token = randomBytes(16).toString("hex");
  /** New for every start: in the ranks' routing ids and cgroup names. */
  readonly nonce = randomBytes(4).toString("hex");

  /**
   * A new unix socket path in this session's private directory for a process
   * group of spawned ranks to meet at (other users cannot reach it), or
   * undefined when the path would be too long for a unix socket.
   */
  groupSocketPath(): string | undefined {
    const path = join(this.#runDir, `group-${randomBytes(4).toString("hex")}.sock`);
    return Buffer.byteLength(path) <= MAX_UNIX_SOCKET_PATH ? path : undefined;
  }
  /** With CURVE (tcp): the keys handed to the ranks. */
  readonly keys: SessionKeys | undefined;
  /** Each rank's errors: its error file and what it reported as fatal. */
  readonly errors: SessionErrors;
  /** The device each rank reported when ready, by rank. */
  readonly devices: WorkerDevice[] = [];
  /** Requests in flight, by id. */
  readonly requests = new Map<number, PendingRequest>();
  /** Why the session failed (the first rank death or hang), once it did. */
  failure: MultirankError | undefined;
  readonly #ranks: RankProcess[] = [];
  readonly #routingIds: Buffer[] = [];
  readonly #rankOf = new Map<string, number>();
  readonly #connected = new Set<number>();
  readonly #ready = new Set<number>();
  readonly #setupErrors: MultirankError[] = [];
  readonly #startup: Deferred<void> = deferred<void>();
  /** Run when the session is released, unless dropped first (shared-memory segments of requests). */
  readonly #atRelease = new Set<() => void>();
  #closed = false;
  /** The runner is ending this session on purpose: rank exits are expected. */
  #closing = false;
  #cleanup: Promise<void> | undefined;
  #receiveLoop: Promise<void> = Promise.resolve();
  /** Watches the ranks' event loops once the group is ready (unless heartbeats are off). */
  #heartbeats: HeartbeatMonitor | undefined;

  /**
   * Makes the run directory and binds the control channel in it (or on tcp,
   * with CURVE keys for each rank). Ranks are added with {@link addRank}.
   * @throws {TransportError} the channel could not bind; nothing is left behind.
   */
  static async open(options: ControlSessionOptions): Promise<ControlSession> {
    // What killed runners and ranks left (run dirs, /dev/shm segments, link
    // sockets): nobody else would ever remove it. Synchronous and cheap.
    const swept = sweepLeftovers();
    if (swept.tmp.length + swept.shm.length > 0) options.log.debug({ swept }, "removed leftovers of processes that are gone");
    // The owner's pid and start time in the name tell a later sweep whether it is still in use.
    const runDir = mkdtempSync(join(tmpdir(), runDirPrefix()));
    const { attach } = options;
    // Attach mode is always tcp with CURVE: the ranks are on other hosts.
    const endpoint = chooseControlEndpoint({ transport: attach ? "tcp" : options.transport, workerAddr: options.workerAddr, workerPort: options.workerPort, runDir });
    const serverKeys = attach ? attach.serverKeys : endpoint.secure ? curveKeyPair() : undefined;
    // Joining ranks make their own keys (the runner cannot hand them out): they prove themselves in their hello.
    const rankKeys = serverKeys && !attach ? Array.from({ length: options.worldSize }, () => curveKeyPair()) : [];
    let channel: RunnerChannel;
    try {
      // A little over the limit: the header around a maximal payload must still fit.
      channel = await openRunnerChannel(endpoint.bind, {
        maxMessageBytes: options.maxMessageBytes + 64 * 1024,
        curveSecretKey: serverKeys?.secretKey,
        clientKeys: rankKeys.map((keys) => keys.publicKey),
        anyClient: attach !== undefined,
        onDenied: (address, why) => options.foreign(address, `a connection with ${why}`),
        log: options.log,
      });
    } catch (error) {
      rmSync(runDir, { recursive: true, force: true });
      throw new TransportError(`could not bind the control socket at ${endpoint.bind}`, { cause: error });
    }
    const keys = serverKeys ? { serverKey: serverKeys.publicKey, rankKeys } : undefined;
    return new ControlSession(options, runDir, channel, channel.endpoint || endpoint.bind, keys);
  }

  private constructor(options: ControlSessionOptions, runDir: string, channel: RunnerChannel, endpoint: string, keys: SessionKeys | undefined) {
    this.#runDir = runDir;
    this.#channel = channel;
    this.#worldSize = options.worldSize;
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#setupMessage = options.setupMessage;
    this.#attach = options.attach;
    if (options.attach) {
      this.#joins = new RankJoins(options.worldSize, options.attach.secret);
      const { hung } = options.attach;
      if (options.attach.heartbeatTimeoutMs > 0) {
        this.#heartbeats = this.#newHeartbeats(options.attach.heartbeatTimeoutMs, (rank, silentMs) => {
          // A silent rank will not say it tore down: closing must not wait for it.
          this.#joins?.lost(rank);
          hung(rank, silentMs);
        });
      }
    }
    this.#foreign = options.foreign;
    this.#log = options.log;
    this.endpoint = endpoint;
    this.keys = keys;
    this.errors = options.ledger.openSession(runDir);
    this.#startup.promise.catch(() => {});
  }

  /** The rank processes, by rank. */
  get ranks(): readonly RankProcess[] {
    return this.#ranks;
  }

  /** True once released: the channel is closed and the run directory gone (or going). */
  get closed(): boolean {
    return this.#closed;
  }

  /** True once the runner began ending the session: rank exits are expected. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Resolves when every rank is ready; rejects with the first reason the startup failed. */
  get started(): Promise<void> {
    return this.#startup.promise;
  }

  /** The ZeroMQ ROUTER underneath, when the transport is ZeroMQ. */
  get zmqSocket(): Router | undefined {
    return this.#channel.zmqSocket;
  }

  /** True when the ranks joined on their own (attach mode): the session has no processes. */
  get attached(): boolean {
    return this.#attach !== undefined;
  }

  /** Attach mode: rank `rank`'s host and pid, once it joined. */
  joined(rank: number): JoinedRank | undefined {
    return this.#joins?.get(rank);
  }

  /** Attach mode: ranks that have not joined, ascending (empty otherwise). */
  notJoined(): number[] {
    return this.#joins?.missing() ?? [];
  }

  /** Ranks that have not reported ready, ascending. */
  notReady(): number[] {
    return [...Array(this.#worldSize).keys()].filter((rank) => !this.#ready.has(rank));
  }

  /** Fails the startup with `error`, unless it already ended. */
  failStartup(error: unknown): void {
    this.#startup.reject(error);
  }

  /** The codec of the channel's messages (the channel owns it). */
  get codec(): Codec {
    return this.#channel.codec;
  }

  /** The name `rank` gives itself on the channel. */
  routingId(rank: number): string {
    return `r${rank}-${this.nonce}`;
  }

  /** Takes `process_` as the rank it runs; its routing id is {@link routingId}. */
  addRank(process_: RankProcess): void {
    const routingId = this.routingId(process_.rank);
    this.#routingIds[process_.rank] = Buffer.from(routingId);
    this.#rankOf.set(routingId, process_.rank);
    this.#ranks.push(process_);
  }

  /** Starts reading the channel (before the first rank is spawned). */
  listen(): void {
    this.#receiveLoop = this.#receive();
  }

  /** Sends one message to `rank`; rejects when it cannot be sent. */
  send(rank: number, bytes: Buffer): Promise<void> {
    return this.#channel.send([this.#routingIds[rank]!, bytes]);
  }

  /** Sends one message to every rank that said hello; failures are ignored (a dead rank is noticed another way). */
  sendToConnected(bytes: Buffer): void {
    for (const rank of this.#connected) this.send(rank, bytes).catch(() => {});
  }

  /** Runs `cleanup` when the session is released; the function returned drops it (the resource went earlier). */
  atRelease(cleanup: () => void): () => void {
    this.#atRelease.add(cleanup);
    return () => this.#atRelease.delete(cleanup);
  }

  /** Closes the channel now (fal's `close_zmq_socket`); ranks are then unreachable. */
  closeChannel(): void {
    if (!this.#channel.closed) this.#channel.close();
  }

  /** Fails every request in flight with `error` (the group failed). */
  failRequests(error: MultirankError): void {
    // Joined ranks cannot be killed from here: the live ones must drop the
    // requests themselves, or their teardown would wait for them.
    if (this.#joins) for (const id of this.requests.keys()) this.sendToConnected(this.codec.pack({ t: "cancel", id, reason: "failed" } satisfies RunnerMessage));
    for (const request of this.requests.values()) request.fail(error);
  }

  /** Pings the ranks from now on; `hung` hears of a rank silent past `timeoutMs`. */
  startHeartbeats(timeoutMs: number, hung: (rank: number, silentMs: number) => void): void {
    this.#heartbeats = this.#newHeartbeats(timeoutMs, hung);
    this.#heartbeats.start();
  }

  #newHeartbeats(timeoutMs: number, hung: (rank: number, silentMs: number) => void): HeartbeatMonitor {
    return new HeartbeatMonitor(this.#worldSize, timeoutMs, {
      ping: (n) => {
        if (this.#closed) return;
        this.sendToConnected(this.codec.pack({ t: "ping", n } satisfies RunnerMessage));
      },
      hung,
    });
  }

  /**
   * The error for `rank`'s unexpected exit, once its stderr tail and the
   * messages it sent before dying have arrived: a `MemoryLimitError` when it
   * went over `memoryLimitMiB`, else a `RankExitError`; what it reported as
   * fatal is the cause.
   */
  async exitError(rank: RankProcess, exit: RankExit, memoryLimitMiB: number | undefined): Promise<MemoryLimitError | RankExitError> {
    const stderrTail = await rank.stderrTail();
    // What the rank sent just before dying may still be in the socket: let it land first.
    await new Promise((resolve) => setTimeout(resolve, LAST_MESSAGES_GRACE_MS));
    const overLimit = memoryLimitMiB === undefined ? undefined : rank.memoryLimitHit();
    return memoryLimitMiB !== undefined && overLimit
      ? new MemoryLimitError(exit.rank, memoryLimitMiB, overLimit, { exitCode: exit.code, signal: exit.signal, stderrTail }, { cause: this.errors.fatal(exit.rank) })
      : new RankExitError(exit.rank, exit.code, exit.signal, stderrTail, { cause: this.errors.fatal(exit.rank) });
  }

  /**
   * Ends the session: waits up to `graceMs` for ranks to exit on their own
   * (after a teardown), else sends `signal` (then SIGKILL), fails what is
   * still in flight, closes the socket, keeps the error files' contents,
   * removes the run directory.
   */
  async close(signal: NodeJS.Signals | undefined, graceMs = 0): Promise<void> {
    const wasClosing = this.#closing;
    this.#closing = true;
    this.#heartbeats?.stop();
    if (this.#joins && !this.#closed) {
      // Nothing here can signal a process on another host: every joined rank
      // is asked to tear down (the runner's stop() asked already) and gets a
      // bounded time to say it did.
      if (!wasClosing || signal !== undefined) this.sendToConnected(this.codec.pack({ t: "teardown" } satisfies RunnerMessage));
      await settlesWithin(this.#joins.allTornDown(), graceMs > 0 ? graceMs : ATTACH_TEARDOWN_GRACE_MS);
    }
    const allExited = Promise.all(this.#ranks.map((rank) => rank.exited));
    if (graceMs > 0 && !(await settlesWithin(allExited, graceMs))) signal ??= "SIGTERM";
    if (signal) {
      for (const rank of this.#ranks) rank.kill(signal);
      if (signal !== "SIGKILL" && !(await settlesWithin(allExited, SIGTERM_GRACE_MS))) {
        for (const rank of this.#ranks) rank.kill("SIGKILL");
      }
    }
    await allExited;
    this.#cleanup ??= this.#release();
    await this.#cleanup;
  }

  /** Removes a session no rank was started for (the start failed before). */
  discard(): void {
    this.#channel.close();
    rmSync(this.#runDir, { recursive: true, force: true });
  }

  async #release(): Promise<void> {
    this.#closed = true;
    this.#heartbeats?.stop();
    this.errors.harvest();
    const reason = this.failure ?? new StateError("the runner stopped before the request finished");
    for (const request of this.requests.values()) request.fail(reason);
    this.requests.clear();
    for (const cleanup of this.#atRelease) cleanup();
    this.#atRelease.clear();
    this.#startup.reject(reason);
    this.#channel.abortSends(new StateError("the control socket is closed"));
    this.#channel.close();
    await this.#receiveLoop;
    this.errors.release();
    rmSync(this.#runDir, { recursive: true, force: true });
  }

  async #receive(): Promise<void> {
    try {
      const maxBytes = this.#maxMessageBytes + 64 * 1024;
      for await (const frames of this.#channel) {
        const [identity, ...pieces] = frames;
        const rank = identity ? this.#rankOf.get(identity.toString("latin1")) : undefined;
        // In attach mode an identity is learnt from its hello: an unknown one may be a rank joining.
        const joining = rank === undefined && this.#joins !== undefined;
        if ((rank === undefined && !joining) || !identity || pieces.length === 0) {
          this.#foreign(identity?.toString("hex"), "unknown peer");
          continue;
        }
        const who = rank === undefined ? "an unknown identity" : `rank ${rank}'s identity`;
        // Over tcp a rank sends large messages in pieces (frame-pieces.ts).
        if (pieces.reduce((sum, piece) => sum + piece.byteLength, 0) > maxBytes) {
          this.#foreign(identity.toString("hex"), `a message over maxMessageBytes from ${who}`);
          continue;
        }
        const body = joinFrames(pieces);
        let message: RankMessage;
        try {
          message = this.codec.unpack<RankMessage>(body, "control message");
          if (typeof message !== "object" || message === null || typeof message.t !== "string") throw new Error("not a control message");
        } catch {
          this.#foreign(identity.toString("hex"), `undecodable message from ${who}`);
          continue;
        }
        if (rank === undefined) {
          if (message.t === "hello") this.#onJoin(identity, message);
          else this.#foreign(identity.toString("hex"), `message before hello from ${who}`);
          continue;
        }
        if (message.t !== "hello" && !this.#connected.has(rank)) {
          this.#foreign(identity.toString("hex"), `message before hello from rank ${rank}'s identity`);
          continue;
        }
        this.#heartbeats?.heard(rank);
        try {
          this.#onMessage(rank, message, body.byteLength);
        } catch (error) {
          // One message must never end the loop: everything in flight depends on it.
          this.#log.error({ err: error, rank, type: message.t }, "handling a control message failed");
        }
      }
    } catch (error) {
      if (!this.#closed) this.#log.error({ err: error }, "control socket receive loop failed");
    }
  }

  #onMessage(rank: number, message: RankMessage, bytes: number): void {
    switch (message.t) {
      case "hello": {
        if (this.#joins) {
          this.#foreign(this.#routingIds[rank]?.toString("hex"), `a second hello from rank ${rank}'s identity`);
          return;
        }
        if (message.token !== this.token) {
          this.#foreign(this.#routingIds[rank]?.toString("hex"), "hello with a wrong token");
          return;
        }
        this.#connected.add(rank);
        this.send(rank, this.#setupMessage).catch((error: unknown) => {
          this.#startup.reject(new TransportError(`could not send setup to rank ${rank}`, { rank, cause: error }));
        });
        return;
      }
      case "ready":
        this.#heartbeats?.settle(rank);
        this.#ready.add(rank);
        this.devices[rank] = message.device as WorkerDevice;
        this.#checkStartup();
        return;
      case "setup-failed":
        this.#setupErrors.push(new RankError(message.error, rank, "setup"));
        if (this.#setupErrors.length === 1) {
          // Give the other ranks a moment to report their own setup errors too.
          setTimeout(() => this.#failStartup(), 1000).unref();
        }
        this.#checkStartup();
        return;
      case "fatal": {
        const error = new RankError(message.error, rank, "process");
        this.errors.setFatal(rank, error);
        if (this.#attach) {
          this.#joins?.lost(rank);
          // A rank whose group broke names a consequence: the heartbeats find the rank really gone, within their bound.
          if (!message.groupBroken) this.#attach.lost(rank, error);
        }
        return;
      }
      case "teardown-done":
        this.#joins?.tornDown(rank);
        return;
      case "pong":
        return;
      default:
        this.#routeToRequest(rank, message, bytes);
    }
  }

  /**
   * Attach mode: a hello from an identity not seen before. Admitted, it is
   * that rank's identity from now on and its heartbeats start; refused, the
   * peer hears why (so it exits with a clear error) and the log says so,
   * rate-limited. Setup goes out once every rank joined: rank 0's hello said
   * where the group meets, and every rank needs that before it can set up.
   */
  #onJoin(identity: Buffer, hello: RankMessage & { t: "hello" }): void {
    const joins = this.#joins!;
    const verdict = joins.admit(hello);
    if (!verdict.ok) {
      this.#foreign(identity.toString("hex"), `refused a rank's hello: ${verdict.reason}`);
      this.#channel.send([identity, this.codec.pack({ t: "refused", reason: verdict.reason } satisfies RunnerMessage)]).catch(() => {});
      return;
    }
    const { rank, host, pid } = verdict;
    this.#routingIds[rank] = identity;
    this.#rankOf.set(identity.toString("latin1"), rank);
    this.#connected.add(rank);
    this.#heartbeats?.watch(rank, SETUP_SILENCE_MS);
    this.#log.info({ rank, host, pid }, `rank ${rank} joined from ${host}`);
    if (!joins.complete) return;
    const setup = this.#attach!.setupFor(joins.rendezvous());
    for (const r of this.#connected) {
      this.send(r, setup).catch((error: unknown) => {
        this.#startup.reject(new TransportError(`could not send setup to rank ${r}`, { rank: r, cause: error }));
      });
    }
  }

  /** `bytes`: the message's size on the wire, counted against the request's stream window. */
  #routeToRequest(rank: number, message: RankMessage, bytes: number): void {
    if (!("id" in message)) return;
    const request = this.requests.get(message.id);
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
        if (message.kept) request.rankKept(message.kept);
        request.rankDone(rank, message.ok ? { ok: true, result: message.result, hasResult: message.hasResult } : { ok: false, error: message.error, cancelled: message.cancelled });
        return;
    }
  }

  #checkStartup(): void {
    const reported = this.#ready.size + this.#setupErrors.length;
    if (reported < this.#worldSize) return;
    if (this.#setupErrors.length > 0) this.#failStartup();
    else this.#startup.resolve();
  }

  #failStartup(): void {
    const errors = this.#setupErrors;
    if (errors.length === 0) return;
    this.#startup.reject(errors.length === 1 ? errors[0] : new RankGroupError(`${errors.length} ranks failed setup`, errors));
  }
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
