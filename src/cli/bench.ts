/**
 * `multirank bench`: benchmark a worker at several world sizes. A table for
 * people, `--json` for scripts, `--chart` for an SVG to open in a browser.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pino, type Logger } from "pino";
import type { DeviceSelection } from "../devices/index.js";
import { AbortError, MultirankError, ValidationError } from "../errors.js";
import { benchmarkWorldSizes } from "../benchmark/benchmark-world-sizes.js";
import { renderChartSvg } from "../benchmark/chart.js";
import type { BenchmarkOptions, BenchmarkProgress } from "../benchmark/options.js";
import { ProgressBar, type ProgressStream } from "../benchmark/progress-bar.js";
import { formatReportTable } from "../benchmark/table.js";

const USAGE = `Usage: multirank bench <worker-module> [options]

Starts the worker at each world size in turn and measures cold start, request
latency (p50/p90/p99, ms) and requests/s; prints a table at the end.

  --world-sizes LIST    comma-separated rank counts (default 1,2,4)
  --requests N          measured requests per world size (default 200; 20 with --quick)
  --concurrency C       requests in flight at once (default 1)
  --warmup N            unmeasured requests first (default 10; 2 with --quick)
  --payload JSON        send this JSON value as every request's input (default: a tiny { seq })
  --payload-file FILE   the same, read from a JSON file
  --payload-bytes B     send { seq, data: Buffer(B) } instead of a tiny payload (default 0)
  --stream              send requests with stream(); adds time to first event and events/s
  --quick               fewer requests, for a first look
  --devices SEL         auto, cpu, or a comma-separated list per rank (default auto)
  --json FILE           write the report as JSON (- for stdout, instead of the table)
  --chart FILE          write an SVG chart of latency and throughput against world size
  --help                show this text

Rank logs go to stderr at MULTIRANK_LOG_LEVEL (default warn).
`;

/** What {@link runBenchCommand} may be given besides its arguments; tests use it. */
export interface BenchCommandIo {
  /** Where the progress bar draws (only when a TTY). @default process.stderr */
  progress?: ProgressStream;
  /** Aborts the run as Ctrl-C does. @default undefined (SIGINT and SIGTERM abort it) */
  signal?: AbortSignal;
  /** Logger for the runners. @default pino to stderr at MULTIRANK_LOG_LEVEL, else "warn" */
  logger?: Logger;
}

interface ParsedArgs {
  options: BenchmarkOptions;
  json?: string;
  chart?: string;
}

/** A bad command line: printed with its code and the usage, exit code 2. */
class UsageError extends ValidationError {}

/**
 * Runs the subcommand. Writes the table (or `--json -`) and notes to `out`;
 * the progress bar to stderr when it is a TTY.
 *
 * @param argv the arguments after `bench`.
 * @returns 0 on success; 2 for bad arguments or options (nothing is started);
 *   1 when a start or a request fails; 130 when interrupted (SIGINT/SIGTERM or `io.signal`).
 * @example process.exitCode = await runBenchCommand(["workers/echo.ts", "--world-sizes", "1,2", "--quick"], process.stdout);
 */
