/**
 * The gateway's jobs on Redis through BullMQ, shared by every gateway on the
 * same Redis and prefix. {@link RedisJobQueue} is the {@link ProtocolCore}
 * the fal and Runpod routes use in place of the in-memory one:
 *
 * - each app's queue is a BullMQ queue (`<prefix>:bull:<app>`); a job's
 *   record (job-records.ts) holds what the protocols answer from, so any
 *   gateway answers for any job;
 * - each gateway runs a BullMQ worker per app, as many jobs at once as its
 *   runner pool can take; a job taken goes to the app's dispatcher, which
 *   runs it exactly as in memory, and its state is written back (job-writer.ts);
 * - cancels, log lines, stream chunks and status changes cross gateways on a
 *   pub/sub channel (event-bus.ts): BullMQ cancels only within one process.
 *
 * When a gateway dies mid-job, its claim lapses after `stalledAfter`, BullMQ
 * moves the job back to the queue, and another gateway runs it again from
 * its input (up to `maxRecoveries` times). Exactly one final answer is
 * recorded per submission: the record takes a final state once, and only
 * from the current claim.
 */
import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { Queue, WaitingError, Worker, type Job as BullJob } from "bullmq";
import type { Logger } from "pino";
import type { AppTable } from "../gateway/app-table.js";
import type { KeyChecker } from "../gateway/auth.js";
import { authorizeRequest, type AppHealth, type ProtocolCore, type SubmitOptions } from "../gateway/core.js";
import type { Dispatcher, JobFinishedListener } from "../gateway/dispatcher.js";
import { AppNotFoundError, GatewayError, JobNotFoundError, QueueFullError, ShuttingDownError } from "../gateway/errors.js";
import { isFinalStatus, Job, startTimeoutError, type JobError } from "../gateway/job.js";
import { LongTimer } from "../util/timers.js";
import { EventBus, type BusMessage } from "./event-bus.js";
import { JobRecords, type StoredJob } from "./job-records.js";
import { JobWriter } from "./job-writer.js";
import type { ResolvedQueueOptions } from "./queue-options.js";
import type { QueueHealth, RedisConnections } from "./redis-connection.js";
import { RedisChunkBuffer } from "./redis-chunk-buffer.js";

/** BullMQ priorities: lower runs first; equal ones run in the order they came. */
const PRIORITY = { normal: 1, low: 2 } as const;
/** How often watched jobs are read again, in case a pub/sub message was lost. */
const RESYNC_MS = 5000;
/** How long a finished job's object is kept here after it finished (its record stays for `resultTtl`). */
const KEEP_FINISHED_MS = 30_000;

/**
 * KEYS: prioritized, wait, reservations. ARGV: max, now (ms), token → 1 admitted (a reservation taken), 0 full.
 * A reservation holds a place between the check and BullMQ's add (two scripts); one a dead gateway left
 * behind lapses after 30 s on its own, whatever else comes and goes.
 */
const ADMIT = `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[2]) - ${30_000})
local n = redis.call('ZCARD', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ${30_000})
return 1`;

/** What {@link RedisJobQueue} is built from. */
export interface RedisJobQueueInit {
  connections: RedisConnections;
  options: ResolvedQueueOptions;
  table: AppTable;
  keys: KeyChecker;
  logger: Logger;
  resultTtlMs: number;
  chunkHighWaterMark: number;
  /** Called when a job finishes here without running (cancelled or timed out in the queue): metrics, webhooks. */
  onFinished: JobFinishedListener;
}

/** One job taken by this gateway's worker. */
interface TakenJob {
  job?: Job;
  buffer?: RedisChunkBuffer;
  dispatcher?: Dispatcher;
  cancelRequested: boolean;
  /** Resolves once the job left this gateway, its end written to Redis. */
  left: Promise<void>;
}

/** Per-app BullMQ objects. */
interface AppQueue {
  queue: Queue;
  worker: Worker;
  /** The worker's own blocking connection (BullMQ leaves closing it to us). */
  connection: ReturnType<RedisConnections["duplicateBlocking"]>;
}

