/**
 * A streaming job's unread chunks in Redis (`<prefix>:job:<id>:chunks`), so a
 * reader on any gateway takes each once. The producer (the gateway running
 * the job) waits, past the high-water mark, until a reader took some: the
 * reader's gateway sends `taken`, and the producer also looks again every
 * half second in case that message was lost.
 */
import type { Redis } from "ioredis";
import { MAX_UNREAD_CHUNKS, type ChunkBuffer } from "../gateway/chunk-buffer.js";

/** KEYS: list, hash. ARGV: frame → {bytes now, frames now}. */
const PUSH = `
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
local bytes = redis.call('HINCRBY', KEYS[2], 'chunkBytes', string.len(ARGV[1]))
return {bytes, n}`;

/** KEYS: list, hash. → {frame or false, bytes before}. */
const TAKE = `
local frame = redis.call('LPOP', KEYS[1])
if not frame then return {false, 0} end
local before = tonumber(redis.call('HGET', KEYS[2], 'chunkBytes') or '0')
redis.call('HINCRBY', KEYS[2], 'chunkBytes', -string.len(frame))
return {frame, before}`;

/** KEYS: list, hash. → every frame. */
const TAKE_ALL = `
local frames = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'chunkBytes', 0) end
return frames`;

/** KEYS: list, hash → {bytes, frames}. */
const SIZE = `return {tonumber(redis.call('HGET', KEYS[2], 'chunkBytes') or '0'), redis.call('LLEN', KEYS[1])}`;

type Scripted = Redis & {
  mrChunkPush(list: string, hash: string, frame: Buffer): Promise<[number, number]>;
  mrChunkTake(list: string, hash: string): Promise<[Buffer | null, number]>;
  mrChunkTakeAll(list: string, hash: string): Promise<Buffer[]>;
  mrChunkSize(list: string, hash: string): Promise<[number, number]>;
  mrChunkTakeBuffer(list: string, hash: string): Promise<[Buffer | null, Buffer | number]>;
  mrChunkTakeAllBuffer(list: string, hash: string): Promise<Buffer[]>;
};

/** Defines the scripts on a connection; the `Buffer` variants return frames as bytes, untouched. */
function scripted(client: Redis): Scripted {
  const c = client as unknown as Scripted;
  if (!(c as Partial<Scripted>).mrChunkPush) {
    client.defineCommand("mrChunkPush", { numberOfKeys: 2, lua: PUSH });
    client.defineCommand("mrChunkTake", { numberOfKeys: 2, lua: TAKE });
    client.defineCommand("mrChunkTakeAll", { numberOfKeys: 2, lua: TAKE_ALL });
    client.defineCommand("mrChunkSize", { numberOfKeys: 2, lua: SIZE });
  }
  return c;
}

/** What the buffer needs from the rest of the queue. */
export interface RedisChunkBufferInit {
  /** Readers' commands (fail fast). */
  commands: Redis;
  /** The producer's writes (wait for Redis to return). */
  writer: Redis;
  /** The job's hash key and its chunk list key. */
  hashKey: string;
  listKey: string;
  highWaterMark: number;
  /** Tells the producer's gateway that a reader made room. */
  onTaken: () => void;
  /** Tells readers, here and on other gateways, that a chunk is stored. */
  onStored: () => void;
}

/** A {@link ChunkBuffer} in Redis. */
export class RedisChunkBuffer implements ChunkBuffer {
  readonly announces = true;
  readonly #init: RedisChunkBufferInit;
  readonly #commands: Scripted;
  readonly #writer: Scripted;
  #waiters: Array<() => void> = [];

  constructor(init: RedisChunkBufferInit) {
    this.#init = init;
    this.#commands = scripted(init.commands);
    this.#writer = scripted(init.writer);
  }

  /** Always a promise: the write's round trip is the producer's pace, and tells whether it must wait. */
  async push(frame: Buffer): Promise<void> {
    const generation = this.#releases;
    const [bytes, frames] = await this.#writer.mrChunkPush(this.#init.listKey, this.#init.hashKey, frame);
    this.#init.onStored();
    if (!this.#full(bytes, frames)) return;
    // Wait for a reader: a `taken` message, a release (the job ended or its attempt stopped), or a look every half second.
    while (this.#releases === generation) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 500);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
      if (this.#releases !== generation) return;
      const [nowBytes, nowFrames] = await this.#writer.mrChunkSize(this.#init.listKey, this.#init.hashKey);
      if (!this.#full(nowBytes, nowFrames)) return;
    }
  }

  async take(): Promise<Buffer | undefined> {
    const [frame, before] = await this.#commands.mrChunkTakeBuffer(this.#init.listKey, this.#init.hashKey);
    if (!frame) return undefined;
    if (Number(String(before)) > this.#init.highWaterMark) this.#init.onTaken();
    return frame;
  }

  async takeAll(): Promise<Buffer[]> {
    const frames = await this.#commands.mrChunkTakeAllBuffer(this.#init.listKey, this.#init.hashKey);
    if (frames.length > 0) this.#init.onTaken();
    return frames;
  }

  async count(): Promise<number> {
    const [, frames] = await this.#commands.mrChunkSize(this.#init.listKey, this.#init.hashKey);
    return Number(frames);
  }

  clear(): void {
    void this.#writer
      .multi()
      .del(this.#init.listKey)
      .hset(this.#init.hashKey, "chunkBytes", 0)
      .exec()
      .catch(() => {});
    this.release();
  }

  /** Counts releases: a producer waiting since before the last one stops waiting. */
  #releases = 0;

  release(): void {
    this.#releases++;
    this.wake();
  }

  /** A reader made room (on any gateway). */
  wake(): void {
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  #full(bytes: number, frames: number): boolean {
    return Number(bytes) > this.#init.highWaterMark || Number(frames) > MAX_UNREAD_CHUNKS;
  }
}
