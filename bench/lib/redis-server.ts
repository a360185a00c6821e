/**
 * A throwaway redis-server for benchmarks: on a free port of 127.0.0.1, in a
 * temporary folder, with the settings the README advises for a shared queue
 * (`maxmemory-policy noeviction`, append-only file with `appendfsync everysec`).
 * Benchmarks do not import test helpers; this is the small part of
 * test/helpers/redis-server.ts they need.
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

/** Where `redis-server` is, or undefined. */
function findRedisServer(): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/bin", "/usr/sbin", "/usr/local/bin"]) {
    try {
      accessSync(join(dir, "redis-server"), constants.X_OK);
      return join(dir, "redis-server");
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
  while (!(await ping(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not start`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `redis://${HOST}:${port}`, stop };
}

/** True when a PING over a fresh connection answers +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    let reply = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
    socket.once("error", () => done(false));
  });
}
