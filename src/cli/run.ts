/**
 * `multirank run <file>[:export]`: one call of a remote function or of a
 * worker module, its result printed as JSON (fal run, modal run). Streamed
 * items print as JSON lines as they come.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { toJsonSafe } from "../codec/text-events.js";
import { lookup } from "../functions/registry.js";
import type { RemoteFunction } from "../functions/remote.js";
import { DistributedRunner } from "../runner/distributed-runner.js";
import { kWorkerBrand } from "../worker/distributed-worker.js";

export const USAGE = `usage: multirank run <file>[:export] [options]

  <file>             a module (.ts runs as is) that exports remote functions (what remote() returns),
                     or whose default export is a DistributedWorker class
  :export            the export to call (default: the worker, else the module's only remote function)
  --input <json>     the call's input: the function's one argument, or the worker's payload
                     (default: no argument; {} for a worker)
  --input-file <f>   the same, read from a JSON file
  --world-size <n>   ranks for a worker module (default 1)
  --help             this text

Prints the result as JSON; a streaming function or worker prints each item as a
JSON line as it comes (a worker's final result is its last line). Exit codes:
0 success, 1 the call failed (its error on stderr), 2 bad usage.
`;

/** A bad command line or input: exit 2. */
class UsageError extends Error {}

type AnyRemote = RemoteFunction<unknown[], unknown, unknown>;

function isRemoteFunction(value: unknown): value is AnyRemote {
  return typeof value === "function" && typeof (value as AnyRemote).functionName === "string" && typeof (value as AnyRemote).module === "string";
}

function isWorkerClass(value: unknown): boolean {
  // The brand is a Symbol.for, so a worker built against another copy of multirank counts too.
  return typeof value === "function" && typeof value.prototype === "object" && value.prototype !== null && kWorkerBrand in value.prototype;
}

function isGeneratorFunction(value: unknown): boolean {
  const tag = (value as { constructor?: { name?: string } } | undefined)?.constructor?.name;
  return tag === "AsyncGeneratorFunction" || tag === "GeneratorFunction";
}

let tsxRegistered = false;

async function importModule(path: string): Promise<Record<string, unknown>> {
  if (/\.(c|m)?tsx?$/.test(path) && !tsxRegistered) {
    const { register } = await import("tsx/esm/api");
    register();
    tsxRegistered = true;
  }
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${what} is not JSON: ${(error as Error).message}`);
  }
}

function readInput(values: { input?: string; "input-file"?: string }): { given: boolean; value: unknown } {
  if (values.input !== undefined && values["input-file"] !== undefined) throw new UsageError("give --input or --input-file, not both");
  if (values.input !== undefined) return { given: true, value: parseJson(values.input, "--input") };
  const file = values["input-file"];
  if (file === undefined) return { given: false, value: undefined };
  let text: string;
  try {
    text = readFileSync(resolve(file), "utf8");
  } catch (error) {
    throw new UsageError(`--input-file ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return { given: true, value: parseJson(text, `--input-file ${file}`) };
}

function line(value: unknown): string {
  return `${JSON.stringify(toJsonSafe(value)) ?? "null"}\n`;
}

/**
 * Runs `multirank run`; resolves with the exit code. Everything it started
 * (the function's warm environment, the worker's ranks) is stopped before it
 * resolves.
 * @example process.exitCode = await runRunCommand(["functions/math.ts:sumNumbers", "--input", '{"values":[1,2]}'], process.stdout);
 */
