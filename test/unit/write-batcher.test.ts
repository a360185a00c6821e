import { mkdtempSync, rmSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { connectRankChannel, openRunnerChannel, type RankChannel, type RunnerChannel } from "../../src/transport/control-channel.js";
import { COPY_MAX_BYTES, MessageDecoder } from "../../src/transport/stream-framing.js";
import { FLUSH_BYTES, WriteBatcher } from "../../src/transport/write-batcher.js";

const log = pino({ level: "silent" });
let dir: string | undefined;
const open: Array<RunnerChannel | RankChannel> = [];

afterEach(() => {
  for (const channel of open.splice(0)) channel.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

async function pair(): Promise<{ runner: RunnerChannel; rank: RankChannel; fromRank: AsyncIterator<Buffer[]>; fromRunner: AsyncIterator<Buffer[]> }> {
  dir = mkdtempSync(join(tmpdir(), "multirank-batch-"));
  const runner = await openRunnerChannel(`unix:${join(dir, "control.sock")}`, { maxMessageBytes: 64 * 1024 * 1024, log });
  const rank = connectRankChannel({ routingId: "r0", endpoint: runner.endpoint, maxMessageBytes: 64 * 1024 * 1024, lingerMs: 1000, log });
  open.push(runner, rank);
  const fromRank = runner[Symbol.asyncIterator]();
  // The runner knows the rank once its first message (after the identity) arrives.
  await rank.send([Buffer.from("hello")]);
  expect((await fromRank.next()).value[1].toString()).toBe("hello");
  return { runner, rank, fromRank, fromRunner: rank[Symbol.asyncIterator]() };
}

/** Small messages around large ones (written by reference), all sent in one turn. */
function mixedMessages(): Buffer[][] {
  const messages: Buffer[][] = [];
  for (let i = 0; i < 40; i++) {
    if (i % 10 === 5) messages.push([Buffer.from(`large ${i}`), Buffer.alloc(COPY_MAX_BYTES * 4 + i, i)]);
    else messages.push([Buffer.from(`small ${i}`), Buffer.alloc(i * 7, i)]);
  }
  return messages;
}

async function expectReceived(iterator: AsyncIterator<Buffer[]>, messages: Buffer[][], skip: number): Promise<void> {
  for (const frames of messages) {
    const { value, done } = await iterator.next();
    expect(done).toBe(false);
    const got = value.slice(skip);
    expect(got.length).toBe(frames.length);
    for (let f = 0; f < frames.length; f++) expect(Buffer.compare(got[f]!, frames[f]!)).toBe(0);
  }
}

describe("batched writes on the unix control channel", () => {
  it("messages sent in one turn, a large one among small ones, arrive intact and in order (rank to runner)", async () => {
    const { rank, fromRank } = await pair();
    const messages = mixedMessages();
    // Batched (a request's end) and immediate messages (everything else) mixed: the order holds across both.
    await Promise.all(messages.map((frames, i) => rank.send(frames, { batch: i % 3 !== 0 })));
    await expectReceived(fromRank, messages, 1);
  });

  it("messages sent in one turn, a large one among small ones, arrive intact and in order (runner to rank)", async () => {
    const { runner, fromRunner } = await pair();
    const messages = mixedMessages();
    await Promise.all(messages.map((frames) => runner.send([Buffer.from("r0"), ...frames])));
    await expectReceived(fromRunner, messages, 0);
  });

  it("what a rank sent just before it closed the channel still arrives", async () => {
    const { rank, fromRank } = await pair();
    void rank.send([Buffer.from("last words")], { batch: true });
    rank.close();
    expect((await fromRank.next()).value[1].toString()).toBe("last words");
  });

  it("what the runner sent just before it closed the channel still arrives", async () => {
    const { runner, fromRunner } = await pair();
    void runner.send([Buffer.from("r0"), Buffer.from("goodbye")]);
    runner.close();
    expect((await fromRunner.next()).value[0].toString()).toBe("goodbye");
  });
});

/** A socket stand-in that records each write. */
function fakeSocket(): net.Socket & { writes: Buffer[] } {
  const writes: Buffer[] = [];
  return { writes, destroyed: false, writable: true, write: (chunk: Buffer) => writes.push(Buffer.from(chunk)) > 0 } as unknown as net.Socket & { writes: Buffer[] };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("WriteBatcher", () => {
  it("writes the messages of one turn with one write, at the end of the turn, in order", async () => {
    const socket = fakeSocket();
    const batcher = new WriteBatcher(socket);
    batcher.push(Buffer.from("a"));
    batcher.push(Buffer.from("bc"));
    batcher.push(Buffer.from("def"));
    expect(socket.writes).toHaveLength(0);
    expect(batcher.pendingBytes).toBe(6);
    await turn();
    expect(socket.writes.map(String)).toEqual(["abcdef"]);
    batcher.push(Buffer.from("g"));
    await turn();
    expect(socket.writes.map(String)).toEqual(["abcdef", "g"]);
  });

  it("flushes at once past FLUSH_BYTES, and a flush writes only what is pending", async () => {
    const socket = fakeSocket();
    const batcher = new WriteBatcher(socket);
    batcher.push(Buffer.alloc(FLUSH_BYTES - 1, 1));
    expect(socket.writes).toHaveLength(0);
    batcher.push(Buffer.alloc(1, 2));
    expect(socket.writes).toHaveLength(1);
    expect(socket.writes[0]!.byteLength).toBe(FLUSH_BYTES);
    batcher.flush();
    await turn();
    expect(socket.writes).toHaveLength(1);
  });

  it("drops what is pending when the socket closed meanwhile", async () => {
    const socket = fakeSocket();
    const batcher = new WriteBatcher(socket);
    batcher.push(Buffer.from("lost"));
    (socket as { destroyed: boolean }).destroyed = true;
    await turn();
    expect(socket.writes).toHaveLength(0);
  });

  it("a batch decodes back into its messages", async () => {
    const socket = fakeSocket();
    const batcher = new WriteBatcher(socket);
    const { encodeMessage } = await import("../../src/transport/stream-framing.js");
    for (let i = 0; i < 5; i++) batcher.push(encodeMessage([Buffer.from(`m${i}`)]));
    await turn();
    expect(socket.writes).toHaveLength(1);
    const got: string[] = [];
    new MessageDecoder(
      (frames) => got.push(frames[0]!.toString()),
      (why) => got.push(`malformed: ${why}`),
    ).push(socket.writes[0]!);
    expect(got).toEqual(["m0", "m1", "m2", "m3", "m4"]);
  });
});
