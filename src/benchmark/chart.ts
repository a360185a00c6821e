/**
 * The SVG chart of a world-size benchmark: latency and throughput against
 * world size, side by side. A pure function from a report to a string; no
 * dependencies, no scripts, fonts left to the viewer.
 */
import { describeSettings, formatMs, formatRate } from "./format.js";
import type { WorldSizeBenchmarkReport } from "./report.js";
import { niceTicks, type NiceTicks } from "./scale.js";

/** Options of {@link renderChartSvg}. */
export interface ChartOptions {
  /** Text at the top. @default `multirank bench: <worker>` */
  title?: string;
}

interface Series {
  label: string;
  color: string;
  values: number[];
  format: (value: number) => string;
  unit: string;
}

interface Panel {
  title: string;
  axisLabel: string;
  series: Series[];
}

const WIDTH = 960;
const HEIGHT = 460;
const PLOT_TOP = 110;
const PLOT_HEIGHT = 270;
const PLOT_WIDTH = 360;
const PANEL_LEFT = [90, 570];
const COLORS = Object.freeze({ p50: "#1f77b4", p99: "#d62728", ttfe: "#9467bd", rps: "#2ca02c" });

/**
 * Renders `report` as a standalone SVG document (960 x 460): on the left,
 * latency p50 and p99 in ms (and time to first event p50 when the report
 * streamed); on the right, requests per second. World sizes are evenly
 * spaced along each x axis, one tick per world size measured; y axes start
 * at 0 with 1/2/2.5/5 x 10^k ticks. Each point carries a `<title>` tooltip.
 *
 * @example await writeFile("bench.svg", renderChartSvg(report));
 */
export function renderChartSvg(report: WorldSizeBenchmarkReport, options: ChartOptions = {}): string {
  const sizes = report.results.map((r) => r.worldSize);
  const latency: Series[] = [
    { label: "p50 latency", color: COLORS.p50, values: report.results.map((r) => r.latencyMs.p50), format: formatMs, unit: "ms" },
    { label: "p99 latency", color: COLORS.p99, values: report.results.map((r) => r.latencyMs.p99), format: formatMs, unit: "ms" },
  ];
  if (report.settings.stream) {
    const ttfe = report.results.map((r) => r.stream?.timeToFirstEventMs.p50 ?? Number.NaN);
    latency.push({ label: "p50 time to first event", color: COLORS.ttfe, values: ttfe, format: formatMs, unit: "ms" });
  }
  const panels: Panel[] = [
    { title: "Latency", axisLabel: "Latency (ms)", series: latency },
    {
      title: "Throughput",
      axisLabel: "Requests per second",
      series: [{ label: "requests/s", color: COLORS.rps, values: report.results.map((r) => r.requestsPerSecond), format: formatRate, unit: "req/s" }],
    },
  ];
  const title = options.title ?? `multirank bench: ${report.worker}`;
  const env = report.environment;
  const subtitle = `${describeSettings(report.settings)}; node ${env.node}, ${env.platform}-${env.arch}, ${env.cpus} CPUs`;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<desc>${escapeXml(`Latency and throughput against world size. ${subtitle}`)}</desc>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="30" text-anchor="middle" font-size="18" font-weight="bold" fill="#222222">${escapeXml(title)}</text>`,
    `<text x="${WIDTH / 2}" y="52" text-anchor="middle" font-size="12" fill="#555555">${escapeXml(subtitle)}</text>`,
  ];
  panels.forEach((panel, i) => out.push(...renderPanel(panel, PANEL_LEFT[i]!, sizes)));
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

function renderPanel(panel: Panel, left: number, sizes: number[]): string[] {
  const bottom = PLOT_TOP + PLOT_HEIGHT;
  const right = left + PLOT_WIDTH;
  const finite = panel.series.flatMap((s) => s.values.filter(Number.isFinite));
  const y: NiceTicks = niceTicks(Math.max(0, ...finite));
  const yPos = (value: number): number => bottom - (value / y.max) * PLOT_HEIGHT;
  const xPos = (index: number): number => left + (PLOT_WIDTH * (index + 0.5)) / sizes.length;
  const out: string[] = [`<g class="panel">`];
  out.push(`<text x="${left}" y="80" font-size="15" font-weight="bold" fill="#222222">${escapeXml(panel.title)}</text>`);

  // Legend: one swatch and label per series, left to right under the panel title.
  let legendX = left;
  for (const series of panel.series) {
    out.push(`<line x1="${legendX}" y1="94" x2="${legendX + 18}" y2="94" stroke="${series.color}" stroke-width="2.5"/>`);
    out.push(`<text x="${legendX + 24}" y="98" font-size="12" fill="#333333">${escapeXml(series.label)}</text>`);
    legendX += 24 + Math.ceil(series.label.length * 6.5) + 18;
  }

  for (const tick of y.ticks) {
    const ty = fmt(yPos(tick));
    out.push(`<line x1="${left}" y1="${ty}" x2="${right}" y2="${ty}" stroke="#e5e5e5" stroke-width="1"/>`);
    out.push(`<text x="${left - 8}" y="${fmt(yPos(tick) + 4)}" text-anchor="end" font-size="11" fill="#444444">${tick.toFixed(y.decimals)}</text>`);
  }
  sizes.forEach((size, index) => {
    const tx = fmt(xPos(index));
    out.push(`<line x1="${tx}" y1="${bottom}" x2="${tx}" y2="${bottom + 5}" stroke="#444444" stroke-width="1"/>`);
    out.push(`<text x="${tx}" y="${bottom + 19}" text-anchor="middle" font-size="11" fill="#444444">${size}</text>`);
  });
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#444444" stroke-width="1"/>`);
  out.push(`<line x1="${left}" y1="${PLOT_TOP}" x2="${left}" y2="${bottom}" stroke="#444444" stroke-width="1"/>`);
  out.push(`<text x="${left + PLOT_WIDTH / 2}" y="${bottom + 42}" text-anchor="middle" font-size="13" fill="#222222">World size (ranks)</text>`);
  const labelY = PLOT_TOP + PLOT_HEIGHT / 2;
  out.push(`<text x="${left - 58}" y="${labelY}" text-anchor="middle" font-size="13" fill="#222222" transform="rotate(-90 ${left - 58} ${labelY})">${escapeXml(panel.axisLabel)}</text>`);

  for (const series of panel.series) {
    const points = series.values.flatMap((value, index) => (Number.isFinite(value) ? [{ x: xPos(index), y: yPos(value), value, size: sizes[index]! }] : []));
    if (points.length > 1) {
      out.push(`<polyline fill="none" stroke="${series.color}" stroke-width="2.5" points="${points.map((p) => `${fmt(p.x)},${fmt(p.y)}`).join(" ")}"/>`);
    }
    for (const p of points) {
      const tip = `world size ${p.size}: ${series.label} ${series.format(p.value)} ${series.unit}`;
      out.push(`<circle cx="${fmt(p.x)}" cy="${fmt(p.y)}" r="4" fill="${series.color}"><title>${escapeXml(tip)}</title></circle>`);
    }
  }
  out.push("</g>");
  return out;
}

/** A coordinate with at most one decimal, so the output is stable and short. */
function fmt(value: number): string {
  return String(Math.round(value * 10) / 10);
}

/**
 * Escapes the five XML special characters.
 *
 * @example escapeXml('a < b & "c"') // "a &lt; b &amp; &quot;c&quot;"
 */
export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
}
