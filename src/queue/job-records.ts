/**
 * Job records in Redis: what the protocols answer from (status, logs,
 * result or error, timing), readable by every gateway on the same Redis.
 *
 * Keys, under the queue's prefix `P`:
 * - `P:job:<id>` a hash: identity, options and {@link JobState} fields, the
 *   owner (the gateway claim running it), `logSeq`, `chunkBytes`, `recoveries`;
 * - `P:job:<id>:input` the input as JSON (read once, by the gateway that runs it);
 * - `P:job:<id>:logs` the last {@link MAX_LOGS} status log lines, as JSON;
 * - `P:job:<id>:chunks` unread stream chunks (see redis-chunk-buffer.ts);
 * - `P:recent:<app>` the app's last submissions, for the web page.
 *
 * State changes made by the gateway running a job are checked against its
 * claim in one script, so a gateway taken for dead (its job since recovered
 * elsewhere) cannot overwrite the new attempt, and a final state is written
 * once: one submission, one answer.
 */
import type { Redis } from "ioredis";
import { isFinalStatus, MAX_LOGS, type Job, type JobError, type JobLog, type JobPriority, type JobState, type JobStatus } from "../gateway/job.js";
import { RECENT_JOBS_PER_APP } from "../gateway/job-store.js";

/** What a record holds besides the input. */
export interface StoredJob {
  id: string;
  app: string;
  priority: JobPriority;
  streaming: boolean;
  protocol: "fal" | "runpod";
  timeoutMs: number;
  startTimeoutMs?: number | undefined;
  webhookUrl?: string | undefined;
  chunkHighWaterMark: number;
  createdAt: number;
  state: JobState;
  owner: string;
  /** The BullMQ job id of its current queue entry (a retry gets a new one). */
  entry: string;
  recoveries: number;
  logSeq: number;
  /** Counts state changes: a reader that saw a later one ignores an earlier read that arrives late. */
  version: number;
}

const FIELDS = [
  "app", "priority", "streaming", "protocol", "timeoutMs", "startTimeoutMs", "webhookUrl", "chunkHighWaterMark", "createdAt",
  "status", "startedAt", "finishedAt", "attempts", "outputJson", "error", "workerId", "cancelRequested", "owner", "entry", "recoveries", "logSeq", "version",
] as const;

const FINAL_LUA = "local function final(s) return s == 'COMPLETED' or s == 'FAILED' or s == 'CANCELLED' or s == 'TIMED_OUT' end\n";

/** KEYS: hash, logs, chunks, input. ARGV: owner, final ("1"/"0"), ttl ms, field, value, ... → 1 written, 0 refused. */
const WRITE_STATE = `${FINAL_LUA}
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if final(redis.call('HGET', KEYS[1], 'status')) then return 0 end
local cancel = redis.call('HGET', KEYS[1], 'cancelRequested')
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
-- A cancel asked for through another gateway stays asked for, whatever the runner had heard of it.
if cancel == '1' then redis.call('HSET', KEYS[1], 'cancelRequested', '1') end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[2] == '1' then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1`;

/** KEYS: hash, logs. ARGV: owner, entry JSON, max lines → the line's sequence number, or 0 when refused. */
const APPEND_LOG = `
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return redis.call('HINCRBY', KEYS[1], 'logSeq', 1)`;

/** KEYS: hash. ARGV: owner → {1, recoveries, status, cancelRequested, logSeq} claimed; {0} already final; {-1} no record. */
const CLAIM = `${FINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
if final(status) then return {0} end
local recoveries = tonumber(redis.call('HGET', KEYS[1], 'recoveries') or '0')
if status == 'IN_PROGRESS' then recoveries = redis.call('HINCRBY', KEYS[1], 'recoveries', 1) end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return {1, recoveries, status, redis.call('HGET', KEYS[1], 'cancelRequested') or '0', tonumber(redis.call('HGET', KEYS[1], 'logSeq') or '0')}`;

