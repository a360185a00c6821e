/**
 * A Redis of the test's own: Debian's `redis-server` as a child process on a
 * free port of 127.0.0.1, in a temporary folder, persisting every write to its
 * append-only file (`appendfsync always`), so a SIGKILL and a {@link
 * RedisServer.restart} keep every acknowledged key, as a real Redis restart
 * would. No RDB snapshots (`save ""`): the AOF alone is what a restart loads.
 *
 * Suites use {@link describeWithRedis}: where `redis-server` is missing it
 * skips with a message, except in CI (CI set), where it fails instead (.ci/run
 * installs redis-server). MULTIRANK_TEST_REDIS_SERVER names another binary
 * (a path that does not exist shows what a machine without one does).
 *
 * Every server started is stopped and its folder removed even when a test
 * fails: one started inside a test ends with that test (`onTestFinished`), one
 * started in a hook ends with the enclosing {@link describeWithRedis} (or
 * {@link cleanUpRedis}), and the ones left when this process exits are
 * SIGKILLed then. Where util-linux's `setpriv` is present, redis-server also
 * gets a parent-death signal, so even a SIGKILLed test process leaves no
 * Redis behind.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, onTestFinished } from "vitest";
import { findFreePort } from "../../src/util/free-port.js";
import { findRedisServer as findBinary, pingRedis } from "../../bench/lib/redis-server.js";
import { describeNeeding } from "./needs-tool.js";

/** Upper bound on every wait here (start, restart, exit), ms: room for a busy 2-core machine. */
const WAIT_MS = 15_000;
const HOST = "127.0.0.1";
const INSTALL_HINT = "apt-get install redis-server";
const SETPRIV = "/usr/bin/setpriv";

/** What {@link startRedis} takes. */
export interface RedisServerOptions {
  /** Redis's `maxmemory-policy`. @default "noeviction" (what BullMQ needs) */
  maxmemoryPolicy?: string;
}

/** A running (or killed, restartable) redis-server of this test. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT`; the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** The current process's pid (a restart changes it). */
  readonly pid: number;
  /** The server's folder: its AOF and `redis.log`. */
  readonly dir: string;
  /** Sends `signal` (default SIGKILL) and waits until the process has exited; nothing when it already has. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts the server again on the same port and folder (SIGKILLing it first
   * if it still runs) and waits until it answers PING, which Redis does only
   * once it has loaded its AOF.
   */
  restart(): Promise<void>;
  /** Kills the server and removes its folder; idempotent. */
  stop(): Promise<void>;
  /** The last lines of the server's log and output, for failure messages. */
  logTail(lines?: number): string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Where `redis-server` is (MULTIRANK_TEST_REDIS_SERVER, when set, names it), or undefined. */
function findRedisServer(): string | undefined {
  return findBinary(process.env.MULTIRANK_TEST_REDIS_SERVER);
}

/** Whether tests can start a Redis here, and if not, why. */
export function redisAvailable(): { available: boolean; reason?: string } {
  return findRedisServer() === undefined ? { available: false, reason: `redis-server not installed; ${INSTALL_HINT}` } : { available: true };
}

/**
 * `describe` for suites that need Redis (see {@link describeNeeding}).
 * Registers, before `fn`'s own hooks (so it runs after theirs), an `afterAll`
 * that stops every server this file started.
 */
export function describeWithRedis(name: string, fn: () => void): void {
  const { available, reason } = redisAvailable();
  const tool = { what: "the Redis suites", available, reason: reason ?? "", installedInCi: ".ci/run installs redis-server" };
  describeNeeding(tool, name, () => {
    afterAll(stopAllRedis);
    fn();
  });
}

/** Registers a hook that stops every server started so far, after each test or after the suite; for suites not in {@link describeWithRedis}. */
export function cleanUpRedis(scope: "each" | "all" = "all"): void {
  (scope === "each" ? afterEach : afterAll)(stopAllRedis);
}

const servers = new Set<Server>();

/** Stops every server this process started (and removes their folders). */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...servers].map((server) => server.stop()));
}

// The last resort: the test process is exiting with servers still running.
process.on("exit", () => {
  for (const server of servers) server.killNow();
});

