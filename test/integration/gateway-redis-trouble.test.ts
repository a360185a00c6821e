/**
 * The Redis queue when Redis misbehaves (issue 16, "Redis trouble"): an
 * unreachable Redis or one that may evict keys is refused at start with the
 * reason; a Redis lost while the gateway runs turns new requests into 503s
 * (never a 500, never a hang) and `/healthz` says why, while the jobs already
 * on the ranks finish; once Redis is back the service resumes and every
 * accepted job ends exactly once with its result fetchable.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { ConfigError, QueueUnavailableError } from "../../src/gateway/errors.js";
import { createGateway } from "../../src/server/index.js";
import { findFreePort } from "../../src/util/free-port.js";
import { cleanUpGateways, gatewayWorker, post, quietLogger, startGateway } from "../fixtures/gateway/harness.js";
import { readLedger, type LedgerLine } from "../helpers/gateway-process.js";
import { waitFor } from "../helpers/processes.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

const ledgerWorker = gatewayWorker("ledger");
const APP = "test/ledger";
/** Upper bound on one request while Redis is away: it must fail fast, not wait for Redis. */
const PROMPT_MS = 5000;
/** Upper bound on waits for ranks and jobs on a busy 2-core machine. */
const LONG_MS = 60_000;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function ledgerFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "multirank-redis-trouble-"));
  dirs.push(dir);
  return join(dir, "ledger.jsonl");
}

/** The gateways refused at start never run anything; a runner factory also skips the worker module check (an esbuild child). */
function noRunner(): never {
  throw new Error("this gateway should not have started");
}

function ledgerApp(extra: Record<string, unknown> = {}) {
  return { name: APP, worker: ledgerWorker, worldSize: 1, keepAlive: 60, ...extra };
}

/**
 * Runs `request` and returns its answer with how long it took; throws when
 * it has not settled within `boundMs` (a hang fails the test, not its timeout).
 */