/** KEYS: hash, logs, chunks, input. ARGV: ttl ms, field, value, ... → 1 when a job still IN_QUEUE was finished. */
const FINISH_QUEUED = `
if redis.call('HGET', KEYS[1], 'status') ~= 'IN_QUEUE' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HSET', KEYS[1], 'owner', '')
redis.call('HINCRBY', KEYS[1], 'version', 1)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1`;

/** KEYS: hash, logs, chunks, input. ARGV: field, value, ... → 1 when a FAILED, TIMED_OUT or CANCELLED job went back IN_QUEUE. */
const RESET = `
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'FAILED' and status ~= 'TIMED_OUT' and status ~= 'CANCELLED' then return 0 end
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HSET', KEYS[1], 'owner', '', 'chunkBytes', 0)
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('DEL', KEYS[3])
for i = 1, 4 do redis.call('PERSIST', KEYS[i]) end
return 1`;

/** KEYS: hash. → the status before, when the job was not final and is now marked; '' otherwise. */
const REQUEST_CANCEL = `${FINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status or final(status) then return '' end
redis.call('HSET', KEYS[1], 'cancelRequested', '1')
return status`;

type Scripted = Redis & {
  mrWriteState(hash: string, logs: string, chunks: string, input: string, ...args: Array<string | number>): Promise<number>;
  mrAppendLog(hash: string, logs: string, owner: string, entry: string, max: number): Promise<number>;
  mrClaim(hash: string, owner: string): Promise<[number, number?, string?, string?, number?]>;
  mrFinishQueued(hash: string, logs: string, chunks: string, input: string, ...args: Array<string | number>): Promise<number>;
  mrReset(hash: string, logs: string, chunks: string, input: string, ...args: Array<string | number>): Promise<number>;
  mrRequestCancel(hash: string): Promise<string>;
};

/** Defines the scripts on a connection (each is sent once, then run by its hash). */
function defineRecordScripts(client: Redis): void {
  if ((client as unknown as Partial<Scripted>).mrClaim) return;
  client.defineCommand("mrWriteState", { numberOfKeys: 4, lua: WRITE_STATE });
  client.defineCommand("mrAppendLog", { numberOfKeys: 2, lua: APPEND_LOG });
  client.defineCommand("mrClaim", { numberOfKeys: 1, lua: CLAIM });
  client.defineCommand("mrFinishQueued", { numberOfKeys: 4, lua: FINISH_QUEUED });
  client.defineCommand("mrReset", { numberOfKeys: 4, lua: RESET });
  client.defineCommand("mrRequestCancel", { numberOfKeys: 1, lua: REQUEST_CANCEL });
}

/** Reads and writes job records. */
export class JobRecords {
  readonly prefix: string;
  readonly #commands: Scripted;
  readonly #writer: Scripted;
  readonly #ttlMs: number;

  /**
   * `commands`: requests' reads and writes (fail fast). `writer`: the running gateway's writes, which wait
   * for Redis to come back (a result reached while Redis is away is written when it returns).
   */
  constructor(commands: Redis, writer: Redis, prefix: string, resultTtlMs: number) {
    defineRecordScripts(commands);
    defineRecordScripts(writer);
    this.#commands = commands as unknown as Scripted;
    this.#writer = writer as unknown as Scripted;
    this.prefix = prefix;
    this.#ttlMs = resultTtlMs;
  }

