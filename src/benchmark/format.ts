/**
 * Number formatting shared by the table and the chart, so both show the same
 * digits for the same value. Pure.
 */
import type { BenchmarkSettings } from "./report.js";

/**
 * Milliseconds: 2 decimals under 1 s, 1 above, so a column of latencies
 * lines up on the decimal point.
 *
 * @example formatMs(0.31634) // "0.32"
 * @example formatMs(1316.84) // "1316.8"
 */
export function formatMs(ms: number): string {
  return ms.toFixed(Math.abs(ms) < 1000 ? 2 : 1);
}

/**
 * A rate (per second): 1 decimal under 1000, none above.
 *
 * @example formatRate(123.456) // "123.5"
 * @example formatRate(2345.6) // "2346"
 */
export function formatRate(rate: number): string {
  return rate.toFixed(Math.abs(rate) < 1000 ? 1 : 0);
}

/**
 * Rank devices in short: `"cpu"` when every rank is on the CPU, else the list.
 *
 * @example formatDevices(["cpu", "cpu"]) // "cpu"
 * @example formatDevices(["cuda:0", "cuda:1"]) // "cuda:0,cuda:1"
 */
export function formatDevices(devices: readonly string[]): string {
  if (devices.length > 0 && devices.every((device) => device === "cpu")) return "cpu";
  return devices.length > 0 ? devices.join(",") : "-";
}

/**
 * A byte count in binary units.
 *
 * @example formatBytes(0) // "0 B"
 * @example formatBytes(1536) // "1.5 KiB"
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${Number(value.toFixed(1))} ${units[unit]}`;
}

/** One line describing how a report was measured, for the table and the chart. */
export function describeSettings(settings: Pick<BenchmarkSettings, "requests" | "concurrency" | "warmup" | "payloadBytes" | "payloadKind" | "stream">): string {
  const payload = settings.payloadKind === "bytes" ? formatBytes(settings.payloadBytes) : settings.payloadKind === "custom" ? "custom" : "tiny";
  return `${settings.stream ? "stream" : "invoke"}, ${settings.requests} requests, concurrency ${settings.concurrency}, warmup ${settings.warmup}, payload ${payload}`;
}
