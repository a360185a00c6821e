/**
 * Several gateways, one queue (issue 16): gateway processes of their own
 * (test/helpers/gateway-process.ts) on one redis-server this file starts,
 * each test under a key prefix of its own. A gateway SIGKILLed mid-job loses
 * nothing, a stream, a cancel and a retry work through a gateway other than
 * the one running the job, a restarted gateway serves what was queued,
 * results expire after `resultTtl`, and priorities and `maxQueueLength` hold
 * across gateways. Every wait is a bounded poll; the ledger worker's file
 * says which rank process ran what, and how often.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cleanUpGatewayProcesses, groupPids, readLedger, startGatewayProcess, type GatewayProcess, type LedgerLine, type RedisGatewayConfig } from "../helpers/gateway-process.js";
import { describeWithRedis, startRedis, type RedisServer } from "../helpers/redis-server.js";

/** Bound on a job (or a batch) reaching a state: cold runner starts on a busy 2-core machine, plus a stalled-job recovery. */
const WAIT_MS = 60_000;

let redis: RedisServer;
let dir: string;
let prefixes = 0;

/** A gateway config on this file's Redis, under a prefix of the test's own (given once per test, shared by its gateways). */
function config(prefix: string, apps: RedisGatewayConfig["apps"], extra: Partial<RedisGatewayConfig> = {}): RedisGatewayConfig {
  return { redis: redis.url, prefix, apps, ...extra };
}

function newPrefix(): string {
  return `fleet${++prefixes}`;
}

/** One app: world size 1, runners kept for the whole test. */
function app(name: string, worker: string, maxRunners: number, extra: Partial<RedisGatewayConfig["apps"][number]> = {}): RedisGatewayConfig["apps"][number] {
  return { name, worker, worldSize: 1, concurrency: 1, maxRunners, keepAlive: 600, ...extra };
}

async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed, text };
}

/** Polls `probe` every `stepMs` until it returns something other than undefined; throws naming `what` after `ms`. */
async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = WAIT_MS, stepMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** fal queue submit; returns the request id. */
async function falSubmit(gateway: GatewayProcess, appName: string, input: unknown, priority?: "normal" | "low"): Promise<string> {
  const { status, body, text } = await call("POST", `${gateway.url}/fal/queue/${appName}`, input, priority ? { "x-fal-queue-priority": priority } : {});
  expect(status, text).toBe(200);
  return body.request_id as string;
}

/** Runpod status of a job (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`, `FAILED`, `CANCELLED`...), asked of `gateway`. */
async function runpodStatus(gateway: GatewayProcess, endpoint: string, id: string): Promise<{ status: string; output?: any; error?: string | null }> {
  const { status, body, text } = await call("GET", `${gateway.url}/v2/${endpoint}/status/${id}`);
  expect(status, text).toBe(200);
  return body;
}

async function untilStatus(gateway: GatewayProcess, endpoint: string, id: string, wanted: string, ms = WAIT_MS): Promise<{ status: string; output?: any; error?: string | null }> {
  let last = "";
  try {
    return await until(`job ${id} to be ${wanted}`, async () => {
      const body = await runpodStatus(gateway, endpoint, id);
      last = body.status;
      return body.status === wanted ? body : undefined;
    }, ms);
  } catch (error) {
    throw new Error(`${(error as Error).message} (last status ${last}); gateway stderr:\n${gateway.stderr().slice(-4000)}`);
  }
}

/** The rank processes of a gateway now (its group, less itself). */
function rankPids(gateway: GatewayProcess): Set<number> {
  return new Set(groupPids(gateway.pid).filter((pid) => pid !== gateway.pid));
}

function linesOf(ledger: LedgerLine[], tag: string, event?: LedgerLine["event"]): LedgerLine[] {
  return ledger.filter((line) => line.id === tag && (event === undefined || line.event === event));
}