  key(id: string): string {
    return `${this.prefix}:job:${id}`;
  }
  chunksKey(id: string): string {
    return `${this.prefix}:job:${id}:chunks`;
  }
  #keys(id: string): [string, string, string, string] {
    const key = this.key(id);
    return [key, `${key}:logs`, `${key}:chunks`, `${key}:input`];
  }

  /** Writes a new job's record and input, and notes it among its app's recent ones. */
  async create(job: Job, inputJson: string): Promise<void> {
    const [hash, , , input] = this.#keys(job.id);
    const recent = `${this.prefix}:recent:${job.app}`;
    await this.#commands
      .multi()
      .hset(hash, {
        app: job.app,
        priority: job.priority,
        streaming: job.streaming ? "1" : "0",
        protocol: job.protocol,
        timeoutMs: job.timeoutMs,
        startTimeoutMs: job.startTimeoutMs ?? "",
        webhookUrl: job.webhookUrl ?? "",
        chunkHighWaterMark: job.chunkHighWaterMark,
        createdAt: job.createdAt,
        ...stateFields(job.state),
        owner: "",
        entry: job.id,
        recoveries: 0,
        logSeq: 0,
        version: 0,
        chunkBytes: 0,
      })
      .set(input, inputJson)
      .lpush(recent, job.id)
      .ltrim(recent, 0, RECENT_JOBS_PER_APP - 1)
      .exec()
      .then(throwExecErrors);
  }

  /** The record of `id` (no input), or `undefined` when there is none (never was, or expired). */
  async load(id: string): Promise<StoredJob | undefined> {
    return parseRecord(id, await this.#commands.hmget(this.key(id), ...FIELDS));
  }

  /** The records of several ids, in one round trip; missing ones are left out. */
  async loadMany(ids: readonly string[]): Promise<StoredJob[]> {
    if (ids.length === 0) return [];
    const pipeline = this.#commands.pipeline();
    for (const id of ids) pipeline.hmget(this.key(id), ...FIELDS);
    const results = (await pipeline.exec()) ?? [];
    const records: StoredJob[] = [];
    results.forEach(([error, values], index) => {
      if (error) throw error;
      const record = parseRecord(ids[index]!, values as Array<string | null>);
      if (record) records.push(record);
    });
    return records;
  }

  /** The job's status log lines, oldest first. */
  async logs(id: string): Promise<JobLog[]> {
    return (await this.#commands.lrange(`${this.key(id)}:logs`, 0, -1)).map((line) => JSON.parse(line) as JobLog);
  }

  /** The job's input, as JSON text (`undefined` once expired). */
  async input(id: string): Promise<string | undefined> {
    return (await this.#writer.get(`${this.key(id)}:input`)) ?? undefined;
  }

  /** The ids of `app`'s last submissions, newest first. */
  async recentIds(app: string, limit: number): Promise<string[]> {
    return this.#commands.lrange(`${this.prefix}:recent:${app}`, 0, Math.max(0, limit - 1));
  }

  /**
   * Makes `owner` the claim running the job. `recoveries` counts claims of a job whose last gateway was lost;
   * `status` (before the claim), `cancelRequested` and `logSeq` let a gateway that holds the job already skip reading it.
   */
  async claim(id: string, owner: string): Promise<{ outcome: "claimed"; recoveries: number; status: JobStatus; cancelRequested: boolean; logSeq: number } | { outcome: "final" | "missing" }> {
    const [code, recoveries, status, cancelRequested, logSeq] = await this.#writer.mrClaim(this.key(id), owner);
    if (code === 1) return { outcome: "claimed", recoveries: Number(recoveries ?? 0), status: status as JobStatus, cancelRequested: cancelRequested === "1", logSeq: Number(logSeq ?? 0) };
    return { outcome: code === 0 ? "final" : "missing" };
  }

  /** Writes the running job's state, if `owner` still holds it and it is not final; a final state starts the TTL. */
  async writeState(id: string, owner: string, state: JobState): Promise<boolean> {
    const final = isFinalStatus(state.status);
    const fields = Object.entries(stateFields(state)).flat();
    return (await this.#writer.mrWriteState(...this.#keys(id), owner, final ? "1" : "0", this.#ttlMs, ...fields)) === 1;
  }

  /** Appends a status log line (checked against `owner` unless it is ""); returns its sequence number, 0 when refused. */
  async appendLog(id: string, owner: string, entry: JobLog): Promise<number> {
    const [hash, logs] = this.#keys(id);
    return Number(await this.#writer.mrAppendLog(hash, logs, owner, JSON.stringify(entry), MAX_LOGS));
  }

  /** Finishes a job that nobody runs (it was taken out of the queue): only while it is IN_QUEUE. */
  async finishQueued(id: string, status: "CANCELLED" | "TIMED_OUT", error: JobError): Promise<boolean> {
    const fields = Object.entries({ status, finishedAt: Date.now(), error: JSON.stringify(error), cancelRequested: status === "CANCELLED" ? "1" : "0" }).flat();
    return (await this.#commands.mrFinishQueued(...this.#keys(id), this.#ttlMs, ...fields)) === 1;
  }

  /** Puts a FAILED, TIMED_OUT or CANCELLED job back IN_QUEUE (Runpod `/retry`); false for other states or an expired input. */
  async reset(id: string, entry: string): Promise<boolean> {
    const fields = Object.entries({ ...stateFields({ status: "IN_QUEUE", attempts: 0, cancelRequested: false }), entry, recoveries: 0 }).flat();
    return (await this.#commands.mrReset(...this.#keys(id), ...fields)) === 1;
  }

  /** Marks a job's cancel as asked for; returns its status then, or `undefined` when it had finished (or is unknown). */
  async requestCancel(id: string): Promise<JobStatus | undefined> {
    const status = await this.#commands.mrRequestCancel(this.key(id));
    return status === "" ? undefined : (status as JobStatus);
  }
}

function stateFields(state: Partial<JobState> & Pick<JobState, "status" | "attempts" | "cancelRequested">): Record<string, string | number> {
  return {
    status: state.status,
    startedAt: state.startedAt ?? "",
    finishedAt: state.finishedAt ?? "",
    attempts: state.attempts,
    outputJson: state.outputJson ?? "",
    error: state.error ? JSON.stringify(state.error) : "",
    workerId: state.workerId ?? "",
    cancelRequested: state.cancelRequested ? "1" : "0",
  };
}

function parseRecord(id: string, values: Array<string | null>): StoredJob | undefined {
  const get = (name: (typeof FIELDS)[number]): string | undefined => {
    const value = values[FIELDS.indexOf(name)];
    return value === null || value === undefined || value === "" ? undefined : value;
  };
  const app = get("app");
  const status = get("status") as JobStatus | undefined;
  if (app === undefined || status === undefined) return undefined;
  const number = (name: (typeof FIELDS)[number]): number | undefined => {
    const value = get(name);
    return value === undefined ? undefined : Number(value);
  };
  const error = get("error");
  return {
    id,
    app,
    priority: get("priority") === "low" ? "low" : "normal",
    streaming: get("streaming") === "1",
    protocol: get("protocol") === "runpod" ? "runpod" : "fal",
    timeoutMs: number("timeoutMs") ?? 0,
    startTimeoutMs: number("startTimeoutMs"),
    webhookUrl: get("webhookUrl"),
    chunkHighWaterMark: number("chunkHighWaterMark") ?? 4 * 1024 * 1024,
    createdAt: number("createdAt") ?? Date.now(),
    state: {
      status,
      startedAt: number("startedAt"),
      finishedAt: number("finishedAt"),
      attempts: number("attempts") ?? 0,
      // COMPLETED may hold "" only if a worker returned nothing: JSON for that is "null", never "".
      outputJson: values[FIELDS.indexOf("outputJson")] || undefined,
      error: error === undefined ? undefined : (JSON.parse(error) as JobError),
      workerId: get("workerId"),
      cancelRequested: get("cancelRequested") === "1",
    },
    owner: get("owner") ?? "",
    entry: get("entry") ?? id,
    recoveries: number("recoveries") ?? 0,
    logSeq: number("logSeq") ?? 0,
    version: number("version") ?? 0,
  };
}

function throwExecErrors(results: Array<[Error | null, unknown]> | null): void {
  for (const [error] of results ?? []) if (error) throw error;
}
