/**
 * The fixed-width text table `multirank bench` prints at the end. Pure.
 */
import { describeSettings, formatDevices, formatMs, formatRate } from "./format.js";
import type { WorldSizeBenchmarkReport } from "./report.js";

/**
 * Formats a report as a header and a table with one row per world size:
 * cold start, latency p50/p90/p99/mean/min/max (ms) and requests/s, plus
 * time to first event (p50) and events/s when the report streamed. Text
 * columns are left-aligned, numbers right-aligned, columns two spaces apart;
 * every line ends with "\n" and has no trailing spaces.
 *
 * @example process.stdout.write(formatReportTable(await benchmarkWorldSizes({ worker: "./workers/echo.ts" })));
 */
export function formatReportTable(report: WorldSizeBenchmarkReport): string {
  const stream = report.settings.stream;
  const header = ["WORLD", "DEVICES", "COLD START ms", "P50 ms", "P90 ms", "P99 ms", "MEAN ms", "MIN ms", "MAX ms", "REQ/S"];
  if (stream) header.push("TTFE P50 ms", "EVENTS/S");
  const rows = report.results.map((r) => {
    const row = [
      String(r.worldSize),
      formatDevices(r.devices),
      formatMs(r.coldStartMs),
      formatMs(r.latencyMs.p50),
      formatMs(r.latencyMs.p90),
      formatMs(r.latencyMs.p99),
      formatMs(r.latencyMs.mean),
      formatMs(r.latencyMs.min),
      formatMs(r.latencyMs.max),
      formatRate(r.requestsPerSecond),
    ];
    if (stream) row.push(r.stream ? formatMs(r.stream.timeToFirstEventMs.p50) : "-", r.stream ? formatRate(r.stream.eventsPerSecond) : "-");
    return row;
  });
  const leftAligned = new Set([1]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    `${cells.map((cell, i) => (leftAligned.has(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ").trimEnd()}\n`;
  const { environment: env } = report;
  return [
    `multirank bench ${report.worker}\n`,
    `${describeSettings(report.settings)}\n`,
    `node ${env.node}, ${env.platform}-${env.arch}, ${env.cpus} CPUs\n`,
    "\n",
    line(header),
    ...rows.map(line),
  ].join("");
}
