/**
 * API keys never reach the gateway's log, at any level, on any route, in
 * errors too; the operations routes can ask for a key. In-process
 * (`server.inject`) with fake runners: nothing is spawned.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, defineApp, type Gateway, type GatewayOptions, type PoolRunner } from "../../src/server/index.js";
import { redactingLogger, redactUrl, takeQuerySecrets } from "../../src/gateway/redact.js";
import { FakeRunnerLifecycle } from "../helpers/fake-runner.js";

const SECRET = "topsecret-4711";
const KEY = `kid:${SECRET}`;
const WRONG = "wrongsecret-0815";
const HOOK_TOKEN = "hooksecret-99";
const COOKIE = "cookiesecret-42";

class FakeRunner extends FakeRunnerLifecycle {
  async invoke(payload: unknown): Promise<unknown> {
    return { echo: payload };
  }
  async *stream(payload: unknown): AsyncGenerator<Buffer> {
    yield Buffer.from(`data: ${JSON.stringify({ echo: payload })}\n\n`);
  }
}

const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
});

async function gatewayWithCapture(extra: Partial<GatewayOptions> = {}): Promise<{ gateway: Gateway; lines: string[] }> {
  const lines: string[] = [];
  const capture = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const gateway = await createGateway({
    apps: [defineApp({ name: "t/echo", worker: "/w.ts", keepAlive: 60 })],
    keys: [KEY],
    logger: pino({ level: "trace" }, capture),
    host: { gpuCount: 0 },
    shutdownGrace: 1,
    webhooks: { attempts: 1, timeoutMs: 2000 },
    createRunner: () => new FakeRunner() as unknown as PoolRunner,
    ...extra,
  });
  gateways.push(gateway);
  return { gateway, lines };
}

describe("redaction helpers", () => {
  it("redact secret query values anywhere in a text, and take the fal_key off a URL for the key check", () => {
    expect(redactUrl(`/fal/run/a/b/stream?input=%7B%7D&fal_key=${KEY}`)).toBe("/fal/run/a/b/stream?input=%7B%7D&fal_key=[redacted]");
    expect(redactUrl(`GET /x?token=${SECRET}&api_key=${SECRET}&Key=${SECRET}&fal%5Fkey=${SECRET}&keep=1`)).toBe("GET /x?token=[redacted]&api_key=[redacted]&Key=[redacted]&fal%5Fkey=[redacted]&keep=1");
    expect(redactUrl(`fetch http://h/hook?token=${HOOK_TOKEN} failed`)).toBe("fetch http://h/hook?token=[redacted] failed");
    expect(redactUrl("/plain/path?monkey=1")).toBe("/plain/path?monkey=1");
    expect(redactUrl(`/q?fal_webhook=http%3A%2F%2Fh%2Fhook%3Fa%3D1%26token%3D${HOOK_TOKEN}%26b%3D2`)).toBe("/q?fal_webhook=http%3A%2F%2Fh%2Fhook%3Fa%3D1%26token%3D[redacted]%26b%3D2");
    const taken = takeQuerySecrets(`/s?fal_key=${encodeURIComponent(KEY)}&input=1&fal_webhook=http://h/x?token=t`);
    expect(taken).toEqual({ url: "/s?fal_key=[redacted]&input=1&fal_webhook=http://h/x?token=t", falKey: KEY });
  });

  it("the gateway's logger redacts errors, request URLs and credential headers, whatever a log call passes", () => {
    const lines: string[] = [];
    const capture = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = redactingLogger(pino({ level: "trace" }, capture)).child({ component: "test" });
    log.error({ err: new Error(`GET /x?fal_key=${KEY} failed`, { cause: new Error(`see ?token=${SECRET}`) }) }, "failed");
    log.info({ req: { method: "GET", url: `/y?api_key=${SECRET}`, headers: { authorization: `Key ${KEY}` } } }, "request");
    log.info({ headers: { authorization: `Bearer ${KEY}`, cookie: COOKIE, "x-api-key": SECRET, "x-fal-key": SECRET } }, "headers");
    log.warn({ request: { headers: { "proxy-authorization": SECRET } } }, "nested");
    const output = lines.join("");
    expect(output).toContain("fal_key=[redacted]");
    expect(output).not.toContain(SECRET);
    expect(output).not.toContain(COOKIE);
  });
});

describe("keys in logs", () => {
  it("at trace level, no route writes a key, right or wrong, from a header, the query or a cookie, errors included", async () => {
    const { gateway, lines } = await gatewayWithCapture();
    const server = gateway.server;
    const falAuth = { authorization: `Key ${KEY}` };
    const request = (method: string, url: string, headers: Record<string, string> = {}, payload?: unknown) =>
      server.inject({ method: method as "GET", url, headers: { cookie: `session=${COOKIE}`, ...headers }, ...(payload === undefined ? {} : { payload: payload as object }) });
    const q = `fal_key=${encodeURIComponent(KEY)}`;

    // fal: run, stream (POST and EventSource GET with ?fal_key=), queue submit/status/stream/result/cancel, proxy.
    expect((await request("POST", "/fal/run/t/echo", falAuth, { a: 1 })).statusCode).toBe(200);
    expect((await request("POST", "/fal/run/t/echo/stream", falAuth, { a: 1 })).statusCode).toBe(200);
    expect((await request("GET", `/fal/run/t/echo/stream?input=%7B%7D&${q}`)).statusCode).toBe(200);
    expect((await request("GET", `/fal/run/t/echo/stream?input=%7B%7D&fal_key=kid:${WRONG}`)).statusCode).toBe(401);
    expect((await request("GET", `/fal/run/t/echo/stream?input=not-json&${q}`)).statusCode).toBe(400);
    const submitted = await request("POST", `/fal/queue/t/echo?fal_webhook=${encodeURIComponent(`http://127.0.0.1:1/hook?token=${HOOK_TOKEN}`)}&${q}`, falAuth, { a: 2 });
    expect(submitted.statusCode).toBe(200);
    const id = submitted.json().request_id as string;
    const base = `/fal/queue/t/echo/requests/${id}`;
    await expect.poll(async () => (await request("GET", `${base}/status?${q}`, falAuth)).statusCode).toBe(200);
    expect((await request("GET", `${base}/status/stream?logs=1&${q}`, falAuth)).statusCode).toBe(200);
    expect((await request("GET", `${base}?${q}`, falAuth)).statusCode).toBe(200);
    expect((await request("PUT", `${base}/cancel?${q}`, falAuth)).statusCode).toBe(400);
    expect((await request("POST", "/fal/proxy", { ...falAuth, "x-fal-target-url": `https://fal.run/t/echo?fal_key=${KEY}` }, { a: 3 })).statusCode).toBe(200);

    // Runpod: run, runsync, status, stream, cancel, health (Bearer and bare keys).
    const rpAuth = { authorization: `Bearer ${KEY}` };
    const run = await request("POST", "/v2/t--echo/run", rpAuth, { input: { b: 1 } });
    expect(run.statusCode).toBe(200);
    const rpId = run.json().id as string;
    expect((await request("POST", `/v2/t--echo/runsync?${q}`, { authorization: KEY }, { input: { b: 2 } })).statusCode).toBe(200);
    expect((await request("GET", `/v2/t--echo/status/${rpId}?api_key=${SECRET}`, rpAuth)).statusCode).toBe(200);
    expect((await request("GET", `/v2/t--echo/stream/${rpId}?token=${SECRET}`, rpAuth)).statusCode).toBe(200);
    expect((await request("POST", `/v2/t--echo/cancel/${rpId}`, rpAuth)).statusCode).toBe(200);
    expect((await request("GET", "/v2/t--echo/health", rpAuth)).statusCode).toBe(200);

    // Operations routes and the page, with a key in the query; a wrong key; malformed headers; an unknown route.
    for (const path of ["/healthz", "/metrics", "/apps", "/"]) expect((await request("GET", `${path}?${q}`, falAuth)).statusCode, path).toBe(200);
    expect((await request("POST", "/fal/run/t/echo", { authorization: `Key kid:${WRONG}` }, {})).statusCode).toBe(401);
    expect((await request("POST", "/fal/run/t/echo", { authorization: `Basic ${WRONG} ${SECRET}` }, {})).statusCode).toBe(401);
    expect((await request("POST", "/v2/t--echo/run", { authorization: `Bearer ${WRONG}`, "x-api-key": SECRET, "x-fal-key": SECRET }, { input: {} })).statusCode).toBe(401);
    expect((await request("GET", `/nowhere?${q}`, falAuth)).statusCode).toBe(404);

    await gateway.close(); // waits for the webhook attempt, which fails and is logged
    const output = lines.join("");
    expect(output).toContain("incoming request");
    expect(output).toContain("fal_key=[redacted]");
    expect(output).toContain("webhook delivery failed");
    for (const secret of [SECRET, WRONG, HOOK_TOKEN, COOKIE]) expect(output, `the log holds ${secret}`).not.toContain(secret);
  });
});

describe("operations routes", () => {
  it("are public by default and ask for a key with requireKeyForOps; the page stays public", async () => {
    const { gateway: open } = await gatewayWithCapture();
    for (const path of ["/healthz", "/metrics", "/apps", "/"]) expect((await open.server.inject({ method: "GET", url: path })).statusCode, path).toBe(200);
    const { gateway: closed } = await gatewayWithCapture({ requireKeyForOps: true });
    for (const path of ["/healthz", "/metrics", "/apps"]) {
      const refused = await closed.server.inject({ method: "GET", url: path });
      expect(refused.statusCode, path).toBe(401);
      expect(refused.json().code).toBe("MULTIRANK_ERR_GATEWAY_UNAUTHORIZED");
      expect((await closed.server.inject({ method: "GET", url: path, headers: { authorization: `Key ${KEY}` } })).statusCode, path).toBe(200);
      expect((await closed.server.inject({ method: "GET", url: path, headers: { authorization: `Bearer ${KEY}` } })).statusCode, path).toBe(200);
    }
    expect((await closed.server.inject({ method: "GET", url: "/" })).statusCode).toBe(200);
  });
});

describe("duration inputs over HTTP", () => {
  it("x-fal-request-timeout and policy.executionTimeout: long values run, values past 365 days or not numbers answer 422 naming the field", async () => {
    const { gateway } = await gatewayWithCapture();
    const server = gateway.server;
    const auth = { authorization: `Key ${KEY}` };
    const long = await server.inject({ method: "POST", url: "/fal/run/t/echo", headers: { ...auth, "x-fal-request-timeout": "2200000" }, payload: { a: 1 } });
    expect(long.statusCode).toBe(200);
    expect(long.json()).toEqual({ echo: { a: 1 } });
    for (const value of ["40000000", "soon", "", "-1", "Infinity"]) {
      const refused = await server.inject({ method: "POST", url: "/fal/queue/t/echo", headers: { ...auth, "x-fal-request-timeout": value }, payload: {} });
      expect(refused.statusCode, value).toBe(422);
      expect(refused.json(), value).toMatchObject({ error_type: "validation_error", detail: expect.stringContaining("header x-fal-request-timeout") });
    }
    const runsync = await server.inject({ method: "POST", url: "/v2/t--echo/runsync", headers: auth, payload: { input: { b: 1 }, policy: { executionTimeout: 2.2e9 } } });
    expect(runsync.json()).toMatchObject({ status: "COMPLETED", output: { echo: { b: 1 } } });
    for (const value of [4e13, 0, "1000"]) {
      const refused = await server.inject({ method: "POST", url: "/v2/t--echo/run", headers: auth, payload: { input: {}, policy: { executionTimeout: value } } });
      expect(refused.statusCode, String(value)).toBe(422);
      expect(refused.json(), String(value)).toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", error: expect.stringContaining("policy.executionTimeout") });
    }
  });

  it("gateway options past 365 days are refused, naming the option", async () => {
    await expect(gatewayWithCapture({ shutdownGrace: 4e7 })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("options.shutdownGrace") });
    await expect(gatewayWithCapture({ streamHoldMs: 4e13 })).rejects.toMatchObject({ message: expect.stringContaining("options.streamHoldMs") });
    await expect(gatewayWithCapture({ webhooks: { baseDelayMs: 4e13 } })).rejects.toMatchObject({ message: expect.stringContaining("options.webhooks.baseDelayMs") });
  });
});
