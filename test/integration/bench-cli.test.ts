import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PassThrough } from "node:stream";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { benchmarkWorldSizes } from "../../src/benchmark/benchmark-world-sizes.js";
import { REPORT_SCHEMA, validateAgainstSchema } from "../../src/benchmark/schema.js";
import type { WorldSizeBenchmarkReport } from "../../src/benchmark/report.js";
import { runBenchCommand } from "../../src/cli/bench.js";
import { childPids, waitFor } from "../helpers/processes.js";
import { example, fixture, testLogger } from "../helpers/runners.js";
import { unbalancedTags } from "../helpers/svg.js";

const execFileAsync = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "multirank-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// benchmarkWorldSizes owns its runners; whatever a test did, none of their ranks may outlive it.
afterEach(async () => {
  const gone = await waitFor(() => childPids().length === 0, 15_000);
  expect(gone, `child processes left behind: ${childPids().join(", ")}`).toBe(true);
});

async function runCli(argv: string[]): Promise<{ code: number; text: string }> {
  const out = new PassThrough();
  let text = "";
  out.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const code = await runBenchCommand(argv, out, { logger: testLogger, progress: { write: () => true } });
  return { code, text };
}

describe("multirank bench on the echo worker", () => {
  it("prints a table and writes a report that matches its schema and an SVG chart", async () => {
    const json = join(dir, "echo.json");
    const chart = join(dir, "echo.svg");
    const { code, text } = await runCli(["workers/echo.ts", "--world-sizes", "1,2", "--quick", "--devices", "cpu", "--json", json, "--chart", chart]);
    expect(text, text).toMatch(/^multirank bench workers\/echo.ts\n/);
    expect(code).toBe(0);

    const lines = text.split("\n");
    expect(lines[4]).toMatch(/^WORLD {2}DEVICES {2}COLD START ms {2}P50 ms {2}P90 ms {2}P99 ms {2}MEAN ms {2}MIN ms {2}MAX ms +REQ\/S$/);
    expect(lines[5]).toMatch(/^ {4}1 {2}cpu +\d/);
    expect(lines[6]).toMatch(/^ {4}2 {2}cpu +\d/);
    expect(text).toContain(`wrote ${json}\nwrote ${chart}\n`);

    const report = JSON.parse(readFileSync(json, "utf8")) as WorldSizeBenchmarkReport;
    expect(validateAgainstSchema(report, REPORT_SCHEMA)).toEqual([]);
    expect(report.settings).toMatchObject({ worldSizes: [1, 2], requests: 20, warmup: 2, concurrency: 1, quick: true, stream: false });
    expect(report.results.map((r) => r.worldSize)).toEqual([1, 2]);
    for (const r of report.results) {
      expect(r.devices).toEqual(Array.from({ length: r.worldSize }, () => "cpu"));
      expect(r.latencyMs.count).toBe(20);
      expect(r.latencyMs.min).toBeLessThanOrEqual(r.latencyMs.p50);
      expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p99);
      expect(r.latencyMs.p99).toBeLessThanOrEqual(r.latencyMs.max);
      expect(r.coldStartMs).toBeGreaterThan(0);
      expect(r.requestsPerSecond).toBeGreaterThan(0);
      expect(r.stream).toBeUndefined();
    }

    const svg = readFileSync(chart, "utf8");
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(unbalancedTags(svg)).toEqual([]);
    expect(svg.match(/<polyline /g)).toHaveLength(3);
  });

  it("writes only JSON to stdout with --json -", async () => {
    const { code, text } = await runCli(["workers/echo.ts", "--world-sizes", "1", "--requests", "3", "--warmup", "0", "--devices", "cpu", "--json", "-"]);
    expect(code).toBe(0);
    expect(validateAgainstSchema(JSON.parse(text), REPORT_SCHEMA)).toEqual([]);
  });

  it("--payload and --payload-file send the worker its own input (the README's worker fails on { seq })", async () => {
    const worker = fixture("my-model");
    const failing = await runCli([worker, "--world-sizes", "1", "--requests", "2", "--warmup", "0", "--devices", "cpu"]);
    expect(failing.code).toBe(1);
    const inline = await runCli([worker, "--world-sizes", "1", "--requests", "2", "--warmup", "0", "--devices", "cpu", "--json", "-", "--payload", '{"prompt":"hello world"}']);
    expect(inline.code, inline.text).toBe(0);
    expect(JSON.parse(inline.text).settings).toMatchObject({ payloadKind: "custom", requests: 2 });
    const file = join(dir, "payload.json");
    writeFileSync(file, JSON.stringify({ prompt: "from a file" }));
    const fromFile = await runCli([worker, "--world-sizes", "1", "--requests", "2", "--warmup", "0", "--devices", "cpu", "--json", "-", `--payload-file=${file}`]);
    expect(fromFile.code, fromFile.text).toBe(0);
  });

  it("exits 1 and names the world size when a request fails", async () => {
    const { code, text } = await runCli([fixture("throws-in-call"), "--world-sizes", "2", "--requests", "3", "--warmup", "0", "--devices", "cpu"]);
    expect(code).toBe(1);
    expect(text).toMatch(/^multirank bench: failed at world size 2 \(measure\) \[MULTIRANK_ERR_RANK\]: rank 1 failed in call/);
  });
});

