import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { childPids, waitFor } from "../helpers/processes.js";

const MiB = 1024 * 1024;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
  child = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  // The gateway's ranks die with it (death pipe).
  expect(await waitFor(() => childPids().length === 0, 15_000)).toBe(true);
});

/** Resident memory of `pid`, bytes. */
function rss(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}

function progress(file: string): string[] {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** Sends a streaming request over a raw socket and never reads the answer. */
function stalledClient(url: string, body: unknown): net.Socket {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const json = JSON.stringify(body);
  socket.write(`POST /fal/run/t/flood/stream HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`);
  // Paused: Node reads nothing more, the kernel's buffers fill, and the gateway's writes stop draining.
  socket.pause();
  socket.on("error", () => {});
  return socket;
}

describe("flow control through the gateway", () => {
  it("1 GiB of events towards an SSE client that never reads grows the gateway (and its runner) by less than 64 MiB; a disconnect cancels at the rank", async () => {
    dir = mkdtempSync(join(tmpdir(), "multirank-flood-"));
    const script = fileURLToPath(new URL("../fixtures/gateway/flood-gateway.ts", import.meta.url));
    // A piped stdin: the gateway exits when this process does, even if the run is killed.
    child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["pipe", "pipe", "inherit"] });
    let stdout = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    expect(await waitFor(() => stdout.includes("url "), 30_000)).toBe(true);
    const url = /url (\S+)/.exec(stdout)![1]!;

    // Warm up: the runner starts and a small stream flows to a reading client.
    const warm = join(dir, "warm.log");
    const response = await fetch(`${url}/fal/run/t/flood/stream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ count: 8, size: 64 * 1024, progressFile: warm }) });
    expect(response.status).toBe(200);
    await response.text();
    expect(progress(warm)).toContain("done");
    const before = rss(child.pid!);

    const file = join(dir, "flood.log");
    const client = stalledClient(url, { count: 1024, size: MiB, progressFile: file });
    // The rank reports the moment its addStreamingResult had to wait for the reader.
    await expect.poll(() => progress(file).some((line) => line.startsWith("waited")), { timeout: 30_000, interval: 50 }).toBe(true);
    // Sample for a while: memory stays flat because the rank stays stopped.
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      peak = Math.max(peak, rss(child.pid!));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const sent = progress(file).filter((line) => line.startsWith("sent")).length;
    expect(sent).toBeLessThan(64); // of 1024: the rank waits, it does not push a gigabyte
    expect(peak - before).toBeLessThan(64 * MiB);

    // The client goes away: the request is cancelled at the rank, and the gateway serves the next one.
    client.destroy();
    await expect.poll(() => progress(file).includes("aborted"), { timeout: 15_000, interval: 50 }).toBe(true);
    const after = join(dir, "after.log");
    const again = await fetch(`${url}/fal/run/t/flood/stream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ count: 2, size: 16, progressFile: after }) });
    await again.text();
    expect(progress(after)).toContain("done");
  }, 180_000);
});
