/**
 * A runner in attach mode on one namespace "host" and `multirank rank`
 * processes on others (test/helpers/netns.ts), as a launcher on each host
 * would start them: used by test/integration/multihost-netns.test.ts and
 * bench/multihost.ts.
 */
import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { NetnsHosts } from "./netns.js";

const REPO = resolve(import.meta.dirname, "../..");
const RUNNER = resolve(REPO, "test/fixtures/netns-runner.ts");
const CLI = resolve(REPO, "dist/cli/main.js");
/** The worker every rank runs (see the file). */
export const NETNS_WORKER = resolve(REPO, "test/fixtures/workers/netns-hosts.ts");

/** What a runner's request failed with, as the fixture reports it. */
export interface ErrorInfo {
  name?: string;
  code?: string;
  message?: string;
  rank?: number;
  host?: string;
  silentMs?: number;
}

/** One line the runner fixture printed. */
export interface RunnerEvent {
  ev: string;
  at: number;
  id?: number;
  ok?: boolean;
  value?: unknown;
  error?: ErrorInfo;
  state?: string;
  record?: { level: number; msg: string; [key: string]: unknown };
}

/** The reply to one request: its value, or the error it failed with. */
export type Reply = { ok: true; value: unknown; at: number } | { ok: false; error: ErrorInfo; at: number };

/** The runner fixture (test/fixtures/netns-runner.ts) on a host, driven over its stdin and stdout. */
export class RunnerOnHost extends EventEmitter {
  readonly child: ChildProcess;
  /** Every line it printed, in order. */
  readonly events: RunnerEvent[] = [];
  readonly exited: Promise<number | null>;
  #stderr = "";
  #next = 0;
  readonly #pending = new Map<number, (reply: Reply) => void>();

  constructor(hosts: NetnsHosts, host: string, options: { worldSize: number; joinFile: string; heartbeatTimeout?: number }) {
    super();
    const config = { workerAddr: hosts.host(host).address, worker: NETNS_WORKER, ...options };
    this.child = hosts.spawn(host, process.execPath, ["--import", "tsx", RUNNER, JSON.stringify(config)], { cwd: REPO, stdio: ["pipe", "pipe", "pipe"] });
    this.exited = new Promise((done) => this.child.once("exit", (code) => done(code)));
    this.child.stderr!.on("data", (chunk: Buffer) => (this.#stderr += chunk.toString()));
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      let event: RunnerEvent;
      try {
        event = JSON.parse(line) as RunnerEvent;
      } catch {
        return; // not the protocol (a stray print)
      }
      this.events.push(event);
      if (event.ev === "reply") {
        const settle = this.#pending.get(event.id!);
        this.#pending.delete(event.id!);
        settle?.(event.ok ? { ok: true, value: event.value, at: event.at } : { ok: false, error: event.error!, at: event.at });
      }
      this.emit(event.ev, event);
    });
    this.child.once("exit", (code, signal) => {
      for (const settle of this.#pending.values()) settle({ ok: false, error: { message: `the runner process exited (${code ?? signal}): ${this.#stderr.slice(-2000)}` }, at: Date.now() });
      this.#pending.clear();
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Sends one request; resolves with its reply (never rejects). */
  request(op: string, input?: unknown, timeout?: number): Promise<Reply> {
    const id = this.#next++;
    return new Promise((settle) => {
      this.#pending.set(id, settle);
      this.child.stdin!.write(`${JSON.stringify({ id, op, input, timeout })}\n`);
    });
  }

  /** Like {@link request}, but the value, or an Error with the reply's message. */
  async call<T = unknown>(op: string, input?: unknown, timeout?: number): Promise<T> {
    const reply = await this.request(op, input, timeout);
    if (!reply.ok) throw Object.assign(new Error(`${op} failed: ${reply.error.code ?? ""} ${reply.error.message ?? ""}`), { info: reply.error });
    return reply.value as T;
  }

  /** Resolves with the first event (already seen or coming) of kind `ev` that `match` accepts. */
  waitFor(ev: string, match: (event: RunnerEvent) => boolean = () => true): Promise<RunnerEvent> {
    const seen = this.events.find((e) => e.ev === ev && match(e));
    if (seen) return Promise.resolve(seen);
    return new Promise((done) => {
      const listener = (event: RunnerEvent): void => {
        if (!match(event)) return;
        this.off(ev, listener);
        done(event);
      };
      this.on(ev, listener);
    });
  }
}

/** One `multirank rank` process on a host. */
export interface RankOnHost {
  rank: number;
  host: string;
  child: ChildProcess;
  /** Its stdout lines (the rank's pino records at its log level). */
  lines: string[];
  stderr(): string;
  exited: Promise<number | null>;
}

/**
 * Starts `multirank rank` on `host` as torchrun would: RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, and the join string in `MULTIRANK_JOIN_FILE`
 * (or `join` in `MULTIRANK_JOIN`).
 */
export function launchRank(
  hosts: NetnsHosts,
  host: string,
  p: { rank: number; worldSize: number; localRank: number; localWorldSize: number; joinFile?: string; join?: string; logLevel?: string },
): RankOnHost {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RANK: String(p.rank),
    WORLD_SIZE: String(p.worldSize),
    LOCAL_RANK: String(p.localRank),
    LOCAL_WORLD_SIZE: String(p.localWorldSize),
    MULTIRANK_LOG_LEVEL: p.logLevel ?? "warn",
  };
  delete env.MULTIRANK_JOIN;
  delete env.MULTIRANK_JOIN_FILE;
  delete env.MULTIRANK_HOST_ADDR;
  delete env.MULTIRANK_HOST_ID;
  if (p.join !== undefined) env.MULTIRANK_JOIN = p.join;
  if (p.joinFile !== undefined) env.MULTIRANK_JOIN_FILE = p.joinFile;
  const child = hosts.spawn(host, process.execPath, [CLI, "rank", "--worker", NETNS_WORKER], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => lines.push(line));
  let err = "";
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return { rank: p.rank, host, child, lines, stderr: () => err, exited };
}

/** Ranks 0..n-1 placed on `layout`'s hosts in order, `perHost` each (torchrun's local ranks). */
export function launchRanks(hosts: NetnsHosts, layout: readonly string[], perHost: number, joinFile: string, logLevel = "warn"): RankOnHost[] {
  const worldSize = layout.length * perHost;
  return [...Array(worldSize).keys()].map((rank) =>
    launchRank(hosts, layout[Math.floor(rank / perHost)]!, { rank, worldSize, localRank: rank % perHost, localWorldSize: perHost, joinFile, logLevel }),
  );
}
