import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { pack, unpack } from "../../src/codec/packer.js";
import { createProcessGroup } from "../../src/collectives/index.js";
import { openRunnerChannel, type RunnerChannel } from "../../src/transport/control-channel.js";
import type { RankMessage, RunnerMessage, StreamItem } from "../../src/transport/messages.js";
import type { CallContext } from "../../src/worker/call-context.js";
import { DistributedWorker } from "../../src/worker/distributed-worker.js";
import { RankRuntime } from "../../src/worker/rank-runtime.js";
import { RequestLogStream } from "../../src/worker/request-log.js";

/**
 * A rank runtime in this process, over a unix control socket, with a world of
 * one (no group sockets): the runner's side of the protocol is played here.
 * Nothing is spawned.
 */

class Events extends DistributedWorker<{ log?: string }, string> {
  override async call(input: { log?: string }, ctx: CallContext): Promise<string> {
    if (input.log) ctx.log.info("%s from request %d", input.log, ctx.requestId);
    await this.addStreamingResult({ n: 1 });
    await this.addStreamingResult({ n: 2 }, { asTextEvent: true });
    return "end";
  }
}

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startRank() {
  const dir = mkdtempSync(join(tmpdir(), "multirank-rank-runtime-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const quiet = pino({ level: "silent" });
  const runner: RunnerChannel = await openRunnerChannel(`unix:${join(dir, "control.sock")}`, { maxMessageBytes: MAX_MESSAGE_BYTES, log: quiet });
  cleanups.push(() => runner.close());
  let runtime: RankRuntime | undefined;
  // The rank's logger as rank-main builds it: ctx.log records reach the runtime as values.
  const logger = pino({ level: "info" }, pino.multistream([{ level: "info", stream: new RequestLogStream((record) => runtime?.forwardLog(record)) }]));
  const exits: number[] = [];
  runtime = new RankRuntime({
    env: {
      rank: 0,
      worldSize: 1,
      masterAddr: "127.0.0.1",
      masterPort: 1,
      controlEndpoint: runner.endpoint,
      routingId: "rank-0",
      token: "t",
      workerModule: "unused",
      errorFile: undefined,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      deathPipeFd: undefined,
      logLevel: "info",
      curve: undefined,
      streamWindow: 1024 * 1024,
      groupSecret: undefined,
    },
    logger,
    device: { kind: "cpu", cpus: [0] },
    loadWorker: async () => Events,
    createGroup: () => createProcessGroup({ rank: 0, size: 1, masterAddr: "127.0.0.1", masterPort: 1, logger: quiet }),
    exit: (code) => void exits.push(code),
  });
  void runtime.run();
  const inbox = runner[Symbol.asyncIterator]();
  let identity: Buffer | undefined;
  const next = async (): Promise<RankMessage> => {
    const { value, done } = await inbox.next();
    if (done) throw new Error("the control channel closed");
    identity ??= value[0]!;
    return unpack<RankMessage>(value[1]!);
  };
  const send = (message: RunnerMessage): Promise<void> => runner.send([identity!, pack(message)]);
  // The rank ends as the runner ends it: teardown, then its answer.
  cleanups.push(async () => {
    await send({ t: "teardown" });
    while ((await next()).t !== "teardown-done");
    expect(exits).toEqual([0]);
  });
  expect(await next()).toMatchObject({ t: "hello", rank: 0 });
  await send({ t: "setup", args: {} });
  expect(await next()).toMatchObject({ t: "ready" });
  /** Sends a streaming request and collects what comes back until its `done`. */
  const request = async (id: number, extra: Partial<Extract<RunnerMessage, { t: "req" }>>) => {
    await send({ t: "req", id, payload: {}, streaming: true, ...extra });
    const items: StreamItem[] = [];
    const logs: Array<Extract<RankMessage, { t: "log" }>> = [];
    for (;;) {
      const message = await next();
      if (message.t === "items") items.push(...message.items);
      else if (message.t === "log") logs.push(message);
      else if (message.t === "done") return { items, logs, done: message };
    }
  };
  return { request, exits };
}

function shape(item: StreamItem): unknown {
  return "event" in item ? { event: Buffer.from(item.event).toString("utf8") } : item;
}

describe("RankRuntime", () => {
  it("sends the request's streamed results as the worker asked when the req does not say asTextEvents", async () => {
    const { request } = await startRank();
    const { items, done } = await request(1, {});
    expect(items.map(shape)).toEqual([{ data: { n: 1 } }, { event: 'data: {"n":2}\n\n' }]);
    expect(done).toMatchObject({ ok: true, result: "end" });
  });

  it("with asTextEvents: true, every streamed result leaves the rank as a ready text event", async () => {
    const { request } = await startRank();
    const { items, done } = await request(2, { asTextEvents: true });
    expect(items.map(shape)).toEqual([{ event: 'data: {"n":1}\n\n' }, { event: 'data: {"n":2}\n\n' }]);
    // The final result stays a value: the runner formats it as it does today.
    expect(done).toMatchObject({ ok: true, result: "end" });
  });

  it("with asTextEvents: false, every streamed result leaves the rank as its value", async () => {
    const { request } = await startRank();
    const { items } = await request(3, { asTextEvents: false });
    expect(items.map(shape)).toEqual([{ data: { n: 1 } }, { data: { n: 2 } }]);
  });

  it("sends a ctx.log record to the runner as a log message of the request", async () => {
    const { request } = await startRank();
    const before = Date.now();
    const { logs } = await request(4, { payload: { log: "hello" } });
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ t: "log", id: 4, log: { level: 30, msg: "hello from request 4", rank: 0 } });
    expect(logs[0]!.log.time).toBeGreaterThanOrEqual(before);
    expect(Object.keys(logs[0]!.log).sort()).toEqual(["level", "msg", "rank", "time"]);
  });
});