async function timed<T>(request: () => Promise<T>, boundMs = 20_000): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${boundMs} ms: it hangs`)), boundMs);
  });
  try {
    const value = await Promise.race([request(), hung]);
    return { value, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body };
}

/** Polls `url` until `accept` holds for its answer; bounded. */
async function pollUntil(url: string, accept: (answer: { status: number; body: any }) => boolean, timeoutMs = LONG_MS): Promise<{ status: number; body: any }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await getJson(url).catch((error: unknown) => ({ status: -1, body: String(error) }));
    if (accept(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`${url} did not answer as expected within ${timeoutMs} ms; last: ${answer.status} ${JSON.stringify(answer.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function ends(lines: LedgerLine[], tag: string): number {
  return lines.filter((line) => line.id === tag && line.event === "end").length;
}

describeWithRedis("the gateway when Redis is in trouble", () => {
  cleanUpGateways("each");

  it("refuses to start, promptly, when Redis does not answer, naming the URL with its password hidden", async () => {
    const port = await findFreePort("127.0.0.1");
    for (const url of [`redis://127.0.0.1:${port}`, `redis://app:s3cr3t-pw@127.0.0.1:${port}/0`]) {
      const { value: error, ms } = await timed(() =>
        createGateway({ apps: [ledgerApp()], queue: { redis: url }, logger: quietLogger, host: { gpuCount: 0 }, createRunner: noRunner }).then(
          (gateway) => {
            void gateway.close();
            return undefined;
          },
          (error: unknown) => error,
        ),
      );
      expect(error, url).toBeInstanceOf(QueueUnavailableError);
      expect((error as QueueUnavailableError).code).toBe("MULTIRANK_ERR_GATEWAY_QUEUE_UNAVAILABLE");
      expect(ms, `createGateway took ${ms} ms to give up on ${url}`).toBeLessThan(10_000);
      const message = (error as Error).message;
      expect(message).toContain(`127.0.0.1:${port}`);
      expect(message).not.toContain("s3cr3t-pw");
      if (url.includes("@")) expect(message).toContain("app:***@");
    }
  });

  it("refuses to start, within a bound, when Redis accepts the connection but does not answer (frozen)", async () => {
    const redis = await startRedis();
    process.kill(redis.pid, "SIGSTOP");
    try {
      const { value: error, ms } = await timed(() =>
        createGateway({ apps: [ledgerApp()], queue: { redis: redis.url }, logger: quietLogger, host: { gpuCount: 0 }, createRunner: noRunner }).then(
          (gateway) => {
            void gateway.close();
            return undefined;
          },
          (error: unknown) => error,
        ),
      );
      expect(error).toBeInstanceOf(QueueUnavailableError);
      expect((error as Error).message).toContain(redis.url);
      expect(ms, `createGateway took ${ms} ms to give up`).toBeLessThan(10_000);
    } finally {
      process.kill(redis.pid, "SIGCONT");
    }
  });

  it("refuses a Redis that may evict keys (maxmemory-policy other than noeviction), saying why", async () => {
    const redis = await startRedis({ maxmemoryPolicy: "allkeys-lru" });
    const error = await createGateway({ apps: [ledgerApp()], queue: { redis: redis.url }, logger: quietLogger, host: { gpuCount: 0 }, createRunner: noRunner }).then(
      (gateway) => {
        void gateway.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("MULTIRANK_ERR_GATEWAY_CONFIG");
    expect((error as Error).message).toContain("allkeys-lru");
    expect((error as Error).message).toContain("noeviction");
    expect((error as Error).message).toMatch(/evict/);
  });

  it("answers 503 while Redis is away, lets running jobs finish, and resumes when Redis is back", async () => {
    const redis = await startRedis();
    const ledger = ledgerFile();
    const logs: Array<{ level: number; msg: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) logs.push(JSON.parse(line) as { level: number; msg: string });
        done();
      },
    });
    const logger = pino({ level: "info" }, sink);
    const { url } = await startGateway({ apps: [ledgerApp({ maxRunners: 3, minRunners: 3 })], queue: { redis: redis.url }, logger });
    const fal = `${url}/fal/queue/${APP}`;

    // A job that finished before the outage: reading its status later needs Redis.
    const early = await post(fal, { tag: "early", ledger });
    expect(early.status).toBe(200);
    const earlyId = early.body.request_id as string;
    await pollUntil(`${fal}/requests/${earlyId}/status`, (answer) => answer.body?.status === "COMPLETED");

    // Three jobs on the ranks when Redis dies.
    const tags = ["a", "b", "c"];
    const ids = new Map<string, string>();
    for (const tag of tags) {
      const submitted = await post(fal, { tag, ledger, ms: 3000 });
      expect(submitted.status).toBe(200);
      ids.set(tag, submitted.body.request_id as string);
    }
    expect(await waitFor(() => tags.every((tag) => readLedger(ledger).some((line) => line.id === tag && line.event === "start")), LONG_MS), "the jobs started").toBe(true);
    const killedAt = Date.now();
    await redis.kill("SIGKILL");

    const logged = logs.length;
    await expectUnavailable(url, redis, ledger, fal, earlyId);
    // Each refusal is an answer the gateway meant to give, not a failure: the lost connection is logged once, not every request.
    const outage = logs.slice(logged);
    expect(outage.filter((line) => line.msg === "request failed in the gateway"), "refused requests logged as failures").toEqual([]);
    expect(outage.some((line) => line.msg === "request refused")).toBe(true);

    // The jobs on the ranks finish regardless.
    expect(await waitFor(() => tags.every((tag) => ends(readLedger(ledger), tag) === 1), LONG_MS), "the running jobs finished on their ranks").toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(LONG_MS);

    await redis.restart();
    await pollUntil(`${url}/healthz`, (answer) => answer.status === 200 && answer.body.status === "ok");

    // The jobs that finished while Redis was away: their results were written once it returned.
    for (const tag of tags) {
      const id = ids.get(tag)!;
      const status = await pollUntil(`${fal}/requests/${id}/status`, (answer) => answer.status === 200, 30_000);
      expect(status.body.status, tag).toBe("COMPLETED");
      const result = await getJson(`${fal}/requests/${id}`);
      expect(result.status).toBe(200);
      expect(result.body.tag).toBe(tag);
    }
    // New work runs again (the BullMQ worker took up fetching again).
    const after = await post(fal, { tag: "after", ledger });
    expect(after.status).toBe(200);
    await pollUntil(`${fal}/requests/${after.body.request_id as string}/status`, (answer) => answer.body?.status === "COMPLETED");
    const runpod = await post(`${url}/v2/ledger/runsync`, { input: { tag: "after-runpod", ledger } });
    expect(runpod.status).toBe(200);
    expect(runpod.body.status).toBe("COMPLETED");

    const lines = readLedger(ledger);
    for (const tag of ["early", ...tags, "after", "after-runpod"]) expect(ends(lines, tag), tag).toBe(1);
    // Nothing submitted during the outage ran.
    expect(lines.filter((line) => line.id.startsWith("outage")).length).toBe(0);
  });

  it("runs each job once when Redis stays away longer than stalledAfter (the claims lapse while the jobs finish)", async () => {
    const redis = await startRedis();
    const ledger = ledgerFile();
    const { url } = await startGateway({ apps: [ledgerApp({ maxRunners: 2, minRunners: 2, concurrency: 2 })], queue: { redis: redis.url, stalledAfter: 1 } });
    const fal = `${url}/fal/queue/${APP}`;
    const tags = ["p", "q", "r", "s"];
    const ids = new Map<string, string>();
    for (const tag of tags) ids.set(tag, (await post(fal, { tag, ledger, ms: 2500 })).body.request_id as string);
    expect(await waitFor(() => tags.every((tag) => readLedger(ledger).some((line) => line.id === tag && line.event === "start")), LONG_MS)).toBe(true);
    await redis.kill("SIGKILL");
    // The jobs end 2.5 s after they started, well past their 1 s claims, which nothing could renew.
    expect(await waitFor(() => tags.every((tag) => ends(readLedger(ledger), tag) === 1), LONG_MS)).toBe(true);
    await redis.restart();
    for (const [tag, id] of ids) {
      const status = await pollUntil(`${fal}/requests/${id}/status`, (answer) => answer.status === 200, 30_000);
      expect(status.body.status, tag).toBe("COMPLETED");
      expect((await getJson(`${fal}/requests/${id}`)).body.tag).toBe(tag);
    }
    // BullMQ may hand a lapsed job out again: once nothing is queued or active, no second run can be pending.
    await pollUntil(`${url}/v2/ledger/health`, (answer) => answer.status === 200 && answer.body.jobs.inQueue === 0 && answer.body.jobs.inProgress === 0, 30_000);
    const lines = readLedger(ledger);
    for (const tag of tags) expect(ends(lines, tag), tag).toBe(1);
    expect(lines.filter((line) => line.event === "start").length).toBe(tags.length);
  });

  it("answers 503 within a bound while Redis is frozen (connected but silent), and resumes when it answers again", async () => {
    const redis = await startRedis();
    const ledger = ledgerFile();
    const { url } = await startGateway({ apps: [ledgerApp({ maxRunners: 1, minRunners: 1 })], queue: { redis: redis.url } });
    const fal = `${url}/fal/queue/${APP}`;
    const running = await post(fal, { tag: "running", ledger, ms: 2000 });
    expect(running.status).toBe(200);
    expect(await waitFor(() => readLedger(ledger).some((line) => line.id === "running" && line.event === "start"), LONG_MS)).toBe(true);
    process.kill(redis.pid, "SIGSTOP");
    try {
      // The first request waits out the command timeout at most; /healthz then says why without a request's help.
      for (const tag of ["frozen-1", "frozen-2"]) {
        const { value: answer, ms } = await timed(() => post(fal, { tag, ledger }));
        expect(answer.status, JSON.stringify(answer.body)).toBe(503);
        expect(answer.body.error_type).toBe("queue_unavailable");
        expect(ms, `${tag} took ${ms} ms`).toBeLessThan(10_000);
      }
      const health = await pollUntil(`${url}/healthz`, (answer) => answer.status === 503, 15_000);
      expect(health.body.status).toBe("queue_unavailable");
      expect(health.body.queue.reason).toContain(redis.url.replace("redis://", ""));
      const { value: refused, ms } = await timed(() => post(`${url}/v2/ledger/run`, { input: { tag: "frozen-3", ledger } }));
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe("MULTIRANK_ERR_GATEWAY_QUEUE_UNAVAILABLE");
      expect(ms, "once Redis is known to be away, a request is refused at once").toBeLessThan(PROMPT_MS);
      expect(await waitFor(() => ends(readLedger(ledger), "running") === 1, LONG_MS), "the running job finished on its ranks").toBe(true);
    } finally {
      process.kill(redis.pid, "SIGCONT");
    }
    await pollUntil(`${url}/healthz`, (answer) => answer.status === 200, 30_000);
    const status = await pollUntil(`${fal}/requests/${running.body.request_id as string}/status`, (answer) => answer.body?.status === "COMPLETED", 30_000);
    expect(status.status).toBe(200);
    const after = await post(fal, { tag: "after", ledger });
    expect(after.status).toBe(200);
    await pollUntil(`${fal}/requests/${after.body.request_id as string}/status`, (answer) => answer.body?.status === "COMPLETED");
    const lines = readLedger(ledger);
    expect(ends(lines, "running")).toBe(1);
    expect(ends(lines, "after")).toBe(1);
    // A submission refused after its command timed out may still have reached Redis; it never runs twice.
    for (const tag of ["frozen-1", "frozen-2", "frozen-3"]) expect(ends(lines, tag)).toBeLessThanOrEqual(1);
  });

  it("closes within a bound while Redis is away, idle or with a job that ended during the outage", async () => {
    const redis = await startRedis();
    const ledger = ledgerFile();
    const idle = await startGateway({ apps: [ledgerApp()], queue: { redis: redis.url } });
    const busy = await startGateway({ apps: [ledgerApp({ maxRunners: 1, minRunners: 1 })], queue: { redis: redis.url } });
    // The idle gateway serves the app too and may take the job: whichever runs it, the other stays idle.
    const submitted = await post(`${busy.url}/fal/queue/${APP}`, { tag: "ending", ledger, ms: 1500 });
    expect(submitted.status).toBe(200);
    expect(await waitFor(() => readLedger(ledger).some((line) => line.id === "ending" && line.event === "start"), LONG_MS)).toBe(true);
    await redis.kill("SIGKILL");
    expect(await waitFor(() => ends(readLedger(ledger), "ending") === 1, LONG_MS)).toBe(true);
    for (const { gateway } of [idle, busy]) {
      const { ms } = await timed(() => gateway.close(), 20_000);
      expect(ms, `close took ${ms} ms`).toBeLessThan(10_000);
    }
  });

  it("keeps every accepted submission through Redis killed and restarted under load: each ends COMPLETED exactly once", async () => {
    const redis = await startRedis();
    const ledger = ledgerFile();
    const { url } = await startGateway({ apps: [ledgerApp({ maxRunners: 2, minRunners: 2, concurrency: 2 })], queue: { redis: redis.url } });
    const fal = `${url}/fal/queue/${APP}`;
    const accepted = new Map<string, string>(); // tag -> request id
    const refused: string[] = [];
    const wrong: string[] = [];
    let phase: "before" | "down" | "after" = "before";
    const acceptedIn = { before: 0, down: 0, after: 0 };
    let running = true;

    /** One client: submits one job after another until told to stop. */
    const client = async (n: number): Promise<void> => {
      for (let i = 0; running; i++) {
        const tag = `load-${n}-${i}`;
        const started = Date.now();
        const answer = await timed(() => post(fal, { tag, ledger, ms: 150 }), 15_000).then(
          ({ value }) => value,
          (error: unknown) => ({ status: -1, body: String(error) }),
        );
        const ms = Date.now() - started;
        if (ms > PROMPT_MS) wrong.push(`${tag}: took ${ms} ms (${answer.status})`);
        if (answer.status === 200 && typeof answer.body?.request_id === "string") {
          accepted.set(tag, answer.body.request_id as string);
          acceptedIn[phase]++;
        } else if (answer.status === 503 && answer.body?.error_type === "queue_unavailable") {
          refused.push(tag);
          // Pacing while Redis is away, so four clients do not spin the CPU the gateway needs.
          await new Promise((resolve) => setTimeout(resolve, 25));
        } else wrong.push(`${tag}: ${answer.status} ${JSON.stringify(answer.body)}`);
      }
    };
    const clients = [0, 1, 2, 3].map((n) => client(n));
    try {
      expect(await waitFor(() => acceptedIn.before >= 12, LONG_MS), "submissions were accepted before the outage").toBe(true);
      await redis.kill("SIGKILL");
      phase = "down";
      const refusedBefore = refused.length;
      expect(await waitFor(() => refused.length >= refusedBefore + 8, LONG_MS), "submissions were refused during the outage").toBe(true);
      await redis.restart();
      phase = "after";
      expect(await waitFor(() => acceptedIn.after >= 12, LONG_MS), `submissions were accepted again after the restart (${refused.length} refused)`).toBe(true);
    } finally {
      running = false;
      await Promise.all(clients);
    }
    expect(wrong, "answers other than 200 or a prompt 503").toEqual([]);

    // Every accepted submission ends COMPLETED, with its result fetchable.
    const deadline = Date.now() + 2 * LONG_MS;
    for (const [tag, id] of accepted) {
      const status = await pollUntil(`${fal}/requests/${id}/status`, (answer) => answer.status === 200, Math.max(1000, deadline - Date.now()));
      expect(status.body.status, `${tag} (${id})`).toBe("COMPLETED");
      const result = await getJson(`${fal}/requests/${id}`);
      expect(result.status, tag).toBe(200);
      expect(result.body.tag).toBe(tag);
    }
    // ...and ran to completion exactly once. A refused one may have run (its reply lost with Redis), but never twice.
    const lines = readLedger(ledger);
    for (const tag of accepted.keys()) expect(ends(lines, tag), tag).toBe(1);
    for (const tag of refused) expect(ends(lines, tag), tag).toBeLessThanOrEqual(1);
  });
});

/** While Redis is down: submissions on every protocol and a status read get a prompt 503; /healthz says why. */
async function expectUnavailable(url: string, redis: RedisServer, ledger: string, fal: string, earlyId: string): Promise<void> {
  const attempts: Array<{ name: string; request: () => Promise<{ status: number; body: any }> }> = [
    { name: "fal queue", request: () => post(fal, { tag: "outage-fal-queue", ledger }) },
    { name: "fal run", request: () => post(`${url}/fal/run/${APP}`, { tag: "outage-fal-run", ledger }) },
    { name: "runpod run", request: () => post(`${url}/v2/ledger/run`, { input: { tag: "outage-runpod", ledger } }) },
    { name: "runpod runsync", request: () => post(`${url}/v2/ledger/runsync`, { input: { tag: "outage-runpod-sync", ledger } }) },
    { name: "fal status", request: () => getJson(`${fal}/requests/${earlyId}/status`) },
    { name: "fal result", request: () => getJson(`${fal}/requests/${earlyId}`) },
    { name: "runpod status", request: () => getJson(`${url}/v2/ledger/status/${earlyId}`) },
  ];
  for (const { name, request } of attempts) {
    const { value: answer, ms } = await timed(request);
    expect(answer.status, `${name}: ${JSON.stringify(answer.body)}`).toBe(503);
    expect(ms, `${name} took ${ms} ms`).toBeLessThan(PROMPT_MS);
    if (name.startsWith("fal")) expect(answer.body.error_type, name).toBe("queue_unavailable");
    else expect(answer.body.code, name).toBe("MULTIRANK_ERR_GATEWAY_QUEUE_UNAVAILABLE");
  }
  const health = await getJson(`${url}/healthz`);
  expect(health.status).toBe(503);
  expect(health.body.status).toBe("queue_unavailable");
  expect(health.body.queue.ok).toBe(false);
  expect(health.body.queue.reason).toContain(redis.url.replace("redis://", ""));
  expect(health.body.queue.reason).toMatch(/unreachable/);
}
