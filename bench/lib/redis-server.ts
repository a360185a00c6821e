/**
 * A throwaway redis-server for benchmarks: on a free port of 127.0.0.1, in a
 * temporary folder, with the settings the README advises for a shared queue
 * (`maxmemory-policy noeviction`, append-only file with `appendfsync everysec`).
 * Benchmarks do not import test helpers; the tests' own helper
 * (test/helpers/redis-server.ts) builds on the two functions exported here.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { findFreePort } from "../../src/util/free-port.js";

const HOST = "127.0.0.1";
/** Upper bound on the start, ms. */
const START_MS = 15_000;

/** A running redis-server; `stop()` kills it and removes its folder. */
export interface BenchRedis {
  url: string;
  stop(): Promise<void>;
}

/** Where `redis-server` is (`override`, when given, names it), or undefined. */
export function findRedisServer(override?: string): string | undefined {
  const candidates = override !== undefined ? [override] : [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/bin", "/usr/sbin", "/usr/local/bin"].map((dir) => join(dir, "redis-server"));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Starts one, or says why it cannot (no redis-server installed). */
export async function startBenchRedis(): Promise<BenchRedis | { skipped: string }> {
  const binary = findRedisServer();
  if (!binary) return { skipped: "redis-server not installed (apt-get install redis-server)" };
  const port = await findFreePort(HOST);
  const dir = mkdtempSync(join(tmpdir(), "multirank-bench-redis-"));
  const args = ["--port", String(port), "--bind", HOST, "--daemonize", "no", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"];
  const child = spawn(binary, args, { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Not left behind when the benchmark dies on an error.
  const killNow = (): void => void child.kill("SIGKILL");
  process.once("exit", killNow);
  const stop = async (): Promise<void> => {
    process.off("exit", killNow);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_MS;
  while (!(await pingRedis(port, 1000))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not start`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `redis://${HOST}:${port}`, stop };
}

/**
 * One PING over a fresh TCP connection: true on `+PONG`, false on a refused
 * connection, an error reply (`-LOADING` while the AOF loads) or no answer
 * within `timeoutMs` (2 s at most).
 */
export function pingRedis(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    let reply = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), Math.min(timeoutMs, 2000));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
    socket.once("error", () => done(false));
    socket.once("close", () => done(false));
  });
}
