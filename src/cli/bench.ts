/**
 * `multirank bench`: benchmark a worker at several world sizes. A table for
 * people, `--json` for scripts, `--chart` for an SVG to open in a browser.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { pino, type Logger } from "pino";
import type { DeviceSelection } from "../devices/index.js";
import { AbortError, MultirankError, ValidationError } from "../errors.js";
import { benchmarkWorldSizes } from "../benchmark/benchmark-world-sizes.js";
import { renderChartSvg } from "../benchmark/chart.js";
import type { BenchmarkOptions, BenchmarkProgress } from "../benchmark/options.js";
import { ProgressBar, type ProgressStream } from "../benchmark/progress-bar.js";
import { formatReportTable } from "../benchmark/table.js";
import { check, nonNegativeInteger, positiveInteger } from "../util/validate.js";

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
    parsed = parseBenchArgs(argv);
  } catch (error) {
    // A bad command line: printed with its code and the usage, exit code 2.
    if (!(error instanceof ValidationError)) throw error;
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

const FLAGS = {
  "world-sizes": { type: "string" },
  requests: { type: "string" },
  concurrency: { type: "string" },
  warmup: { type: "string" },
  payload: { type: "string" },
  "payload-file": { type: "string" },
  "payload-bytes": { type: "string" },
  devices: { type: "string" },
  stream: { type: "boolean" },
  quick: { type: "boolean" },
  json: { type: "string" },
  chart: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function parseBenchArgs(argv: string[]): ParsedArgs | "help" {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    throw new ValidationError(parseArgsMessage(error as Error & { code?: string }));
  }
  const { values, positionals, tokens } = parsed;
  if (values.help) return "help";
  const options: Partial<BenchmarkOptions> = {};
  if (values["world-sizes"] !== undefined) options.worldSizes = values["world-sizes"].split(",").map((part) => integerArg(part.trim(), "--world-sizes", 1));
  if (values.requests !== undefined) options.requests = integerArg(values.requests, "--requests", 1);
  if (values.concurrency !== undefined) options.concurrency = integerArg(values.concurrency, "--concurrency", 1);
  if (values.warmup !== undefined) options.warmup = integerArg(values.warmup, "--warmup", 0);
  if (values["payload-bytes"] !== undefined) options.payloadBytes = integerArg(values["payload-bytes"], "--payload-bytes", 0);
  // parseArgs keeps the last of a repeated flag; two payloads are more likely a mistake than an override.
  const payloadFlags = tokens.filter((token) => token.kind === "option" && (token.name === "payload" || token.name === "payload-file"));
  check(payloadFlags.length <= 1, "give one of --payload and --payload-file, once");
  if (values.payload !== undefined) options.payload = payload(values.payload, "--payload");
  if (values["payload-file"] !== undefined) options.payload = payloadFile(values["payload-file"], "--payload-file");
  if (values.devices !== undefined) options.devices = devices(values.devices);
  if (values.stream) options.stream = true;
  if (values.quick) options.quick = true;
  const json = values.json === undefined ? undefined : path(values.json, "--json");
  const chart = values.chart === undefined ? undefined : path(values.chart, "--chart");
  check(chart !== "-", "--chart needs a file name");
  check(options.payload === undefined || !options.payloadBytes, "--payload and --payload-bytes cannot both be set");
  check(positionals.length > 0, "missing <worker-module>");
  check(positionals.length === 1, `expected one worker module, got ${positionals.map((p) => JSON.stringify(p)).join(" ")}`);
  const worker = positionals[0]!;
  check(worker.startsWith("file:") || existsSync(resolve(worker)), `worker module not found: ${worker}`);
  return { options: { ...options, worker }, ...(json === undefined ? {} : { json }), ...(chart === undefined ? {} : { chart }) };
}

/**
 * node:util's parse errors span several lines and suggest `--` for
 * positionals; ours name the flag in one line, as every other message of the
 * command does. Anything else keeps node's first line.
 */
function parseArgsMessage(error: Error & { code?: string }): string {
  const flag = /'(-[^' <]+)/.exec(error.message)?.[1];
  if (flag !== undefined && error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown option ${JSON.stringify(flag)}`;
  if (flag !== undefined && error.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    if (error.message.includes("does not take an argument")) return `${flag} takes no value`;
    if (error.message.includes("ambiguous")) return `${flag} needs a value (write ${flag}=VALUE for one that starts with "-")`;
    return `${flag} needs a value`;
  }
  return error.message.split("\n")[0]!;
}

/** A count given on the command line: digits only, so "1k" or "2.5" is quoted back as typed. */
function integerArg(text: string, flag: string, min: 0 | 1): number {
  const value = /^\d+$/.test(text) ? Number(text) : text;
  return min === 0 ? nonNegativeInteger(value, flag) : positiveInteger(value, flag);
}

/** A JSON value given on the command line. */
function payload(text: string, flag: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${flag} must be JSON (quote it for the shell: ${flag} '{"prompt":"hi"}'); ${(error as Error).message}`);
  }
}

/** A JSON value read from a file. */
function payloadFile(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(path(file, flag), "utf8");
  } catch (error) {
    throw new ValidationError(`${flag}: cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${flag}: ${file} is not JSON: ${(error as Error).message}`);
  }
}

function path(text: string, flag: string): string {
  if (text.length === 0) throw new ValidationError(`${flag} needs a file name`);
  return text;
}

function devices(text: string): DeviceSelection {
  if (text === "auto" || text === "cpu") return text;
  const parts = text.split(",").map((part) => part.trim());
  if (parts.some((part) => part.length === 0)) throw new ValidationError(`--devices must be auto, cpu or a comma-separated list, got ${JSON.stringify(text)}`);
  return parts.map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}
