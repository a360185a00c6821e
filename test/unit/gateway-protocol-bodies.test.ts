/**
 * The exact bytes of the Runpod answers and fal webhook bodies that carry a
 * job's JSON (made once, never re-encoded): every key in its place, the
 * output and stream chunks as the worker made them. In-process
 * (`server.inject`) with fake runners: nothing is spawned.
 */
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { formatTextEvent } from "../../src/codec/text-events.js";
import { createGateway, defineApp, type Gateway, type PoolRunner } from "../../src/server/index.js";
import { Job } from "../../src/gateway/job.js";
import { falWebhookBody } from "../../src/gateway/protocols/fal.js";
import { placeRawJson } from "../../src/gateway/protocols/raw-json.js";
import { runpodStatusBody } from "../../src/gateway/protocols/runpod.js";
import { FakeRunnerLifecycle } from "../helpers/fake-runner.js";

const OUTPUT = { text: 'a "quoted" \u2028 é', n: [1, 2.5, null], nested: { ok: true } };

/** Echoes `OUTPUT`, fails when asked; streams two chunks. */
class FakeRunner extends FakeRunnerLifecycle {
  async invoke(payload: { fail?: boolean }): Promise<unknown> {
    if (payload.fail) throw new Error('it "broke"');
    return OUTPUT;
  }
  async *stream(payload: { fail?: boolean }): AsyncGenerator<Buffer> {
    if (payload.fail) throw new Error('it "broke"');
    yield formatTextEvent({ token: "a\nb" });
    yield formatTextEvent(OUTPUT);
  }
}

const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
});

async function gateway(): Promise<Gateway> {
  const created = await createGateway({
    apps: [defineApp({ name: "t/echo", worker: "/w.ts", keepAlive: 60, retries: { max: 0 } })],
    logger: pino({ level: "silent" }),
    host: { gpuCount: 0 },
    shutdownGrace: 1,
    createRunner: () => new FakeRunner() as unknown as PoolRunner,
  });
  gateways.push(created);
  return created;
}

/** Runpod's integer times vary: check them as numbers, the rest byte for byte. */
function timesAsZero(body: string): string {
  return body.replace(/"delayTime":\d+,"executionTime":\d+/, '"delayTime":0,"executionTime":0');
}

describe("Runpod answers, byte for byte", () => {
  it("run, runsync, status, stream, retry, cancel and purge", async () => {
    const { server } = await gateway();
    const run = await server.inject({ method: "POST", url: "/v2/t--echo/run", payload: { input: {} } });
    const id = run.json<{ id: string }>().id;
    expect(run.statusCode).toBe(200);
    expect(run.headers["content-type"]).toMatch(/^application\/json/);
    expect(run.body).toBe(`{"id":"${id}","status":"IN_QUEUE"}`);

    // Stream chunks, then the final answer with its output.
    const items: string[] = [];
    let status = "IN_QUEUE";
    while (status !== "COMPLETED") {
      const poll = await server.inject({ method: "GET", url: `/v2/t--echo/stream/${id}?wait=2000` });
      const match = new RegExp(`^\\{"id":"${id}","status":"(IN_QUEUE|IN_PROGRESS|COMPLETED)","stream":\\[(.*)\\]\\}$`, "s").exec(poll.body);
      expect(match, poll.body).not.toBeNull();
      status = match![1]!;
      if (match![2]) items.push(match![2]);
    }
    expect(items.join(",")).toBe(`{"output":{"token":"a\\nb"}},{"output":${JSON.stringify(OUTPUT)}}`);
    const done = await server.inject({ method: "GET", url: `/v2/t--echo/status/${id}` });
    expect(timesAsZero(done.body)).toBe(`{"id":"${id}","status":"COMPLETED","delayTime":0,"executionTime":0,"workerId":${JSON.stringify(done.json<{ workerId: string }>().workerId)},"output":${JSON.stringify(OUTPUT)},"error":null}`);
    const retry = await server.inject({ method: "POST", url: `/v2/t--echo/retry/${id}` });
    expect(retry.body).toBe(`{"id":"${id}","status":"COMPLETED","error":"only FAILED, TIMED_OUT or CANCELLED jobs can be retried; this one is COMPLETED"}`);

    const failed = await server.inject({ method: "POST", url: "/v2/t--echo/runsync", payload: { input: { fail: true } } });
    const failedId = failed.json<{ id: string }>().id;
    expect(timesAsZero(failed.body)).toMatch(new RegExp(`^\\{"id":"${failedId}","status":"FAILED","delayTime":0,"executionTime":0,"workerId":"[^"]+","output":null,"error":"it \\\\"broke\\\\""\\}$`));
    const again = await server.inject({ method: "POST", url: `/v2/t--echo/retry/${failedId}` });
    expect(again.body).toBe(`{"id":"${failedId}","status":"IN_QUEUE"}`);
    const cancel = await server.inject({ method: "POST", url: `/v2/t--echo/cancel/${failedId}` });
    expect(cancel.json<{ id: string }>().id).toBe(failedId);
    const purge = await server.inject({ method: "POST", url: "/v2/t--echo/purge-queue" });
    expect(purge.body).toBe('{"removed":0,"status":"completed"}');
  });

  it("a job not finished has no output or error keys", () => {
    const job = new Job({ id: "j-1", app: "t/echo", input: {}, priority: "normal", streaming: false, timeoutMs: 1000 });
    expect(timesAsZero(runpodStatusBody(job))).toBe('{"id":"j-1","status":"IN_QUEUE","delayTime":0,"executionTime":0,"workerId":null}');
  });
});

describe("fal webhook bodies, byte for byte", () => {
  it("OK carries the output as made; ERROR carries detail and error_type", () => {
    const ok = new Job({ id: "w-1", app: "t/echo", input: {}, priority: "normal", streaming: false, timeoutMs: 1000 });
    ok.complete(OUTPUT);
    expect(falWebhookBody(ok)).toBe(`{"request_id":"w-1","gateway_request_id":"w-1","status":"OK","payload":${JSON.stringify(OUTPUT)}}`);
    const failed = new Job({ id: "w-2", app: "t/echo", input: {}, priority: "normal", streaming: false, timeoutMs: 1000 });
    failed.start("r");
    failed.fail("FAILED", { type: "worker_error", message: 'no "luck"' });
    expect(falWebhookBody(failed)).toBe('{"request_id":"w-2","gateway_request_id":"w-2","status":"ERROR","error":"no \\"luck\\"","payload":{"detail":"no \\"luck\\"","error_type":"worker_error"}}');
  });
});

describe("placeRawJson", () => {
  it("puts JSON text at the key, never inside a string that quotes the key", () => {
    const json = JSON.stringify({ note: '"output":null', output: null, after: 1 });
    expect(placeRawJson(json, "output", '{"a":[1]}')).toBe('{"note":"\\"output\\":null","output":{"a":[1]},"after":1}');
    expect(placeRawJson('{"stream":[]}', "stream", "[1,2]", "[]")).toBe('{"stream":[1,2]}');
    expect(() => placeRawJson("{}", "output", "1")).toThrow(/no "output":null/);
  });
});
