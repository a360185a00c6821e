/**
 * What importing the package costs a rank: the root entry and
 * `multirank/worker` load no HTTP server, no metrics library and no JSON
 * serializer compiler (they come with `createGateway`), and the subpath
 * entries resolve.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The packages a fresh process has loaded after importing `specifier` (resolved from the repo, as a user's code would). */
function packagesLoadedBy(specifier: string): string[] {
  const script = `
    import { createRequire } from "node:module";
    const require = createRequire(import.meta.url);
    await import(${JSON.stringify(specifier)});
    const names = new Set();
    for (const file of Object.keys(require("node:module")._cache)) {
      const match = /node_modules\\/((@[^/]+\\/)?[^/]+)/.exec(file);
      if (match) names.add(match[1]);
    }
    process.stdout.write(JSON.stringify([...names].sort()));`;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" })) as string[];
}

describe("package entries", () => {
  it.each(["multirank", "multirank/worker"])("%s loads neither fastify, prom-client, ajv, the protocols' serializers nor the Redis queue's clients", (specifier) => {
    const loaded = packagesLoadedBy(specifier);
    expect(loaded).not.toContain("fastify");
    expect(loaded).not.toContain("prom-client");
    expect(loaded).not.toContain("fast-json-stringify");
    // Ajv checks benchmark reports; it comes with multirank/bench only.
    expect(loaded).not.toContain("ajv");
    // The Redis queue's clients come with a gateway given `queue` only.
    expect(loaded).not.toContain("bullmq");
    expect(loaded).not.toContain("ioredis");
  });

  it("the report helpers are exported by multirank/bench, not by the root entry", async () => {
    const helpers = ["ProgressBar", "formatProgressLine", "percentile", "summarize", "ratePerSecond", "formatReportTable", "renderChartSvg", "REPORT_SCHEMA", "assertValidReport", "validateAgainstSchema"];
    const script = `
      const root = await import("multirank");
      const bench = await import("multirank/bench");
      const helpers = ${JSON.stringify(helpers)};
      process.stdout.write(JSON.stringify({ root: helpers.filter((name) => name in root), bench: helpers.filter((name) => name in bench), benchmarkWorldSizes: typeof root.benchmarkWorldSizes }));`;
    const found = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" })) as { root: string[]; bench: string[]; benchmarkWorldSizes: string };
    expect(found).toEqual({ root: [], bench: helpers, benchmarkWorldSizes: "function" });
  });

  it("multirank/worker, multirank/gateway and multirank/bench resolve to what they name", async () => {
    const script = `
      const worker = await import("multirank/worker");
      const gateway = await import("multirank/gateway");
      const bench = await import("multirank/bench");
      process.stdout.write(JSON.stringify([typeof worker.DistributedWorker, typeof worker.ValidationError, typeof gateway.createGateway, typeof bench.benchmarkWorldSizes]));`;
    const kinds = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" })) as string[];
    expect(kinds).toEqual(["function", "function", "function", "function"]);
  });
});