describe("node src/cli/main.ts bench", () => {
  it("exits 0 and writes a valid report and chart", async () => {
    const json = join(dir, "spawned.json");
    const chart = join(dir, "spawned.svg");
    const argv = ["--import", "tsx", "src/cli/main.ts", "bench", "workers/echo.ts", "--world-sizes", "1,2", "--quick", "--devices", "cpu", "--json", json, "--chart", chart];
    const { stdout } = await execFileAsync(process.execPath, argv, { timeout: 100_000, env: { ...process.env, MULTIRANK_LOG_LEVEL: "silent" } });
    expect(stdout).toContain("WORLD  DEVICES");
    expect(validateAgainstSchema(JSON.parse(readFileSync(json, "utf8")), REPORT_SCHEMA)).toEqual([]);
    const svg = readFileSync(chart, "utf8");
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(unbalancedTags(svg)).toEqual([]);
  });
});

describe("benchmarkWorldSizes", () => {
  it("streams: counts every item, times the first, and sends warmup + requests payloads", async () => {
    const seqs: number[] = [];
    const report = await benchmarkWorldSizes({
      worker: fixture("many-events"),
      worldSizes: [1],
      requests: 3,
      warmup: 1,
      stream: true,
      devices: "cpu",
      logger: testLogger,
      payload: (seq: number) => {
        seqs.push(seq);
        return { count: 50 };
      },
    });
    expect(seqs).toEqual([0, 1, 2, 3]);
    const [r] = report.results;
    // 50 streamed events and the final result per measured request.
    expect(r!.stream!.events).toBe(3 * 51);
    expect(r!.stream!.timeToFirstEventMs.count).toBe(3);
    expect(r!.stream!.timeToFirstEventMs.max).toBeLessThanOrEqual(r!.latencyMs.max);
    expect(r!.stream!.eventsPerSecond).toBeGreaterThan(0);
    expect(validateAgainstSchema(report, REPORT_SCHEMA)).toEqual([]);
  });

  it("rejects with AbortError and leaves no rank when aborted mid-measurement", async () => {
    const controller = new AbortController();
    const phases: string[] = [];
    const promise = benchmarkWorldSizes({
      worker: example("echo"),
      worldSizes: [2, 4],
      requests: 100_000,
      warmup: 0,
      devices: "cpu",
      logger: testLogger,
      signal: controller.signal,
      onProgress: (progress) => {
        phases.push(`${progress.worldSize}:${progress.phase}`);
        if (progress.phase === "measure" && progress.completed === 5) controller.abort(new Error("enough"));
      },
    });
    await expect(promise).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(phases).toContain("2:measure");
    expect(phases).not.toContain("4:start");
  });

  it("rejects with AbortError when aborted during start", async () => {
    const controller = new AbortController();
    const phases: string[] = [];
    const promise = benchmarkWorldSizes({
      worker: example("echo"),
      worldSizes: [2],
      devices: "cpu",
      logger: testLogger,
      signal: controller.signal,
      onProgress: (progress) => {
        phases.push(progress.phase);
        if (progress.phase === "start") setTimeout(() => controller.abort(), 50);
      },
    });
    await expect(promise).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
    expect(phases).toEqual(["start"]);
  });

  it("rejects with the rank's error when setup fails", async () => {
    await expect(
      benchmarkWorldSizes({ worker: fixture("throws-in-setup"), worldSizes: [1], requests: 1, devices: "cpu", logger: testLogger }),
    ).rejects.toMatchObject({ code: "MULTIRANK_ERR_RANK", phase: "setup" });
  });
});