/**
 * Starts a redis-server and waits until it answers PING; throws (with its
 * log's tail) when it does not within 15 s, or when redis-server is missing.
 * Inside a test the server is stopped when the test ends.
 */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = findRedisServer();
  if (binary === undefined) throw new Error(`redis-server not installed; ${INSTALL_HINT}`);
  const policy = options.maxmemoryPolicy ?? "noeviction";
  // A free port may be taken between the look and redis-server's bind: then try another.
  for (let attempt = 1; ; attempt++) {
    const server = new Server(binary, await findFreePort(HOST), policy);
    servers.add(server);
    try {
      await server.start();
    } catch (error) {
      await server.stop();
      if (attempt < 3 && server.lastLog.includes("Address already in use")) continue;
      throw error;
    }
    try {
      onTestFinished(() => server.stop());
    } catch {
      // Not inside a test (a beforeAll): describeWithRedis's afterAll stops it.
    }
    return server;
  }
}

class Server implements RedisServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  #binary: string;
  #policy: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = "";
  #stopping: Promise<void> | undefined;
  /** The log's tail as it was when the folder was removed. */
  lastLog = "";

  constructor(binary: string, port: number, policy: string) {
    this.#binary = binary;
    this.#policy = policy;
    this.port = port;
    this.url = `redis://${HOST}:${port}`;
    this.dir = mkdtempSync(join(tmpdir(), "multirank-redis-"));
  }

  get pid(): number {
    return this.#child?.pid ?? -1;
  }

  get #running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.#stopping) throw new Error("this Redis was stopped");
    const args = [
      "--port", String(this.port),
      "--bind", HOST,
      "--protected-mode", "no",
      "--daemonize", "no",
      "--dir", this.dir,
      "--logfile", join(this.dir, "redis.log"),
      "--appendonly", "yes",
      "--appendfsync", "always",
      "--save", "",
      "--maxmemory-policy", this.#policy,
    ];
    // setpriv execs redis-server (same pid) with SIGKILL as its parent-death signal.
    const child = hasSetpriv()
      ? spawn(SETPRIV, ["--pdeathsig", "SIGKILL", "--", this.#binary, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      : spawn(this.#binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    const keep = (chunk: Buffer): void => {
      // Only errors before the log file opens land here; keep a bounded tail.
      this.#output = (this.#output + chunk.toString()).slice(-8192);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.#exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", (error) => {
        keep(Buffer.from(`${String(error)}\n`));
        resolve();
      });
    });
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (!this.#running) throw new Error(`redis-server on port ${this.port} exited while starting:\n${this.logTail()}`);
      if (await pingRedis(this.port, Math.max(100, deadline - Date.now()))) return;
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer PING within ${WAIT_MS} ms:\n${this.logTail()}`);
      // A poll, bounded by the deadline above: the port is not listening yet, or Redis is still loading its AOF.
      await Promise.race([new Promise((r) => setTimeout(r, 50)), this.#exited]);
    }
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.#running) this.#child!.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), WAIT_MS)));
    const tooLate = await Promise.race([this.#exited.then(() => false), late]);
    clearTimeout(timer);
    if (tooLate) {
      // A graceful signal that Redis did not act on in time: end it, then say so.
      this.#child?.kill("SIGKILL");
      await this.#exited;
      throw new Error(`redis-server on port ${this.port} did not exit within ${WAIT_MS} ms of ${signal}:\n${this.logTail()}`);
    }
  }

  async restart(): Promise<void> {
    await this.kill("SIGKILL");
    await this.start();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.kill("SIGKILL").catch(() => {});
      this.lastLog = this.logTail();
      rmSync(this.dir, { recursive: true, force: true });
      servers.delete(this);
    })();
    return this.#stopping;
  }

  /** Synchronous, for process exit: SIGKILL and remove the folder. */
  killNow(): void {
    if (this.#running) this.#child!.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }

  logTail(lines = 30): string {
    let log = "";
    try {
      log = readFileSync(join(this.dir, "redis.log"), "utf8");
    } catch {
      // Not written yet, or removed.
    }
    const text = `${this.#output}${log}`.trimEnd() || this.lastLog;
    return text.split("\n").slice(-lines).join("\n");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

let setprivPresent: boolean | undefined;
function hasSetpriv(): boolean {
  if (setprivPresent === undefined) {
    try {
      accessSync(SETPRIV, constants.X_OK);
      setprivPresent = process.platform === "linux";
    } catch {
      setprivPresent = false;
    }
  }
  return setprivPresent;
}

