/**
 * fal protocol, driven by fal's real client (@fal-ai/client 1.10.1) through a
 * requestMiddleware that points fal.run and queue.fal.run at the gateway.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiError, createFalClient, type FalClient } from "@fal-ai/client";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, exampleWorker, falClient, gatewayWorker, post, readSse, startGateway } from "../fixtures/gateway/harness.js";

const KEY = "kid:ksecret";
const control = gatewayWorker("control");
let url: string;
let fal: FalClient;
let receiver: FastifyInstance;
let receiverUrl: string;
const received: Array<{ attempt: number; body: any }> = [];
let scratch: string;

cleanUpGateways("all");

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "gateway-fal-"));
  ({ url } = await startGateway({
    apps: [
      defineApp({ name: "test/control", worker: control, worldSize: 2, keepAlive: 60 }),
      defineApp({ name: "test/text", worker: exampleWorker("text-stream"), worldSize: 1, keepAlive: 60 }),
      // 2 s: twenty progress intervals of the chatty request below, so a busy machine's pauses do not end it.
      defineApp({ name: "test/short", worker: control, worldSize: 1, timeout: 2, keepAlive: 60 }),
      defineApp({ name: "test/long", worker: control, worldSize: 1, timeout: 3e6, keepAlive: 60 }),
      defineApp({ name: "test/tiny-queue", worker: control, worldSize: 1, maxQueueLength: 1, keepAlive: 60 }),
      defineApp({ name: "test/retry", worker: control, worldSize: 1, retries: { max: 1, on: ["crash"] }, keepAlive: 60 }),
    ],
    keys: [KEY],
    bodyLimit: 64 * 1024,
    webhooks: { attempts: 4, baseDelayMs: 50 },
    statusKeepAliveMs: 100,
  }));
  fal = falClient(url, KEY);
  // A webhook receiver that fails twice before accepting.
  receiver = Fastify();
  let attempts = 0;
  receiver.post("/hook", async (request, reply) => {
    attempts++;
    received.push({ attempt: attempts, body: request.body });
    return reply.code(attempts <= 2 ? 500 : 200).send({ ok: attempts > 2 });
  });
  await receiver.listen({ port: 0, host: "127.0.0.1" });
  receiverUrl = `http://127.0.0.1:${(receiver.server.address() as { port: number }).port}/hook`;
});

afterAll(async () => {
  await receiver?.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe("fal protocol with @fal-ai/client", () => {
  it("run: a synchronous call returns the output and the request id", async () => {
    const result = await fal.run("test/control", { input: { id: "a" } });
    expect(result.data).toMatchObject({ id: "a", worldSize: 2, rank: 0 });
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("subscribe (polling): queue updates carry logs, progress and metrics.inference_time", async () => {
    const updates: any[] = [];
    const result = await fal.subscribe("test/control", {
      input: { id: "b", ms: 250, progressMs: 50, log: "hello from the worker" },
      logs: true,
      pollInterval: 25,
      onQueueUpdate: (update) => updates.push(update),
    });
    expect(result.data).toMatchObject({ id: "b" });
    const final = updates.at(-1);
    expect(final.status).toBe("COMPLETED");
    expect(final.metrics.inference_time).toBeGreaterThan(0.2);
    const messages = final.logs.map((log: { message: string }) => log.message);
    // Both ranks run call(), so the line comes once from each, labelled.
    expect(messages).toContain("[rank 0] hello from the worker");
    expect(messages).toContain("[rank 1] hello from the worker");
    expect(messages.some((m: string) => m.includes("elapsedMs"))).toBe(true);
    expect(updates.some((u) => u.status === "IN_PROGRESS")).toBe(true);
  });

  it("subscribe (streaming status): the status stream ends at COMPLETED", async () => {
    const updates: any[] = [];
    const result = await fal.subscribe("test/control", {
      input: { id: "c", ms: 300, log: "streamed log" },
      mode: "streaming",
      logs: true,
      onQueueUpdate: (update) => updates.push(update),
    });
    expect(result.data).toMatchObject({ id: "c" });
    expect(updates.at(-1).status).toBe("COMPLETED");
    expect(updates.at(-1).logs.map((l: { message: string }) => l.message)).toContain("[rank 0] streamed log");
  });

  it("queue.submit / status / streamStatus / result / cancel", async () => {
    // A minute long: it must still run when the steps below, slow on a busy machine, cancel it.
    const first = await fal.queue.submit("test/control", { input: { id: "long", ms: 60_000 } });
    expect(first.status).toBe("IN_QUEUE");
    expect(first.status_url).toBe(`${url}/fal/queue/test/control/requests/${first.request_id}/status`);
    const second = await fal.queue.submit("test/control", { input: { id: "second" } });
    // The runner runs one request at a time: the second waits.
    await expect.poll(async () => (await fal.queue.status("test/control", { requestId: first.request_id })).status).toBe("IN_PROGRESS");
    const queued = await fal.queue.status("test/control", { requestId: second.request_id });
    expect(queued).toMatchObject({ status: "IN_QUEUE", queue_position: 0 });

    await fal.queue.cancel("test/control", { requestId: second.request_id });
    const cancelled = await fal.queue.status("test/control", { requestId: second.request_id });
    expect(cancelled.status).toBe("COMPLETED"); // fal's clients poll until COMPLETED, so failures end there too
    const error = await fal.queue.result("test/control", { requestId: second.request_id }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError<any>).body.error_type).toBe("cancelled");

    // Cancelling the running one reaches the ranks (ctx.signal): it ends long before its minute.
    const started = Date.now();
    await fal.queue.cancel("test/control", { requestId: first.request_id });
    const stream = await fal.queue.streamStatus("test/control", { requestId: first.request_id });
    const done = await stream.done();
    expect(done.status).toBe("COMPLETED");
    expect(Date.now() - started).toBeLessThan(15_000); // well under a second on an idle machine
    // Cancelling a finished request: ALREADY_COMPLETED (400).
    const again = await fal.queue.cancel("test/control", { requestId: first.request_id }).catch((e: unknown) => e);
    expect((again as ApiError<any>).status).toBe(400);
    expect((again as ApiError<any>).body.status).toBe("ALREADY_COMPLETED");
  });

  it("stream: SSE events, the last one is the full output", async () => {
    const stream = await fal.stream("test/text", { input: { prompt: "a cat", maxTokens: 5, delayMs: 5 } });
    const events: any[] = [];
    for await (const event of stream) events.push(event);
    const output = await stream.done();
    expect(events.slice(0, 5).map((e) => e.index)).toEqual([0, 1, 2, 3, 4]);
    expect(output).toMatchObject({ tokens: 5 });
    expect(output.text.split(" ")).toEqual(events.slice(0, 5).map((e) => e.token));
  });

  it("proxy form: one URL, the target in x-fal-target-url", async () => {
    const proxied = createFalClient({ credentials: KEY, proxyUrl: { url: `${url}/fal/proxy`, when: () => true }, suppressLocalCredentialsWarning: true });
    const run = await proxied.run("test/control", { input: { id: "via-proxy" } });
    expect(run.data).toMatchObject({ id: "via-proxy" });
    const sub = await proxied.subscribe("test/control", { input: { id: "via-proxy-queue" }, pollInterval: 25 });
    expect(sub.data).toMatchObject({ id: "via-proxy-queue" });
    const bad = await fetch(`${url}/fal/proxy`, { method: "POST", headers: { "x-fal-target-url": "https://example.com/x", authorization: `Key ${KEY}` } });
    expect(bad.status).toBe(400);
  });

  it("a worker error is a failed request with the rank's message, not a gateway error", async () => {
    const error = (await fal.run("test/control", { input: { id: "x", mode: "throw" } }).catch((e: unknown) => e)) as ApiError<any>;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(500);
    expect(error.body.error_type).toBe("worker_error");
    expect(error.body.detail).toContain("boom x");
    const invalid = (await fal.run("test/control", { input: { mode: "validation" } }).catch((e: unknown) => e)) as ApiError<any>;
    expect(invalid.status).toBe(422);
    expect(invalid.body.detail).toContain("x must be positive");
    // The runner is still fine.
    expect((await fal.run("test/control", { input: { id: "after" } })).data).toMatchObject({ id: "after" });
  });

  it("x-fal-queue-priority: low waits behind normal requests", async () => {
    // The blocker runs until the file appears: b, c and d are all queued behind it however slow the submits are.
    const release = join(scratch, "release-priority-blocker");
    const blocker = await fal.queue.submit("test/control", { input: { id: "blocker", untilFile: release } });
    await expect.poll(async () => (await fal.queue.status("test/control", { requestId: blocker.request_id })).status).toBe("IN_PROGRESS");
    const b = await fal.queue.submit("test/control", { input: { id: "b" } });
    const c = await fal.queue.submit("test/control", { input: { id: "c" }, priority: "low" });
    const d = await fal.queue.submit("test/control", { input: { id: "d" } });
    const cStatus = await fal.queue.status("test/control", { requestId: c.request_id });
    expect(cStatus).toMatchObject({ status: "IN_QUEUE", queue_position: 2 });
    writeFileSync(release, "");
    const results = await Promise.all(
      [b, c, d].map(async (s) => {
        await fal.queue.subscribeToStatus("test/control", { requestId: s.request_id, pollInterval: 25 } as never);
        return (await fal.queue.result("test/control", { requestId: s.request_id })).data as { id: string; call: number };
      }),
    );
    const order = [...results].sort((x, y) => x.call - y.call).map((r) => r.id);
    expect(order).toEqual(["b", "d", "c"]);
  });

  it("x-fal-request-timeout: a request that cannot start in time ends with 504, marked as the user's timeout", async () => {
    // Holds the only runner until the file appears, so "late" cannot start in its 0.2 s.
    const release = join(scratch, "release-tiny-queue-blocker");
    const blocker = await fal.queue.submit("test/tiny-queue", { input: { untilFile: release } });
    const response = await post(`${url}/fal/queue/test/tiny-queue`, { id: "late" }, { authorization: `Key ${KEY}`, "x-fal-request-timeout": "0.2" });
    expect(response.status).toBe(200);
    const id = response.body.request_id as string;
    await expect.poll(async () => (await fal.queue.status("test/tiny-queue", { requestId: id })).status).toBe("COMPLETED");
    const result = await fetch(`${url}/fal/queue/test/tiny-queue/requests/${id}`, { headers: { authorization: `Key ${KEY}` } });
    expect(result.status).toBe(504);
    expect(result.headers.get("x-fal-request-timeout-type")).toBe("user");
    expect((await result.json()).error_type).toBe("start_timeout");
    writeFileSync(release, "");
    await fal.queue.subscribeToStatus("test/tiny-queue", { requestId: blocker.request_id, pollInterval: 25 } as never);
  });

  it("timeouts past 24.8 days (the app's timeout, x-fal-request-timeout) wait instead of firing at once; past 365 days the header answers 422", async () => {
    const auth = { authorization: `Key ${KEY}` };
    expect((await fal.run("test/long", { input: { id: "slow", ms: 200 } })).data).toMatchObject({ id: "slow" });
    const blocker = await fal.queue.submit("test/tiny-queue", { input: { id: "blocker", ms: 300 } });
    const patient = await post(`${url}/fal/queue/test/tiny-queue`, { id: "patient" }, { ...auth, "x-fal-request-timeout": "2200000" });
    expect(patient.status).toBe(200);
    const id = patient.body.request_id as string;
    await expect.poll(async () => (await fal.queue.status("test/tiny-queue", { requestId: id })).status, { timeout: 30_000 }).toBe("COMPLETED");
    expect((await fal.queue.result("test/tiny-queue", { requestId: id })).data).toMatchObject({ id: "patient" });
    await fal.queue.subscribeToStatus("test/tiny-queue", { requestId: blocker.request_id, pollInterval: 25 } as never);
    const refused = await post(`${url}/fal/queue/test/control`, {}, { ...auth, "x-fal-request-timeout": "40000000" });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ error_type: "validation_error", detail: expect.stringContaining("header x-fal-request-timeout") });
  });

  it("timeout: a silent request times out; progress keeps a longer one alive", async () => {
    const silent = (await fal.run("test/short", { input: { ms: 6000 } }).catch((e: unknown) => e)) as ApiError<any>;
    expect(silent.status).toBe(504);
    expect(silent.body.error_type).toBe("request_timeout");
    const chatty = await fal.run("test/short", { input: { id: "chatty", ms: 4000, progressMs: 100 } });
    expect(chatty.data).toMatchObject({ id: "chatty" });
  });

  it("retries: a runner crash is retried on a fresh runner when the policy says so", async () => {
    const marker = join(scratch, "crash-once");
    const updates: any[] = [];
    const result = await fal.subscribe("test/retry", { input: { id: "phoenix", mode: "crash-once", marker }, logs: true, pollInterval: 25, onQueueUpdate: (u) => updates.push(u) });
    expect(result.data).toMatchObject({ id: "phoenix" });
    expect(updates.at(-1).logs.some((l: { message: string }) => l.message.includes("retrying"))).toBe(true);
  });

  it("fal_webhook: the result is POSTed, retried until the receiver accepts", async () => {
    const submitted = await fal.queue.submit("test/control", { input: { id: "hooked" }, webhookUrl: receiverUrl });
    // Two failed attempts and their backoff first: an upper bound for a busy machine.
    await expect.poll(() => received.length, { timeout: 30_000 }).toBe(3);
    expect(received.map((r) => r.attempt)).toEqual([1, 2, 3]);
    expect(received[2]!.body).toMatchObject({ request_id: submitted.request_id, status: "OK", payload: { id: "hooked" } });
  });

  it("bad input: 401, 404, 400, 422, 413, 429, and nothing queued is lost", async () => {
    const auth = { authorization: `Key ${KEY}` };
    expect((await post(`${url}/fal/run/test/control`, {})).status).toBe(401);
    expect((await post(`${url}/fal/run/test/control`, {}, { authorization: "Key kid:wrong" })).status).toBe(401);
    const unauthorised = (await falClient(url, "kid:wrong").run("test/control", { input: {} }).catch((e: unknown) => e)) as ApiError<any>;
    expect(unauthorised.status).toBe(401);
    const missing = await post(`${url}/fal/run/nobody/nothing`, {}, auth);
    expect(missing.status).toBe(404);
    expect(missing.body.detail).toContain("nobody/nothing");
    expect((await post(`${url}/fal/queue/nobody/nothing`, {}, auth)).status).toBe(404);
    expect((await fetch(`${url}/fal/queue/test/control/requests/00000000-0000-0000-0000-000000000000/status`, { headers: auth })).status).toBe(404);
    const malformed = await post(`${url}/fal/run/test/control`, '{"id": ', auth);
    expect(malformed.status).toBe(400);
    expect(malformed.body.detail).toMatch(/malformed JSON/);
    expect((await post(`${url}/fal/run/test/control`, "[1,2]", auth)).status).toBe(422);
    expect((await post(`${url}/fal/run/test/control`, { blob: "x".repeat(70 * 1024) }, auth)).status).toBe(413);
    expect((await post(`${url}/fal/queue/test/control`, {}, { ...auth, "x-fal-queue-priority": "urgent" })).status).toBe(400);
    expect((await post(`${url}/fal/queue/test/control`, {}, { ...auth, "x-fal-request-timeout": "soon" })).status).toBe(422);

    // Queue full: one running, one waiting, the third is refused with 429.
    const running = await post(`${url}/fal/queue/test/tiny-queue`, { id: "running", ms: 500 }, auth);
    await expect.poll(async () => (await fal.queue.status("test/tiny-queue", { requestId: running.body.request_id })).status).toBe("IN_PROGRESS");
    const waiting = await post(`${url}/fal/queue/test/tiny-queue`, { id: "waiting" }, auth);
    expect(waiting.status).toBe(200);
    const refused = await post(`${url}/fal/queue/test/tiny-queue`, { id: "refused" }, auth);
    expect(refused.status).toBe(429);
    for (const [submitted, id] of [[running, "running"], [waiting, "waiting"]] as const) {
      await fal.queue.subscribeToStatus("test/tiny-queue", { requestId: submitted.body.request_id, pollInterval: 25 } as never);
      expect((await fal.queue.result("test/tiny-queue", { requestId: submitted.body.request_id })).data).toMatchObject({ id });
    }
  });

  it("the GET stream route for EventSource, /healthz, /metrics and the page", async () => {
    const response = await fetch(`${url}/fal/run/test/text/stream?input=${encodeURIComponent(JSON.stringify({ maxTokens: 3, delayMs: 0 }))}&fal_key=${KEY}`);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const events = await readSse(response);
    expect(events.at(-1)).toEqual({ event: "done", data: {} });
    expect(events.at(-2)!.data).toMatchObject({ tokens: 3 });
    const health = await (await fetch(`${url}/healthz`)).json();
    expect(health.status).toBe("ok");
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('multirank_gateway_queue_depth{app="test/control"}');
    expect(metrics).toContain("multirank_gateway_request_duration_seconds_bucket");
    expect(metrics).toMatch(/multirank_gateway_runners\{app="test\/control",state="idle"\} 1/);
    expect(await (await fetch(`${url}/`)).text()).toContain("<title>multirank gateway</title>");
  });
});