/** The Redis-backed {@link ProtocolCore}: one per gateway. */
export class RedisJobQueue implements ProtocolCore {
  readonly #init: RedisJobQueueInit;
  readonly #records: JobRecords;
  readonly #bus: EventBus;
  readonly #log: Logger;
  readonly #apps = new Map<string, AppQueue>();
  /** Job objects handed out here, by id, so events reach the object a protocol holds. */
  readonly #jobs = new Map<string, { job: Job; buffer: RedisChunkBuffer; logSeq: number; version: number; finishedAt?: number }>();
  /** Jobs this gateway's workers run now, by id. */
  readonly #taken = new Map<string, TakenJob>();
  readonly #resync: NodeJS.Timeout;
  #closing = false;
  #admit: ((...args: Array<string | number>) => Promise<number>) | undefined;

  private constructor(init: RedisJobQueueInit) {
    this.#init = init;
    this.#log = init.logger.child({ component: "redis-queue" });
    const { connections, options } = init;
    this.#records = new JobRecords(connections.commands, connections.blocking, options.prefix, init.resultTtlMs);
    this.#bus = new EventBus(connections.commands, connections.subscriber, options.prefix, init.logger);
    this.#resync = setInterval(() => void this.#resyncWatched(), RESYNC_MS);
    this.#resync.unref();
  }

  /** Subscribes to the other gateways' events and starts taking every app's jobs. */
  static async start(init: RedisJobQueueInit): Promise<RedisJobQueue> {
    const queue = new RedisJobQueue(init);
    init.connections.commands.defineCommand("mrAdmit", { numberOfKeys: 3, lua: ADMIT });
    const commands = init.connections.commands as unknown as { mrAdmit: (...args: Array<string | number>) => Promise<number> };
    queue.#admit = (...args) => commands.mrAdmit(...args);
    await queue.#bus.start((message) => queue.#onMessage(message), () => void queue.#resyncWatched());
    await queue.syncApps();
    return queue;
  }

  /** What `/healthz` says about Redis. */
  queueHealth(): QueueHealth {
    return this.#init.connections.health();
  }

  get keysRequired(): boolean {
    return !this.#init.keys.open;
  }

