/**
 * Shared pieces of the project's benchmarks: timing, percentiles, the table
 * every benchmark prints, and the JSON it writes. Each row carries its
 * same-run baseline, because these machines are shared and noisy: the ratio
 * is the figure that means something, not the absolute time.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const QUICK = process.argv.includes("--quick");

/** One measured thing next to its baseline. `lowerIsBetter` says how to read the ratio. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  baselineName: string;
  baseline: number;
  /** value / baseline. */
  ratio: number;
  lowerIsBetter: boolean;
  /** The target, as a ratio, when the issue sets one. */
  target?: { max?: number; min?: number };
  extra?: Record<string, number | string>;
}

export function row(fields: Omit<BenchRow, "ratio">): BenchRow {
  return { ...fields, ratio: fields.value / fields.baseline };
}

/** The same nearest-rank percentiles `multirank bench` reports. */
export { percentile, summarize } from "../../src/benchmark/stats.js";

/** Milliseconds since `start` (from `now()`). */
export function now(): bigint {
  return process.hrtime.bigint();
}
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(3);
}

function verdict(r: BenchRow): string {
  if (!r.target) return "";
  const ok = (r.target.max === undefined || r.ratio <= r.target.max) && (r.target.min === undefined || r.ratio >= r.target.min);
  const want = r.target.max !== undefined ? `<= ${r.target.max}x` : `>= ${r.target.min}x`;
  return `${ok ? "met" : "MISSED"} (${want})`;
}

/** Prints the table and writes `bench/out/<name>.json`. */
export function report(name: string, rows: BenchRow[], meta: Record<string, unknown> = {}): void {
  const header = ["benchmark", "value", "unit", "baseline", "baseline value", "ratio", "target"];
  const lines = rows.map((r) => [r.name, fmt(r.value), r.unit, r.baselineName, fmt(r.baseline), `${r.ratio.toFixed(2)}x`, verdict(r)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const out = [`\n## ${name}${QUICK ? " (quick)" : ""}`, render(header), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(render)].join("\n");
  process.stdout.write(`${out}\n`);
  const file = resolve(dirname(fileURLToPath(import.meta.url)), "../out", `${name}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify({ name, quick: QUICK, node: process.version, cpus: (process.env.BENCH_CPUS ?? "") || undefined, time: new Date().toISOString(), rows, ...meta }, null, 2)}\n`);
}
