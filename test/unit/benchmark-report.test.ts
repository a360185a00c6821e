import { describe, expect, it } from "vitest";
import { escapeXml, renderChartSvg } from "../../src/benchmark/chart.js";
import type { WorldSizeBenchmarkReport, WorldSizeResult } from "../../src/benchmark/report.js";
import { niceTicks } from "../../src/benchmark/scale.js";
import { REPORT_SCHEMA, assertValidReport, validateAgainstSchema } from "../../src/benchmark/schema.js";
import type { LatencySummary } from "../../src/benchmark/stats.js";
import { formatReportTable } from "../../src/benchmark/table.js";
import { unbalancedTags } from "../helpers/svg.js";

function latency(p50: number, p99: number): LatencySummary {
  return { count: 20, p50, p90: (p50 + p99) / 2, p99, mean: p50 * 1.1, min: p50 / 2, max: p99 * 1.5 };
}

function result(worldSize: number, p50: number, p99: number, rps: number): WorldSizeResult {
  return {
    worldSize,
    devices: Array.from({ length: worldSize }, () => "cpu"),
    coldStartMs: 400 * worldSize + 12.345,
    stopMs: 10,
    latencyMs: latency(p50, p99),
    durationMs: 1000,
    requestsPerSecond: rps,
  };
}

/** Known inputs: p50 1, 2, 3 ms; p99 2, 4, 8 ms; 1000, 500, 250 req/s at world sizes 1, 2, 4. */
function makeReport(stream = false): WorldSizeBenchmarkReport {
  const results = [result(1, 1, 2, 1000), result(2, 2, 4, 500), result(4, 3, 8, 250)];
  if (stream) results.forEach((r, i) => (r.stream = { timeToFirstEventMs: latency(0.5 * (i + 1), 1), events: 2000, eventsPerSecond: 2000 / (i + 1) }));
  return {
    schemaVersion: 1,
    createdAt: "2025-01-02T03:04:05.000Z",
    worker: "workers/echo.ts",
    settings: { worldSizes: [1, 2, 4], requests: 20, concurrency: 1, warmup: 2, payloadBytes: 0, payloadKind: "default", stream, quick: true },
    environment: { node: "v20.9.0", platform: "linux", arch: "x64", cpus: 2 },
    results,
  };
}

describe("formatReportTable", () => {
  it("prints a header and one fixed-width row per world size", () => {
    expect(formatReportTable(makeReport())).toBe(
      [
        "multirank bench workers/echo.ts",
        "invoke, 20 requests, concurrency 1, warmup 2, payload tiny",
        "node v20.9.0, linux-x64, 2 CPUs",
        "",
        "WORLD  DEVICES  COLD START ms  P50 ms  P90 ms  P99 ms  MEAN ms  MIN ms  MAX ms  REQ/S",
        "    1  cpu             412.35    1.00    1.50    2.00     1.10    0.50    3.00   1000",
        "    2  cpu             812.35    2.00    3.00    4.00     2.20    1.00    6.00  500.0",
        "    4  cpu             1612.3    3.00    5.50    8.00     3.30    1.50   12.00  250.0",
        "",
      ].join("\n"),
    );
  });

  it("adds time to first event and events/s when the report streamed", () => {
    const lines = formatReportTable(makeReport(true)).split("\n");
    expect(lines[1]).toBe("stream, 20 requests, concurrency 1, warmup 2, payload tiny");
    expect(lines[4]).toBe("WORLD  DEVICES  COLD START ms  P50 ms  P90 ms  P99 ms  MEAN ms  MIN ms  MAX ms  REQ/S  TTFE P50 ms  EVENTS/S");
    expect(lines[5]).toBe("    1  cpu             412.35    1.00    1.50    2.00     1.10    0.50    3.00   1000         0.50      2000");
    expect(lines[7]).toBe("    4  cpu             1612.3    3.00    5.50    8.00     3.30    1.50   12.00  250.0         1.50     666.7");
  });

  it("lists CUDA devices and describes byte payloads", () => {
    const report = makeReport();
    report.results = [{ ...report.results[1]!, devices: ["cuda:0", "cuda:1"] }];
    report.settings = { ...report.settings, payloadBytes: 1536, payloadKind: "bytes" };
    const lines = formatReportTable(report).split("\n");
    expect(lines[1]).toBe("invoke, 20 requests, concurrency 1, warmup 2, payload 1.5 KiB");
    expect(lines[4]).toBe("WORLD  DEVICES        COLD START ms  P50 ms  P90 ms  P99 ms  MEAN ms  MIN ms  MAX ms  REQ/S");
    expect(lines[5]).toBe("    2  cuda:0,cuda:1         812.35    2.00    3.00    4.00     2.20    1.00    6.00  500.0");
  });
});