export async function runRunCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const fail = (code: number, message: string): number => {
    process.stderr.write(`multirank run: ${message}\n${code === 2 ? `\n${USAGE}` : ""}`);
    return code;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { input: { type: "string" }, "input-file": { type: "string" }, "world-size": { type: "string" }, help: { type: "boolean", default: false } },
      strict: true,
    });
  } catch (error) {
    return fail(2, (error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) return fail(2, positionals.length === 0 ? "name a file: multirank run <file>[:export]" : `one file at a time; got ${positionals.join(" ")}`);
  const target = /^(.+):([A-Za-z_$][\w$]*)$/.exec(positionals[0]!);
  const file = resolve(target ? target[1]! : positionals[0]!);
  const exportName = target?.[2];
  let input: { given: boolean; value: unknown };
  let worldSize = 1;
  try {
    input = readInput(values);
    if (values["world-size"] !== undefined) {
      worldSize = Number(values["world-size"]);
      if (!Number.isInteger(worldSize) || worldSize < 1) throw new UsageError(`--world-size must be a positive integer; got ${values["world-size"]}`);
    }
  } catch (error) {
    if (error instanceof UsageError) return fail(2, error.message);
    throw error;
  }

  let module: Record<string, unknown>;
  try {
    module = await importModule(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND" && String((error as Error).message).includes(file)) return fail(2, `no such file: ${file}`);
    return fail(1, `${file} failed to load: ${(error as Error).message}`);
  }

  let chosen: { kind: "function"; fn: AnyRemote } | { kind: "worker" };
  if (exportName !== undefined) {
    const value = module[exportName];
    if (isRemoteFunction(value)) chosen = { kind: "function", fn: value };
    else if (exportName === "default" && isWorkerClass(value)) chosen = { kind: "worker" };
    else if (value === undefined) return fail(2, `${file} has no export "${exportName}" (it exports ${Object.keys(module).join(", ") || "nothing"})`);
    else return fail(2, `${file}: "${exportName}" is not a remote function (what remote() returns) nor a default-exported DistributedWorker class`);
  } else if (isWorkerClass(module.default)) {
    chosen = { kind: "worker" };
  } else {
    const functions = Object.entries(module).filter(([, value]) => isRemoteFunction(value));
    if (functions.length !== 1) {
      return fail(
        2,
        functions.length === 0
          ? `${file} exports no remote function and no default DistributedWorker class`
          : `${file} exports several remote functions; name one: ${functions.map(([name]) => `${positionals[0]}:${name}`).join(", ")}`,
      );
    }
    chosen = { kind: "function", fn: functions[0]![1] as AnyRemote };
  }
  if (worldSize !== 1 && chosen.kind === "function") return fail(2, "--world-size is for worker modules; a remote function's own options say its world size");

  // Ctrl-C or SIGTERM cancels the call; what it started still stops below.
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    if (chosen.kind === "function") return await callFunction(chosen.fn, input, controller.signal, out, fail);
    return await callWorker(file, worldSize, input.given ? input.value : {}, controller.signal, out, fail);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function callFunction(fn: AnyRemote, input: { given: boolean; value: unknown }, signal: AbortSignal, out: NodeJS.WritableStream, fail: (code: number, message: string) => number): Promise<number> {
  const args = input.given ? [input.value] : [];
  try {
    if (isGeneratorFunction(lookup(fn.functionName)?.fn)) {
      for await (const item of fn.stream(...args)) {
        out.write(line(item));
        if (signal.aborted) break; // leaving the loop cancels the call
      }
    } else {
      out.write(line(await fn.with({ signal })(...args)));
    }
    return 0;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return fail(1, `${fn.functionName}: ${(error as Error).message}${code ? ` [${code}]` : ""}`);
  } finally {
    // Its warm environment would keep this process up for keepAlive seconds.
    await fn.host.close();
  }
}

async function callWorker(file: string, worldSize: number, payload: unknown, signal: AbortSignal, out: NodeJS.WritableStream, fail: (code: number, message: string) => number): Promise<number> {
  const logger = pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "warn" }, pino.destination(2));
  const runner = new DistributedRunner({ worker: file, worldSize, logger });
  try {
    await runner.start({ signal });
    // One path for both kinds: a worker that streams nothing yields its result alone.
    for await (const item of runner.stream(payload, { signal })) out.write(line(item));
    return 0;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return fail(1, `${file}: ${(error as Error).message}${code ? ` [${code}]` : ""}`);
  } finally {
    await runner.stop();
  }
}