export async function runBenchCommand(argv: string[], out: NodeJS.WritableStream, io: BenchCommandIo = {}): Promise<number> {
  let parsed: ParsedArgs | "help";
  try {
    parsed = parseArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    out.write(`multirank bench: ${error.message} [${error.code}]\n\n${USAGE}`);
    return 2;
  }
  if (parsed === "help") {
    out.write(USAGE);
    return 0;
  }

  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new AbortError("interrupted"));
  const signals: NodeJS.Signals[] = io.signal ? [] : ["SIGINT", "SIGTERM"];
  for (const name of signals) process.once(name, onSignal);
  const signal = io.signal ? AbortSignal.any([io.signal, controller.signal]) : controller.signal;

  const bar = new ProgressBar(io.progress ?? process.stderr);
  let last: BenchmarkProgress | undefined;
  const logger = io.logger ?? pino({ name: "multirank-bench", level: process.env.MULTIRANK_LOG_LEVEL ?? "warn" }, pino.destination({ fd: 2, sync: false }));
  try {
    const report = await benchmarkWorldSizes({
      ...parsed.options,
      logger,
      signal,
      onProgress: (progress) => {
        last = progress;
        bar.update(progress);
      },
    });
    bar.clear();
    const json = `${JSON.stringify(report, null, 2)}\n`;
    const toStdout = parsed.json === "-";
    // With `--json -` stdout carries only the JSON, so notes are left out.
    out.write(toStdout ? json : formatReportTable(report));
    if (parsed.json !== undefined && !toStdout) {
      await writeFile(parsed.json, json);
      out.write(`wrote ${parsed.json}\n`);
    }
    if (parsed.chart !== undefined) {
      await writeFile(parsed.chart, renderChartSvg(report));
      if (!toStdout) out.write(`wrote ${parsed.chart}\n`);
    }
    return 0;
  } catch (error) {
    bar.clear();
    if (error instanceof ValidationError) {
      out.write(`multirank bench: ${error.message} [${error.code}]\n\n${USAGE}`);
      return 2;
    }
    const where = last ? ` at world size ${last.worldSize} (${last.phase})` : "";
    if (signal.aborted) {
      out.write(`multirank bench: interrupted${where}; every rank was stopped\n`);
      return 130;
    }
    const code = error instanceof MultirankError ? ` [${error.code}]` : "";
    out.write(`multirank bench: failed${where}${code}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    for (const name of signals) process.removeListener(name, onSignal);
  }
}

function parseArgs(argv: string[]): ParsedArgs | "help" {
  const options: Partial<BenchmarkOptions> = {};
  const parsed: Omit<ParsedArgs, "options"> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") return "help";
    if (!arg.startsWith("--") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const value = (): string => {
      if (eq !== -1) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) throw new UsageError(`${flag} needs a value`);
      i++;
      return next;
    };
    const noValue = (): void => {
      if (eq !== -1) throw new UsageError(`${flag} takes no value`);
    };
    switch (flag) {
      case "--world-sizes":
        options.worldSizes = value()
          .split(",")
          .map((part) => integer(part.trim(), flag, 1));
        break;
      case "--requests":
        options.requests = integer(value(), flag, 1);
        break;
      case "--concurrency":
        options.concurrency = integer(value(), flag, 1);
        break;
      case "--warmup":
        options.warmup = integer(value(), flag, 0);
        break;
      case "--payload":
        options.payload = payload(value(), flag);
        break;
      case "--payload-file":
        options.payload = payloadFile(value(), flag);
        break;
      case "--payload-bytes":
        options.payloadBytes = integer(value(), flag, 0);
        break;
      case "--devices":
        options.devices = devices(value());
        break;
      case "--stream":
        noValue();
        options.stream = true;
        break;
      case "--quick":
        noValue();
        options.quick = true;
        break;
      case "--json":
        parsed.json = path(value(), flag);
        break;
      case "--chart":
        parsed.chart = path(value(), flag);
        if (parsed.chart === "-") throw new UsageError("--chart needs a file name");
        break;
      default:
        throw new UsageError(`unknown option ${JSON.stringify(flag)}`);
    }
  }
  if (argv.filter((arg) => /^--payload(-file)?(=|$)/.test(arg)).length > 1) throw new UsageError("give one of --payload and --payload-file, once");
  if (options.payload !== undefined && options.payloadBytes) throw new UsageError("--payload and --payload-bytes cannot both be set");
  if (positional.length === 0) throw new UsageError("missing <worker-module>");
  if (positional.length > 1) throw new UsageError(`expected one worker module, got ${positional.map((p) => JSON.stringify(p)).join(" ")}`);
  const worker = positional[0]!;
  if (!worker.startsWith("file:") && !existsSync(resolve(worker))) throw new UsageError(`worker module not found: ${worker}`);
  return { ...parsed, options: { ...options, worker } };
}

function integer(text: string, flag: string, min: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${flag} must be ${min === 0 ? "a non-negative" : "a positive"} integer, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** A JSON value given on the command line. */
function payload(text: string, flag: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(`${flag} must be JSON (quote it for the shell: ${flag} '{"prompt":"hi"}'); ${(error as Error).message}`);
  }
}

/** A JSON value read from a file. */
function payloadFile(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(path(file, flag), "utf8");
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(`${flag}: ${file} is not JSON: ${(error as Error).message}`);
  }
}

function path(text: string, flag: string): string {
  if (text.length === 0) throw new UsageError(`${flag} needs a file name`);
  return text;
}

function devices(text: string): DeviceSelection {
  if (text === "auto" || text === "cpu") return text;
  const parts = text.split(",").map((part) => part.trim());
  if (parts.some((part) => part.length === 0)) throw new UsageError(`--devices must be auto, cpu or a comma-separated list, got ${JSON.stringify(text)}`);
  return parts.map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}
