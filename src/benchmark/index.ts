/**
 * Benchmarking world sizes: `benchmarkWorldSizes()` and what formats its
 * report (table, SVG chart, JSON Schema). Only re-exports.
 */
export { benchmarkWorldSizes } from "./benchmark-world-sizes.js";
export { BENCHMARK_DEFAULTS, type BenchmarkOptions, type BenchmarkProgress } from "./options.js";
export {
  REPORT_SCHEMA_VERSION,
  type BenchmarkEnvironment,
  type BenchmarkSettings,
  type StreamFigures,
  type WorldSizeBenchmarkReport,
  type WorldSizeResult,
} from "./report.js";
export { percentile, summarize, ratePerSecond, type LatencySummary } from "./stats.js";
export { formatReportTable } from "./table.js";
export { renderChartSvg, type ChartOptions } from "./chart.js";
export { REPORT_SCHEMA, assertValidReport, validateAgainstSchema, type JsonSchema } from "./schema.js";
export { ProgressBar, formatProgressLine, type ProgressStream } from "./progress-bar.js";