  authorize(request: FastifyRequest, allowQueryKey = false): void {
    authorizeRequest(this.#init.keys, request, allowQueryKey);
  }

  appNames(): string[] {
    return [...this.#init.table.dispatchers.keys()];
  }

  assertApp(app: string): void {
    this.#dispatcher(app);
  }

  async submit(app: string, options: SubmitOptions): Promise<Job> {
    const dispatcher = this.#dispatcher(app);
    if (this.#closing) throw new ShuttingDownError();
    this.#init.connections.assertReady();
    const id = randomUUID();
    const { job, buffer } = this.#newJob(
      {
        chunkHighWaterMark: this.#init.chunkHighWaterMark,
        ...options,
        id,
        app: dispatcher.app.name,
        timeoutMs: options.timeoutMs ?? dispatcher.app.timeout * 1000,
      },
      options.input,
    );
    const inputJson = JSON.stringify(options.input ?? null);
    await this.#redis(async () => {
      const { queue } = await this.#appQueue(dispatcher.app.name);
      const reservations = this.#key(queue, "reservations");
      if ((await this.#admit!(this.#key(queue, "prioritized"), this.#key(queue, "wait"), reservations, dispatcher.app.maxQueueLength, Date.now(), id)) !== 1) {
        throw new QueueFullError(dispatcher.app.name, dispatcher.app.maxQueueLength);
      }
      // Known here before a worker can take it, so the worker here runs this very object (a caller awaits it).
      this.#jobs.set(id, { job, buffer, logSeq: 0, version: 0 });
      try {
        await this.#records.create(job, inputJson);
        await queue.add("job", { id }, { jobId: id, priority: PRIORITY[job.priority], removeOnComplete: true, removeOnFail: true });
      } catch (error) {
        this.#jobs.delete(id);
        throw error;
      } finally {
        // Not awaited: the job is queued either way, and a reservation left behind lapses on its own.
        void this.#init.connections.commands.zrem(reservations, id).catch(() => {});
      }
    });
    this.#startTimer(job);
    return job;
  }

  async job(app: string, id: string): Promise<Job> {
    const job = await this.findJob(app, id);
    if (!job) throw new JobNotFoundError(id);
    return job;
  }

  async findJob(app: string, id: string): Promise<Job | undefined> {
    // A job running here is ahead of its record: answer from it.
    const running = this.#taken.get(id)?.job;
    if (running) return running.app === app ? running : undefined;
    return this.#redis(async () => {
      const record = await this.#records.load(id);
      if (!record || record.app !== app) return undefined;
      return this.#adopt(record);
    });
  }

  async position(job: Job): Promise<number> {
    if (job.status !== "IN_QUEUE") return 0;
    return this.#redis(async () => {
      const record = await this.#records.load(job.id);
      if (!record || record.state.status !== "IN_QUEUE") return 0;
      const { queue } = await this.#appQueue(job.app);
      const redis = this.#init.connections.commands;
      const [rank, waiting] = await Promise.all([redis.zrank(this.#key(queue, "prioritized"), record.entry), redis.llen(this.#key(queue, "wait"))]);
      return rank === null ? 0 : rank + waiting;
    });
  }

  async cancel(job: Job): Promise<boolean> {
    // Ended here a moment ago: its final state may still be on its way to Redis, but it has ended.
    if (this.#taken.get(job.id)?.job?.finished) return false;
    return this.#redis(async () => {
      const before = await this.#records.requestCancel(job.id);
      if (before === undefined) return false;
      if (before === "IN_QUEUE" && (await this.#removeQueued(job.id, "CANCELLED", { type: "cancelled", message: "the request was cancelled" }))) return true;
      // Running (here or on another gateway), or being taken right now: the gateway holding it cancels it at its ranks.
      this.#cancelTaken(job.id);
      this.#bus.publish({ kind: "cancel", id: job.id });
      return true;
    });
  }

  async retry(job: Job): Promise<boolean> {
    const dispatcher = this.#dispatcher(job.app);
    if (this.#closing) return false;
    // It failed here a moment ago: let its end reach Redis first, or the record would not be final yet.
    const taken = this.#taken.get(job.id);
    if (taken?.job?.finished) await taken.left;
    return this.#redis(async () => {
      const entry = `${job.id}-${Date.now().toString(36)}`;
      if (!(await this.#records.reset(job.id, entry))) return false;
      const { queue } = await this.#appQueue(dispatcher.app.name);
      await queue.add("job", { id: job.id }, { jobId: entry, priority: PRIORITY[job.priority], removeOnComplete: true, removeOnFail: true });
      await this.#reload(job.id);
      this.#bus.publish({ kind: "status", id: job.id });
      return true;
    });
  }

  async purge(app: string): Promise<number> {
    this.#dispatcher(app);
    return this.#redis(async () => {
      const { queue } = await this.#appQueue(app);
      const redis = this.#init.connections.commands;
      const entries = [...(await redis.zrange(this.#key(queue, "prioritized"), 0, -1)), ...(await redis.lrange(this.#key(queue, "wait"), 0, -1))];
      let removed = 0;
      for (const entry of entries) {
        // A retry's entry is `<id>-<suffix>`; ids are UUIDs.
        if (await this.#removeQueued(entry.slice(0, 36), "CANCELLED", { type: "cancelled", message: "the request was cancelled (queue purged)" }, entry)) removed++;
      }
      return removed;
    });
  }

  async health(app: string): Promise<AppHealth> {
    const dispatcher = this.#dispatcher(app);
    const counts = await this.#redis(async () => (await this.#appQueue(app)).queue.getJobCounts("prioritized", "wait", "active"));
    return {
      jobs: { ...dispatcher.stats(), inQueue: (counts.prioritized ?? 0) + (counts.wait ?? 0), inProgress: counts.active ?? 0 },
      runners: dispatcher.pool.counts(),
    };
  }

  async recentJobs(app: string, limit: number): Promise<Job[]> {
    return this.#redis(async () => {
      const records = await this.#records.loadMany(await this.#records.recentIds(app, limit));
      return Promise.all(records.map((record) => this.#taken.get(record.id)?.job ?? this.#adopt(record, false)));
    });
  }

  /** Starts a BullMQ worker for each app served now, and stops those of apps no longer served. */
  async syncApps(): Promise<void> {
    if (this.#closing) return;
    const names = new Set(this.#init.table.dispatchers.keys());
    await Promise.all([...names].map((name) => this.#appQueue(name)));
    // An app replaced at run time (`update`) may take more or fewer jobs at once.
    for (const [name, app] of this.#apps) {
      const dispatcher = this.#init.table.dispatchers.get(name);
      if (dispatcher) app.worker.concurrency = workerConcurrency(dispatcher);
    }
    for (const [name, app] of this.#apps) {
      if (names.has(name)) continue;
      this.#apps.delete(name);
      void app.worker
        .close()
        .then(() => app.queue.close())
        .then(() => this.#init.connections.release(app.connection))
        .catch(() => {});
    }
  }

  /**
   * Stops taking jobs; drains the apps (`drain` is the table's close, which
   * hands back what it could not finish in the grace), then lets go of Redis.
   * Queued jobs stay in Redis for the other gateways, or this one restarted.
   */
  async close(drain: () => Promise<void>): Promise<void> {
    this.#closing = true;
    clearInterval(this.#resync);
    // Stop fetching first; each worker's close resolves once its processors returned.
    const stopped = [...this.#apps.values()].map((app) => app.worker.close());
    const { connections } = this.#init;
    // While Redis is away, BullMQ's close and the writes of what just ended would wait for it without end: a gateway
    // told to stop stops. A job whose end could not be written stays claimed in Redis and runs again once the claim lapses.
    let gaveUp: () => void = () => {};
    const lost = new Promise<void>((resolve) => (gaveUp = resolve));
    const letGo = (): void => {
      gaveUp();
      this.#log.warn("closing while Redis is unreachable: a job whose end could not be written runs again on another gateway after stalledAfter");
      connections.disconnect();
      // Each worker's own blocking connection too (BullMQ's close is then not waited for: it may still wait on its fetch).
      for (const app of this.#apps.values()) void app.worker.disconnect().catch(() => {});
    };
    connections.commands.once("close", letGo);
    await drain();
    if (!connections.ready) letGo();
    await Promise.race([Promise.allSettled(stopped), lost]);
    connections.commands.off("close", letGo);
    await Promise.allSettled([...this.#apps.values()].map((app) => app.queue.close()));
    this.#apps.clear();
    await connections.quit();
  }

  // --- taking jobs ---------------------------------------------------------

  async #appQueue(name: string): Promise<AppQueue> {
    let app = this.#apps.get(name);
    if (app) return app;
    const dispatcher = this.#dispatcher(name);
    const { connections, options } = this.#init;
    const prefix = `${options.prefix}:bull`;
    const queue = new Queue(name, { connection: connections.commands as never, prefix, skipWaitingForReady: true });
    queue.on("error", (error) => this.#log.warn({ err: error, app: name }, "BullMQ queue error"));
    const connection = connections.duplicateBlocking();
    const worker = new Worker(name, (bullJob, token) => this.#process(name, bullJob, token), {
      connection: connection as never,
      prefix,
      concurrency: workerConcurrency(dispatcher),
      // A claim lapses after stalledAfter without renewal; the check runs twice as often, so a lost job waits at most ~2x.
      lockDuration: options.stalledAfterMs,
      stalledInterval: Math.max(500, Math.round(options.stalledAfterMs / 2)),
      // Recoveries are counted on the record (maxRecoveries), not by BullMQ, which would drop the job silently.
      maxStalledCount: 1_000_000,
      autorun: true,
    });
    worker.on("error", (error) => this.#log.warn({ err: error, app: name }, "BullMQ worker error"));
    app = { queue, worker, connection };
    this.#apps.set(name, app);
    return app;
  }

  async #process(appName: string, bullJob: BullJob, token: string | undefined): Promise<void> {
    const id = String((bullJob.data as { id?: unknown }).id ?? "");
    const dispatcher = this.#init.table.dispatchers.get(appName);
    if (!dispatcher || this.#closing || !token) {
      // Not served here (any more): back to the queue for a gateway that serves it.
      if (token) await bullJob.moveToWait(token);
      throw new WaitingError();
    }
    let left!: () => void;
    const taken: TakenJob = { cancelRequested: false, left: new Promise<void>((resolve) => (left = resolve)) };
    this.#taken.set(id, taken);
    const owner = `${this.#bus.gatewayId}:${token}`;
    let writer: JobWriter | undefined;
    try {
      const claim = await this.#records.claim(id, owner);
      if (claim.outcome !== "claimed") return; // Finished while it waited (or its record expired): nothing to run.
      const mine = this.#jobs.get(id);
      if (mine && mine.job.input !== undefined && mine.job.status === "IN_QUEUE" && claim.status === "IN_QUEUE" && claim.logSeq === mine.logSeq) {
        // Submitted here and untouched since: this gateway holds all the record says; run it without reading it back.
        const { job } = mine;
        Object.assign(taken, { job, buffer: mine.buffer, dispatcher });
        writer = new JobWriter(job, owner, this.#records, this.#bus, this.#log);
        await this.#runHere(job, claim.cancelRequested || taken.cancelRequested, dispatcher, writer, bullJob, token);
        return;
      }
      const record = await this.#records.load(id);
      const inputJson = await this.#records.input(id);
      if (!record || inputJson === undefined) return;
      const known = this.#jobs.get(id);
      const { job, buffer } = known ?? this.#newJob(initOf(record), JSON.parse(inputJson));
      if (known) {
        job.supplyInput(JSON.parse(inputJson));
        job.restoreLogs(await this.#records.logs(id));
        known.logSeq = record.logSeq;
      }
      this.#jobs.set(id, { job, buffer, logSeq: record.logSeq, version: record.version });
      Object.assign(taken, { job, buffer, dispatcher });
      writer = new JobWriter(job, owner, this.#records, this.#bus, this.#log);
      const lost = record.state.status === "IN_PROGRESS";
      // Where the job stands before it runs here: queued, with what it already went through.
      job.restore({ ...record.state, status: "IN_QUEUE", cancelRequested: record.state.cancelRequested || taken.cancelRequested });
      if (lost) {
        buffer.clear();
        if (claim.recoveries > this.#init.options.maxRecoveries) {
          job.fail("FAILED", { type: "runner_crash", message: `the gateway running this request was lost ${claim.recoveries} times; giving up` });
          this.#init.onFinished(job);
          return;
        }
        job.log("WARN", `the gateway running attempt ${record.state.attempts} was lost; running the request again here`, "gateway");
      }
      await this.#runHere(job, job.cancelRequested, dispatcher, writer, bullJob, token);
    } catch (error) {
      if (error instanceof WaitingError) throw error;
      this.#log.error({ err: error, job: id }, "running a job from the Redis queue failed");
      const job = taken.job;
      if (job && !job.finished) {
        job.fail("FAILED", { type: "runner_crash", message: `the gateway could not run the request: ${(error as Error).message}` });
        this.#init.onFinished(job);
      }
    } finally {
      // The job leaves BullMQ's queue only once its record says how it ended.
      if (writer) {
        await writer.flushed();
        writer.detach();
      }
      this.#taken.delete(id);
      left();
      const known = this.#jobs.get(id);
      if (known?.job.finished) known.finishedAt = Date.now();
    }
  }

  /**
   * Runs a claimed job on this gateway's dispatcher, unless it was cancelled or its start deadline passed while
   * it waited (it ends here then); one handed back at shutdown goes back to BullMQ's queue.
   */
  async #runHere(job: Job, cancelled: boolean, dispatcher: Dispatcher, writer: JobWriter, bullJob: BullJob, token: string): Promise<void> {
    if (cancelled || (job.startTimeoutMs !== undefined && Date.now() - job.createdAt > job.startTimeoutMs)) {
      if (cancelled) job.cancel();
      else job.fail("TIMED_OUT", startTimeoutError(job));
      this.#init.onFinished(job);
      return;
    }
    const outcome = await dispatcher.runTaken(job);
    if (outcome === "handed-back") {
      await writer.flushed();
      await bullJob.moveToWait(token);
      throw new WaitingError();
    }
  }

  /** Cancels the job if this gateway runs it. */
  #cancelTaken(id: string): void {
    const taken = this.#taken.get(id);
    if (!taken) return;
    taken.cancelRequested = true;
    if (taken.job && taken.dispatcher) void taken.dispatcher.cancel(taken.job);
  }

  // --- jobs other gateways run ---------------------------------------------

  #onMessage(message: BusMessage): void {
    switch (message.kind) {
      case "cancel":
        this.#cancelTaken(message.id);
        return;
      case "taken":
        this.#taken.get(message.id)?.buffer?.wake();
        return;
      case "chunk":
        if (!this.#taken.has(message.id)) this.#jobs.get(message.id)?.job.chunkArrived();
        return;
      case "log": {
        const known = this.#jobs.get(message.id);
        if (!known || this.#taken.has(message.id)) return;
        if (message.seq === known.logSeq + 1) {
          known.logSeq = message.seq;
          known.job.addLog(message.log);
        } else if (message.seq > known.logSeq) void this.#reload(message.id);
        return;
      }
      case "status":
        if (this.#jobs.has(message.id) && !this.#taken.has(message.id)) void this.#reload(message.id);
        return;
    }
  }

  /** Reads a job's record again into the object handed out here. */
  async #reload(id: string): Promise<void> {
    try {
      const record = await this.#records.load(id);
      if (record && !this.#taken.has(id)) await this.#adopt(record);
    } catch (error) {
      this.#log.debug({ err: error, job: id }, "could not read a job's record");
    }
  }

  /**
   * The object handed out for a record: the one already here (brought up to
   * date: logs first, so a watcher woken by the status sees every line), or a new one.
   */
  async #adopt(record: StoredJob, keep = true): Promise<Job> {
    // A job this gateway started running while the record was read is ahead of it: restoring would roll it back.
    const running = this.#taken.get(record.id)?.job;
    if (running) return running;
    let known = this.#jobs.get(record.id);
    if (!known) {
      const made = this.#newJob(initOf(record), undefined);
      known = { ...made, logSeq: 0, version: -1 };
      if (keep || !isFinalStatus(record.state.status)) this.#jobs.set(record.id, known);
    }
    if (record.logSeq > known.logSeq) {
      const logs = await this.#records.logs(record.id);
      // Another read may have brought it further meanwhile.
      if (record.logSeq > known.logSeq) {
        known.logSeq = record.logSeq;
        const had = known.job.logs.length;
        known.job.restoreLogs(logs);
        for (const log of known.job.logs.slice(had)) known.job.emit("log", log);
      }
    }
    if (this.#taken.has(record.id)) return known.job;
    // Reads race each other (a re-read, an event's read): an earlier state arriving late must not roll the job back.
    if (record.version < known.version) return known.job;
    known.version = record.version;
    known.job.restore(record.state);
    if (known.job.finished) known.finishedAt ??= Date.now();
    return known.job;
  }

  /** Reads the jobs handed out here that are not finished, and forgets finished ones after a while. */
  async #resyncWatched(): Promise<void> {
    await this.#checkCancels();
    const now = Date.now();
    const watched: string[] = [];
    for (const [id, known] of this.#jobs) {
      if (this.#taken.has(id)) continue;
      if (known.finishedAt !== undefined && known.job.finished) {
        if (now - known.finishedAt > KEEP_FINISHED_MS) this.#jobs.delete(id);
        continue;
      }
      watched.push(id);
    }
    if (watched.length === 0 || !this.#init.connections.ready) return;
    try {
      const records = await this.#records.loadMany(watched);
      const found = new Set(records.map((record) => record.id));
      for (const record of records) if (!this.#taken.has(record.id)) await this.#adopt(record);
      // A record that expired: nothing will ever change it.
      for (const id of watched) if (!found.has(id)) this.#jobs.delete(id);
    } catch (error) {
      this.#log.debug({ err: error }, "could not re-read watched jobs");
    }
  }

  /** A cancel relayed while this gateway's subscriber was reconnecting is lost: the record still says it. */
  async #checkCancels(): Promise<void> {
    const running = [...this.#taken].filter(([, taken]) => taken.job && !taken.job.finished && !taken.job.cancelRequested).map(([id]) => id);
    if (running.length === 0 || !this.#init.connections.ready) return;
    try {
      for (const record of await this.#records.loadMany(running)) if (record.state.cancelRequested) this.#cancelTaken(record.id);
    } catch (error) {
      this.#log.debug({ err: error }, "could not check running jobs for cancels");
    }
  }

  // --- helpers -------------------------------------------------------------

  #newJob(init: ConstructorParameters<typeof Job>[0], input: unknown): { job: Job; buffer: RedisChunkBuffer } {
    const { connections } = this.#init;
    let job: Job | undefined;
    const buffer = new RedisChunkBuffer({
      commands: connections.commands,
      writer: connections.blocking,
      hashKey: this.#records.key(init.id),
      listKey: this.#records.chunksKey(init.id),
      highWaterMark: init.chunkHighWaterMark ?? this.#init.chunkHighWaterMark,
      onTaken: () => {
        this.#taken.get(init.id)?.buffer?.wake();
        this.#bus.publish({ kind: "taken", id: init.id });
      },
      onStored: () => {
        job?.chunkArrived();
        this.#bus.publish({ kind: "chunk", id: init.id });
      },
    });
    job = new Job({ ...init, input, chunks: buffer });
    return { job, buffer };
  }

  /** Takes a queued job out of BullMQ and finishes its record; false when it was not waiting (taken, or gone). */
  async #removeQueued(id: string, status: "CANCELLED" | "TIMED_OUT", error: JobError, entry?: string): Promise<boolean> {
    const record = await this.#records.load(id);
    if (!record || record.state.status !== "IN_QUEUE") return false;
    const { queue } = await this.#appQueue(record.app).catch(() => ({ queue: undefined }));
    if (!queue) return false;
    if ((await queue.remove(entry ?? record.entry)) !== 1) return false;
    if (!(await this.#records.finishQueued(id, status, error))) return false;
    await this.#records.appendLog(id, "", { message: error.message, level: "ERROR", source: "gateway", timestamp: new Date().toISOString() });
    this.#bus.publish({ kind: "status", id });
    await this.#reload(id);
    const job = this.#jobs.get(id)?.job;
    if (job?.finished) this.#init.onFinished(job);
    return true;
  }

  /** x-fal-request-timeout: a job still queued at its deadline ends TIMED_OUT (the gateway taking it checks too). */
  #startTimer(job: Job): void {
    if (job.startTimeoutMs === undefined) return;
    const timer = new LongTimer(Math.max(0, job.startTimeoutMs - (Date.now() - job.createdAt)), () => {
      if (job.status !== "IN_QUEUE") return;
      void this.#removeQueued(job.id, "TIMED_OUT", startTimeoutError(job)).catch(
        (error: unknown) => this.#log.warn({ err: error, job: job.id }, "could not time out a queued job"),
      );
    }).unref();
    void job.done.then(() => timer.cancel());
    job.once("status", (status) => {
      if (status === "IN_PROGRESS") timer.cancel();
    });
  }

  /** A BullMQ key of `queue` (`<prefix>:bull:<app>:<type>`). */
  #key(queue: Queue, type: string): string {
    return queue.toKey(type);
  }

  /** @throws {AppNotFoundError} */
  #dispatcher(name: string): Dispatcher {
    const dispatcher = this.#init.table.dispatchers.get(name);
    if (!dispatcher) throw new AppNotFoundError(name);
    return dispatcher;
  }

  /** Runs a Redis operation for a request: a lost connection becomes a 503 ({@link QueueUnavailableError}), not a 500. */
  async #redis<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      throw this.#init.connections.unavailable(error);
    }
  }
}

/** As many jobs as the app's runners can run at once: a gateway takes no job it would have to hold back. */
function workerConcurrency(dispatcher: Dispatcher): number {
  return Math.max(1, dispatcher.app.maxRunners * dispatcher.app.concurrency);
}

/** The options a record's job was created with. */
function initOf(record: StoredJob): ConstructorParameters<typeof Job>[0] {
  return {
    id: record.id,
    app: record.app,
    input: undefined,
    priority: record.priority,
    streaming: record.streaming,
    timeoutMs: record.timeoutMs,
    protocol: record.protocol,
    chunkHighWaterMark: record.chunkHighWaterMark,
    createdAt: record.createdAt,
    ...(record.startTimeoutMs === undefined ? {} : { startTimeoutMs: record.startTimeoutMs }),
    ...(record.webhookUrl === undefined ? {} : { webhookUrl: record.webhookUrl }),
  };
}