describe("niceTicks", () => {
  it("picks 1, 2, 2.5 or 5 x 10^k steps from 0 to at least the maximum", () => {
    expect(niceTicks(8)).toEqual({ step: 2, max: 8, ticks: [0, 2, 4, 6, 8], decimals: 0 });
    expect(niceTicks(87)).toEqual({ step: 20, max: 100, ticks: [0, 20, 40, 60, 80, 100], decimals: 0 });
    expect(niceTicks(0.42)).toEqual({ step: 0.1, max: 0.5, ticks: [0, 0.1, 0.2, 0.3, 0.4, 0.5], decimals: 1 });
    expect(niceTicks(11)).toEqual({ step: 2.5, max: 12.5, ticks: [0, 2.5, 5, 7.5, 10, 12.5], decimals: 1 });
    expect(niceTicks(1000)).toEqual({ step: 200, max: 1000, ticks: [0, 200, 400, 600, 800, 1000], decimals: 0 });
    expect(niceTicks(0.003)).toEqual({ step: 0.001, max: 0.003, ticks: [0, 0.001, 0.002, 0.003], decimals: 3 });
  });

  it("gives 0..1 for an empty or zero range", () => {
    expect(niceTicks(0)).toEqual({ step: 0.2, max: 1, ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], decimals: 1 });
    expect(niceTicks(Number.NaN).max).toBe(1);
  });
});

describe("renderChartSvg", () => {
  const svg = renderChartSvg(makeReport());

  it("is one standalone SVG document with balanced tags", () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="960" height="460" viewBox="0 0 960 460" role="img" font-family="sans-serif">\n')).toBe(true);
    expect(svg.endsWith("</svg>\n")).toBe(true);
    expect(unbalancedTags(svg)).toEqual([]);
  });

  it("has a title, a subtitle with the settings, panel titles and axis labels", () => {
    expect(svg).toContain("<title>multirank bench: workers/echo.ts</title>");
    expect(svg).toContain(">invoke, 20 requests, concurrency 1, warmup 2, payload tiny; node v20.9.0, linux-x64, 2 CPUs</text>");
    expect(svg).toContain('<text x="90" y="80" font-size="15" font-weight="bold" fill="#222222">Latency</text>');
    expect(svg).toContain('<text x="570" y="80" font-size="15" font-weight="bold" fill="#222222">Throughput</text>');
    expect(count(svg, ">World size (ranks)</text>")).toBe(2);
    expect(svg).toContain('transform="rotate(-90 32 245)">Latency (ms)</text>');
    expect(svg).toContain('transform="rotate(-90 512 245)">Requests per second</text>');
  });

  it("has a legend entry per series", () => {
    expect(svg).toContain('<line x1="90" y1="94" x2="108" y2="94" stroke="#1f77b4" stroke-width="2.5"/>');
    expect(svg).toContain('<text x="114" y="98" font-size="12" fill="#333333">p50 latency</text>');
    expect(svg).toContain('<text x="228" y="98" font-size="12" fill="#333333">p99 latency</text>');
    expect(svg).toContain('<text x="594" y="98" font-size="12" fill="#333333">requests/s</text>');
    expect(svg).not.toContain("time to first event");
  });

  it("ticks the x axes with the world sizes and the y axes with nice values", () => {
    for (const [x, size] of [[150, 1], [270, 2], [390, 4], [630, 1], [750, 2], [870, 4]] as const) {
      expect(svg).toContain(`<text x="${x}" y="399" text-anchor="middle" font-size="11" fill="#444444">${size}</text>`);
    }
    // Latency: 0..8 by 2 on a 270 px axis from y=380 up to y=110.
    for (const [y, label] of [[384, "0"], [316.5, "2"], [249, "4"], [181.5, "6"], [114, "8"]] as const) {
      expect(svg).toContain(`<text x="82" y="${y}" text-anchor="end" font-size="11" fill="#444444">${label}</text>`);
    }
    // Throughput: 0..1000 by 200.
    expect(svg).toContain('<text x="562" y="114" text-anchor="end" font-size="11" fill="#444444">1000</text>');
    expect(svg).toContain('<text x="562" y="276" text-anchor="end" font-size="11" fill="#444444">400</text>');
  });

  it("draws each series through its points", () => {
    expect(svg).toContain('<polyline fill="none" stroke="#1f77b4" stroke-width="2.5" points="150,346.3 270,312.5 390,278.8"/>');
    expect(svg).toContain('<polyline fill="none" stroke="#d62728" stroke-width="2.5" points="150,312.5 270,245 390,110"/>');
    expect(svg).toContain('<polyline fill="none" stroke="#2ca02c" stroke-width="2.5" points="630,110 750,245 870,312.5"/>');
    expect(svg).toContain('<circle cx="390" cy="110" r="4" fill="#d62728"><title>world size 4: p99 latency 8.00 ms</title></circle>');
    expect(svg).toContain('<circle cx="750" cy="245" r="4" fill="#2ca02c"><title>world size 2: requests/s 500.0 req/s</title></circle>');
    expect(count(svg, "<polyline")).toBe(3);
    expect(count(svg, "<circle")).toBe(9);
  });

  it("adds time to first event to the latency panel when the report streamed", () => {
    const streamed = renderChartSvg(makeReport(true));
    expect(streamed).toContain('<text x="342" y="98" font-size="12" fill="#333333">p50 time to first event</text>');
    expect(streamed).toContain('<polyline fill="none" stroke="#9467bd" stroke-width="2.5" points="150,363.1 270,346.3 390,329.4"/>');
    expect(unbalancedTags(streamed)).toEqual([]);
  });

  it("escapes text and takes a custom title", () => {
    expect(escapeXml(`a < b & "c" 'd' >`)).toBe("a &lt; b &amp; &quot;c&quot; &apos;d&apos; &gt;");
    const report = makeReport();
    report.worker = "workers/<odd> & name.ts";
    const custom = renderChartSvg(report);
    expect(custom).toContain("<title>multirank bench: workers/&lt;odd&gt; &amp; name.ts</title>");
    expect(renderChartSvg(report, { title: "Mine" })).toContain("<title>Mine</title>");
    expect(unbalancedTags(custom)).toEqual([]);
  });

  it("draws a single world size as a point, and no world size as empty axes", () => {
    const one = makeReport();
    one.results = [one.results[0]!];
    const single = renderChartSvg(one);
    expect(single).not.toContain("<polyline");
    expect(single).toContain('<circle cx="270" cy="110" r="4" fill="#d62728">');
    const none = makeReport();
    none.results = [];
    expect(unbalancedTags(renderChartSvg(none))).toEqual([]);
    expect(renderChartSvg(none)).not.toContain("<circle");
  });
});

