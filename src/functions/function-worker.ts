/**
 * The worker module a remote function's ranks load. It imports the function's
 * module (its bundle inside the environment, or the source for `.local()` of a
 * class), whose top-level `remote()` calls register each function here, and
 * serves the one named in `MULTIRANK_FUNCTION_NAME`: a `DistributedWorker`
 * class as it is, a function or generator through a small worker that calls it.
 */
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import type { CallContext } from "../worker/call-context.js";
import { DistributedWorker, kWorkerBrand, type WorkerClass } from "../worker/distributed-worker.js";
import { ARGS_KEY, FUNCTION_ENV } from "./function-env.js";
import { lookup, REMOTE_ENV } from "./registry.js";
import { runWithCallContext } from "./call-scope.js";


/** What travels to a function: its arguments from a native call, or one argument from HTTP. */
export type FunctionPayload = { [ARGS_KEY]: unknown[] } | unknown;

process.env[REMOTE_ENV] = "1";
const modulePath = process.env[FUNCTION_ENV.module];
const name = process.env[FUNCTION_ENV.name];
if (!modulePath || !name) throw new ValidationError(`the function worker needs ${FUNCTION_ENV.module} and ${FUNCTION_ENV.name}`);
const url = modulePath.startsWith("file:") ? modulePath : pathToFileURL(modulePath).href;
if (/\.(c|m)?tsx?$/.test(modulePath)) {
  const { tsImport } = await import("tsx/esm/api");
  await tsImport(url, import.meta.url);
} else {
  await import(url);
}
const entry = lookup(name);
if (!entry) throw new ValidationError(`module ${modulePath} defines no remote function named "${name}" (did its remote() call run at the module's top level?)`);
const fn = entry.fn;

function isWorkerClass(value: unknown): value is WorkerClass {
  return typeof value === "function" && typeof value.prototype === "object" && value.prototype !== null && kWorkerBrand in value.prototype;
}

function isGeneratorFunction(value: unknown): boolean {
  const tag = (value as { constructor?: { name?: string } })?.constructor?.name;
  return tag === "AsyncGeneratorFunction" || tag === "GeneratorFunction";
}

/** Calls a plain function or streams a generator's values. */
class FunctionWorker extends DistributedWorker<FunctionPayload, unknown> {
  override async call(input: FunctionPayload, ctx: CallContext): Promise<unknown> {
    const tagged = typeof input === "object" && input !== null && Array.isArray((input as Record<string, unknown>)[ARGS_KEY]);
    const args = tagged ? ((input as Record<string, unknown>)[ARGS_KEY] as unknown[]) : [input];
    return runWithCallContext(ctx, async () => {
      if (isGeneratorFunction(fn)) {
        const items: unknown[] = [];
        const iterator = (fn as (...a: unknown[]) => AsyncIterable<unknown>)(...args);
        for await (const item of iterator) {
          if (ctx.signal.aborted) break;
          // Streamed to a stream() caller; a plain call gets them all at the end.
          if (ctx.streaming) await this.addStreamingResult(item);
          else items.push(item);
        }
        return ctx.streaming ? undefined : items;
      }
      return await (fn as (...a: unknown[]) => unknown)(...args);
    });
  }
}

const served: WorkerClass = isWorkerClass(fn) ? fn : (FunctionWorker as unknown as WorkerClass);
export default served;