describeWithRedis("gateways sharing one Redis queue", () => {
  cleanUpGatewayProcesses("each");

  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), "multirank-fleet-"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a gateway SIGKILLed halfway through 40 shared jobs loses none: each ends once, its answer reachable from the survivor", async () => {
    const prefix = newPrefix();
    const ledger = join(dir, "kill.jsonl");
    // A runs one job at a time, B two; a job whose gateway is lost is taken again after stalledAfter (3 s).
    const [a, b] = await Promise.all([
      startGatewayProcess(config(prefix, [app("fleet/ledger", "ledger", 1)], { stalledAfter: 3 })),
      startGatewayProcess(config(prefix, [app("fleet/ledger", "ledger", 2)], { stalledAfter: 3 })),
    ]);
    const ids = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const tag = `job-${i}`;
      ids.set(tag, await falSubmit(i % 2 === 0 ? a : b, "fleet/ledger", { tag, ledger, ms: 300 + ((i * 37) % 200) }));
    }

    // Halfway, and while A's rank is inside a job (a start of A's with no end yet, so the kill cuts a run short): kill A's whole group.
    let aRanks = new Set<number>();
    let seenAt = 0;
    const cut = await until(
      "half the jobs ended and A in the middle of one",
      () => {
        if (Date.now() - seenAt > 200) {
          aRanks = new Set([...aRanks, ...rankPids(a)]);
          seenAt = Date.now();
        }
        const lines = readLedger(ledger);
        if (lines.filter((line) => line.event === "end").length < 20) return undefined;
        const running = lines.filter((line) => line.event === "start" && aRanks.has(line.pid) && linesOf(lines, line.id, "end").length === 0);
        return running.length > 0 ? running.map((line) => line.id) : undefined;
      },
      WAIT_MS,
      10,
    );
    await a.kill("SIGKILL");

    // Every job ends, and B answers for all of them, A's included.
    const results = new Map<string, { tag: string; pid: number }>();
    await until("every job's result through B", async () => {
      for (const [tag, id] of ids) {
        if (results.has(tag)) continue;
        const { status, body, text } = await call("GET", `${b.url}/fal/queue/fleet/ledger/requests/${id}`);
        if (status === 400 && body?.error_type === "request_not_completed") continue;
        expect(status, `${tag}: ${text}`).toBe(200);
        results.set(tag, body);
      }
      return results.size === ids.size ? true : undefined;
    }, WAIT_MS, 100);
    for (const [tag, id] of ids) {
      const { body } = await call("GET", `${b.url}/fal/queue/fleet/ledger/requests/${id}/status`);
      expect(body.status, tag).toBe("COMPLETED");
      expect(body.error, tag).toBeUndefined();
    }

    const lines = readLedger(ledger);
    const bRanks = rankPids(b);
    for (const tag of ids.keys()) {
      const ends = linesOf(lines, tag, "end");
      expect(ends, `${tag} ran to completion exactly once`).toHaveLength(1);
      // The answer is that run's.
      expect(results.get(tag)).toEqual({ tag, pid: ends[0]!.pid });
    }
    // What A was running when it died ran again on B, and ended there.
    expect(cut.length).toBeGreaterThan(0);
    for (const tag of cut) {
      expect(linesOf(lines, tag, "start").some((line) => aRanks.has(line.pid)), tag).toBe(true);
      expect(bRanks.has(linesOf(lines, tag, "end")[0]!.pid), `${tag} ended on B`).toBe(true);
      // Its caller is told why it ran twice.
      const { body } = await call("GET", `${b.url}/fal/queue/fleet/ledger/requests/${ids.get(tag)}/status?logs=1`);
      expect(body.logs.map((log: { message: string }) => log.message).join("\n"), tag).toMatch(/was lost; running the request again/);
    }
  });

  it("a stream and a cancel go through the gateway that does not run the job", async () => {
    const prefix = newPrefix();
    const cfg = config(prefix, [app("fleet/control", "control", 1)]);
    const release = join(dir, "stream-release");
    // B alone first, so the blocker runs there; B then has no room, and every later job runs on A.
    const b = await startGatewayProcess(cfg);
    const blocker = (await call("POST", `${b.url}/v2/control/run`, { input: { id: "blocker", untilFile: release } })).body.id as string;
    await untilStatus(b, "control", blocker, "IN_PROGRESS");
    const a = await startGatewayProcess(cfg);
    try {
      // Runpod: /run then /stream through B.
      const run = await call("POST", `${b.url}/v2/control/run`, { input: { id: "runpod", chunks: 30 } });
      expect(run.status, run.text).toBe(200);
      const chunks: unknown[] = [];
      let status = "";
      const deadline = Date.now() + WAIT_MS;
      while (!["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].includes(status)) {
        expect(Date.now() < deadline, `the Runpod stream ended within ${WAIT_MS} ms (got ${chunks.length} chunks)`).toBe(true);
        const { body, text } = await call("GET", `${b.url}/v2/control/stream/${run.body.id}`);
        expect(Array.isArray(body?.stream), text).toBe(true);
        for (const item of body.stream) chunks.push(item.output);
        status = body.status;
      }
      expect(status).toBe("COMPLETED");
      // Each chunk once, in order, then the return value (as the in-memory queue streams it).
      expect(chunks.slice(0, 30)).toEqual(Array.from({ length: 30 }, (_, chunk) => ({ chunk })));
      expect(chunks.slice(30)).toEqual([expect.objectContaining({ id: "runpod" })]);
      const done = await runpodStatus(b, "control", run.body.id);
      expect(rankPids(a).has(done.output.pid), "the Runpod stream's job ran on A").toBe(true);

      // fal: the SSE stream of /fal/run/.../stream, submitted to and read from B.
      const sse = await fetch(`${b.url}/fal/run/fleet/control/stream`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: "fal", chunks: 30 }),
        signal: AbortSignal.timeout(WAIT_MS),
      });
      expect(sse.status).toBe(200);
      const falId = sse.headers.get("x-fal-request-id")!;
      const events = (await sse.text())
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => JSON.parse(line.slice(5)));
      // Each chunk once, in order; the last event is the full output (fal's stream).
      expect(events.slice(0, 30)).toEqual(Array.from({ length: 30 }, (_, chunk) => ({ chunk })));
      expect(events.slice(30)).toEqual([expect.objectContaining({ id: "fal" })]);
      const falDone = await untilStatus(b, "control", falId, "COMPLETED");
      expect(rankPids(a).has(falDone.output.pid), "the fal stream's job ran on A").toBe(true);

      // A cancel through B reaches A's rank: its call's signal aborts, the job ends CANCELLED, A's runner is free again.
      const abortFile = join(dir, "cancel-observed");
      const doomed = await falSubmit(b, "fleet/control", { id: "doomed", untilFile: join(dir, "never"), abortFile });
      await untilStatus(b, "control", doomed, "IN_PROGRESS");
      const asked = Date.now();
      const cancel = await call("PUT", `${b.url}/fal/queue/fleet/control/requests/${doomed}/cancel`);
      expect(cancel.status, cancel.text).toBe(202);
      await untilStatus(b, "control", doomed, "CANCELLED", 15_000);
      await until("the rank to see the cancel", () => (existsSync(abortFile) ? true : undefined), 15_000);
      expect(Date.now() - asked).toBeLessThan(15_000);
      const after = (await call("POST", `${b.url}/v2/control/run`, { input: { id: "after" } })).body.id as string;
      const afterDone = await untilStatus(b, "control", after, "COMPLETED");
      expect(rankPids(a).has(afterDone.output.pid), "A's runner took the next job").toBe(true);
    } finally {
      writeFileSync(release, "");
    }
    await untilStatus(a, "control", blocker, "COMPLETED");
  });

  it("a gateway restarted with queued jobs serves them; results stay for resultTtl, then go", async () => {
    const prefix = newPrefix();
    const ledger = join(dir, "restart.jsonl");
    const apps = [app("fleet/ledger", "ledger", 1)];
    const a = await startGatewayProcess(config(prefix, apps, { options: { resultTtl: 600 } }));
    const ids: string[] = [];
    // The first outlasts A's shutdownGrace (2 s): A hands it back mid-run.
    for (let i = 0; i < 5; i++) ids.push(await falSubmit(a, "fleet/ledger", { tag: `r${i}`, ledger, ms: i === 0 ? 4000 : 300 }));
    // One running, four queued: SIGTERM.
    await until("the first job to start", () => (readLedger(ledger).length > 0 ? true : undefined));
    await a.kill("SIGTERM");
    expect(readLedger(ledger).filter((line) => line.event === "end")).toEqual([]);

    // A' on the same Redis, whose results last 4 s.
    const again = await startGatewayProcess(config(prefix, apps, { options: { resultTtl: 4 } }));
    const results = new Map<string, unknown>();
    await until("all five results through A'", async () => {
      for (const id of ids) {
        if (results.has(id)) continue;
        const { status, body, text } = await call("GET", `${again.url}/fal/queue/fleet/ledger/requests/${id}`);
        if (status === 400 && body?.error_type === "request_not_completed") continue;
        expect(status, text).toBe(200);
        results.set(id, body);
      }
      return results.size === 5 ? true : undefined;
    }, WAIT_MS, 50);
    const lines = readLedger(ledger);
    for (let i = 0; i < 5; i++) {
      expect(results.get(ids[i]!)).toMatchObject({ tag: `r${i}` });
      expect(linesOf(lines, `r${i}`, "end"), `r${i} ran to completion once`).toHaveLength(1);
    }
    // The job cut short by the shutdown started again on A', from the beginning.
    expect(linesOf(lines, "r0", "start")).toHaveLength(2);
    expect(rankPids(again).has(linesOf(lines, "r0", "end")[0]!.pid)).toBe(true);
    // The last one finished on A' (4 s TTL): there now, gone once its TTL has passed.
    const last = ids[4]!;
    const fetchedAt = Date.now();
    expect((await call("GET", `${again.url}/fal/queue/fleet/ledger/requests/${last}`)).status).toBe(200);
    await until("the last result to expire", async () => ((await call("GET", `${again.url}/fal/queue/fleet/ledger/requests/${last}`)).status === 404 ? true : undefined), 20_000, 200);
    expect(Date.now() - fetchedAt).toBeLessThan(20_000);
    expect((await call("GET", `${again.url}/v2/ledger/status/${last}`)).status).toBe(404);
  });

  it("priorities and maxQueueLength hold across gateways", async () => {
    const prefix = newPrefix();
    const ledger = join(dir, "priority.jsonl");
    const cfg = config(prefix, [app("fleet/prio", "ledger", 1), app("fleet/capped", "ledger", 1, { maxQueueLength: 3 })]);
    const [a, b] = await Promise.all([startGatewayProcess(cfg), startGatewayProcess(cfg)]);
    const files = { p1: join(dir, "prio-1"), p2: join(dir, "prio-2"), c: join(dir, "capped") };
    try {
      // Both gateways busy on both apps: one blocker each (each runs one job at a time per app).
      const blockers = await Promise.all([
        falSubmit(a, "fleet/prio", { tag: "pb1", ledger, untilFile: files.p1 }),
        falSubmit(b, "fleet/prio", { tag: "pb2", ledger, untilFile: files.p2 }),
        falSubmit(a, "fleet/capped", { tag: "cb1", ledger, untilFile: files.c }),
        falSubmit(b, "fleet/capped", { tag: "cb2", ledger, untilFile: files.c }),
      ]);
      await Promise.all(blockers.slice(0, 2).map((id) => untilStatus(a, "prio", id, "IN_PROGRESS")));
      await Promise.all(blockers.slice(2).map((id) => untilStatus(a, "capped", id, "IN_PROGRESS")));

      // maxQueueLength 3 counts what was queued through either gateway.
      const capped: string[] = [];
      for (let i = 0; i < 3; i++) capped.push(await falSubmit(a, "fleet/capped", { tag: `c${i}`, ledger }));
      const full = await call("POST", `${b.url}/fal/queue/fleet/capped`, { tag: "c3", ledger });
      expect(full.status, full.text).toBe(429);
      // A queued job cancelled through B leaves the shared queue at once, which makes room for one more.
      const cancel = await call("PUT", `${b.url}/fal/queue/fleet/capped/requests/${capped[0]}/cancel`);
      expect(cancel.status, cancel.text).toBe(202);
      expect((await runpodStatus(a, "capped", capped[0]!)).status).toBe("CANCELLED");
      await falSubmit(b, "fleet/capped", { tag: "c3", ledger });
      expect((await call("POST", `${a.url}/fal/queue/fleet/capped`, { tag: "c4", ledger })).status).toBe(429);

      // Normal and low alternate, through A twice then B twice, and so on.
      const tags: Array<{ tag: string; priority: "normal" | "low" }> = [];
      for (let i = 0; i < 8; i++) {
        const priority = i % 2 === 0 ? "normal" : "low";
        const tag = `${priority}-${i}`;
        tags.push({ tag, priority });
        await falSubmit(Math.floor(i / 2) % 2 === 0 ? a : b, "fleet/prio", { tag, ledger, ms: 20 }, priority);
      }
      // One blocker ends: its gateway alone takes the eight, in priority order, whichever gateway they came through.
      writeFileSync(files.p1, "");
      await until("the eight prioritised jobs to end", () => (tags.every(({ tag }) => linesOf(readLedger(ledger), tag, "end").length === 1) ? true : undefined));
      const starts = readLedger(ledger)
        .filter((line) => line.event === "start" && tags.some(({ tag }) => tag === line.id))
        .map((line) => line.id);
      const normal = tags.filter(({ priority }) => priority === "normal").map(({ tag }) => tag);
      const low = tags.filter(({ priority }) => priority === "low").map(({ tag }) => tag);
      // Every normal before every low, each in the order submitted.
      expect(starts).toEqual([...normal, ...low]);
    } finally {
      for (const file of Object.values(files)) writeFileSync(file, "");
    }
  });

  it("a job that failed on one gateway is retried through the other and runs again", async () => {
    const prefix = newPrefix();
    const cfg = config(prefix, [app("fleet/control", "control", 1)]);
    const [a, b] = await Promise.all([startGatewayProcess(cfg), startGatewayProcess(cfg)]);
    const marker = join(dir, "retry-marker");
    const run = await call("POST", `${a.url}/v2/control/run`, { input: { id: "flaky", mode: "throw-once", marker } });
    expect(run.status, run.text).toBe(200);
    const failed = await untilStatus(a, "control", run.body.id, "FAILED");
    expect(failed.error).toMatch(/boom once/);
    const retry = await call("POST", `${b.url}/v2/control/retry/${run.body.id}`);
    expect(retry.status, retry.text).toBe(200);
    expect(retry.body).toEqual({ id: run.body.id, status: "IN_QUEUE" });
    const done = await untilStatus(b, "control", run.body.id, "COMPLETED");
    expect(done.output).toMatchObject({ id: "flaky" });
    // A answers the same.
    expect((await runpodStatus(a, "control", run.body.id)).status).toBe("COMPLETED");
  });
});