describe("REPORT_SCHEMA", () => {
  it("accepts a report, streamed or not", () => {
    expect(validateAgainstSchema(makeReport(), REPORT_SCHEMA)).toEqual([]);
    expect(validateAgainstSchema(JSON.parse(JSON.stringify(makeReport(true))), REPORT_SCHEMA)).toEqual([]);
    expect(() => assertValidReport(makeReport())).not.toThrow();
  });

  it("names each problem by its JSON Pointer", () => {
    const report = JSON.parse(JSON.stringify(makeReport())) as Record<string, unknown> & WorldSizeBenchmarkReport;
    report.schemaVersion = 2 as 1;
    report.results[0]!.latencyMs.p50 = -1;
    delete (report.results[1] as Partial<WorldSizeResult>).requestsPerSecond;
    report.settings.payloadKind = "huge" as "bytes";
    report.settings.worldSizes = [1.5];
    report.extra = true;
    const problems = validateAgainstSchema(report, REPORT_SCHEMA);
    // Every problem once, in Ajv's order (which walks keywords, not the document).
    expect(problems.toSorted()).toEqual([
      "/schemaVersion: must be 1",
      "/settings/worldSizes/0: must be of type integer",
      '/settings/payloadKind: must be one of "default", "bytes", "custom"',
      "/results/0/latencyMs/p50: must be >= 0",
      '/results/1: must have property "requestsPerSecond"',
      '/: must not have property "extra"',
    ].toSorted());
    expect(() => assertValidReport(report)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
  });

  it("rejects wrong types at the top", () => {
    expect(validateAgainstSchema(null, REPORT_SCHEMA)).toEqual(["/: must be of type object"]);
    expect(validateAgainstSchema({ ...makeReport(), results: {} }, REPORT_SCHEMA)).toEqual(["/results: must be of type array"]);
  });

  it("is frozen", () => {
    expect(Object.isFrozen(REPORT_SCHEMA)).toBe(true);
    expect(Object.isFrozen(REPORT_SCHEMA.properties!.results!.items)).toBe(true);
  });
});

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}
