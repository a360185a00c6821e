import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { AbortError, MemoryLimitError, RankError, RankExitError, RankGroupError, RemoteExecutionError, ValidationError, type MultirankError } from "../errors.js";
import { kWorkerBrand, type DistributedWorker } from "../worker/distributed-worker.js";
import { callerModule } from "./caller-module.js";
import { currentCallSignal } from "./call-scope.js";
import type { FunctionDefinition, Host } from "./host.js";
import { DistributedRunner } from "../runner/distributed-runner.js";
import { parseMachineType } from "../gateway/machine-types.js";
import { functionWorkerPath } from "./function-app.js";
import { ARGS_KEY, FUNCTION_ENV } from "./function-env.js";
import { LocalHost } from "./local-host.js";
import { server } from "./server-host.js";
import { resolveRemoteOptions, type RemoteOptions, type ResolvedRemoteOptions } from "./options.js";
import { isRemote, register } from "./registry.js";
import { toRemoteError } from "./remote-error.js";

/** Where a submitted call is (Runpod's states). */
export type FunctionCallStatus = "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT";

/** A call's outcome in Runpod Flash's JobOutput shape; times in ms. */
export interface JobOutput<R> {
  id: string;
  status: FunctionCallStatus;
  output?: R;
  error?: string;
  delayTime: number;
  executionTime: number;
}

/** A call started with `submit()`. */
export interface FunctionCall<R> {
  readonly id: string;
  status(): FunctionCallStatus;
  /** The result; rejects as the call would. */
  result(): Promise<R>;
  /** Cancels the call at every rank; its result rejects with an `AbortError`. */
  cancel(): void;
  /** Waits for the end and reports it without throwing. */
  output(): Promise<JobOutput<R>>;
}

/** Options of {@link RemoteFunction.map}. */
export interface MapOptions {
  /** Calls in flight at once. @default maxRunners × concurrency */
  concurrency?: number;
  signal?: AbortSignal;
}

/** Per-call options, passed by calling `fn.with({ ... })`. */
export interface RemoteCallOptions {
  /** Seconds; overrides the function's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
}

/**
 * A function defined with {@link remote}: call it like the original, and it
 * runs in its own environment on its host.
 */
export interface RemoteFunction<A extends unknown[], R, Y> {
  (...args: A): Promise<R>;
  /** The function's name (`options.name`). */
  readonly functionName: string;
  readonly options: ResolvedRemoteOptions;
  readonly host: Host;
  /** Absolute path of the module that defines it (what is bundled). */
  readonly module: string;
  /** The same code on another host, or with other options (fal-serverless's `.on()`). */
  on(host: Host, overrides?: Partial<Omit<RemoteOptions, "name">>): RemoteFunction<A, R, Y>;
  /**
   * Runs it without isolation, for tests (Flash's `local=True`): a function in
   * this process; a `DistributedWorker` class from its source module, with this
   * project's `node_modules`, on a runner of the function's world size that
   * stops after the call.
   */
  local(...args: A): Promise<R>;
  /** Starts a call and returns a handle to it. */
  submit(...args: A): FunctionCall<R>;
  /** Calls it once per input (its first argument), results in input order. */
  map(inputs: Iterable<A[0]> | AsyncIterable<A[0]>, options?: MapOptions): AsyncIterable<R>;
  /** A streaming function's values as they come (a generator's yields). */
  stream(...args: A): AsyncIterable<Y>;
  /** A call with a timeout or signal of its own. */
  with(options: RemoteCallOptions): (...args: A) => Promise<R>;
}

/** This machine as a host: each function in its own environment here. */
export const local: Host = new LocalHost();

/**
 * Where `remote()` functions run unless `.on()` says otherwise: the server
 * `MULTIRANK_HOST` (with the key `MULTIRANK_KEY`) when that variable is set,
 * else {@link local}. Read when a function is defined.
 */
export function defaultHost(): Host {
  const url = process.env.MULTIRANK_HOST;
  return url ? server(url, { key: process.env.MULTIRANK_KEY || undefined }) : local;
}

const THIS_FILE = fileURLToPath(import.meta.url);

function isWorkerClass(value: unknown): boolean {
  return typeof value === "function" && typeof value.prototype === "object" && value.prototype !== null && kWorkerBrand in value.prototype;
}

function isGeneratorFunction(value: unknown): boolean {
  const tag = (value as { constructor?: { name?: string } })?.constructor?.name;
  return tag === "AsyncGeneratorFunction" || tag === "GeneratorFunction";
}

/**
 * Turns `fn` into a function that runs in an isolated environment with its
 * own `dependencies`, on the machine it asks for, here (`local`) or on a
 * multirank server, warm for `keepAlive` seconds after each call.
 *
 * `fn` is an async function (returns a value), an async generator function (a
 * streaming function: `fn.stream(...)`), or a `DistributedWorker` subclass
 * (sharded over `worldSize` ranks, with `this.group`). The function is found
 * by its module and `name`, never by serializing a closure: its module is
 * bundled, so helpers, constants and TypeScript all work, and the module's
 * top-level code also runs inside the environment (see {@link isRemote}).
 *
 * @throws {ValidationError} for bad options, or a name another module already uses.
 * @example
 * export const sumNumbers = remote({ name: "sum-numbers", dependencies: ["is-number@7.0.0"] }, async (xs: unknown[]) => {
 *   const { default: isNumber } = await import("is-number");
 *   return xs.filter((x) => isNumber(x)).reduce((sum: number, x) => sum + Number(x), 0);
 * });
 */
export function remote<I, O>(options: RemoteOptions, fn: abstract new () => DistributedWorker<I, O, object>): RemoteFunction<[input: I], O, unknown>;
export function remote<A extends unknown[], Y>(options: RemoteOptions, fn: (...args: A) => AsyncGenerator<Y, unknown, undefined>): RemoteFunction<A, Y[], Y>;
export function remote<A extends unknown[], R>(options: RemoteOptions, fn: (...args: A) => R): RemoteFunction<A, Awaited<R>, never>;
export function remote(options: RemoteOptions, fn: unknown): RemoteFunction<unknown[], unknown, unknown> {
  if (typeof fn !== "function") throw new ValidationError("remote(options, fn): fn must be an async function, an async generator function or a DistributedWorker class");
  const resolved = resolveRemoteOptions(options);
  const module = callerModule([THIS_FILE, THIS_FILE.replace(/\.js$/, ".ts")]);
  if (!module) throw new ValidationError(`remote function ${resolved.name}: cannot tell which module defines it; define it at the top level of a module file`);
  const existing = register({ name: resolved.name, fn, module, dependencies: resolved.dependencies, options: resolved });
  if (existing && existing.module !== module) {
    throw new ValidationError(`remote function name "${resolved.name}" is already defined by ${existing.module}; names are unique per host`);
  }
  const host = defaultHost();
  host.claim({ options: resolved, module });
  return makeRemote({ options: resolved, module }, fn, host);
}

/** fal-serverless's name for {@link remote}. */
export const isolated: typeof remote = remote;

function makeRemote(definition: FunctionDefinition, fn: unknown, host: Host): RemoteFunction<unknown[], unknown, unknown> {
  const { options } = definition;
  const isClass = isWorkerClass(fn);
  const payloadOf = (args: unknown[]): unknown => {
    const crossing = options.serializer === "json" ? (jsonRoundTrip(args, `arguments of ${options.name}`) as unknown[]) : args;
    return isClass ? crossing[0] : { [ARGS_KEY]: crossing };
  };
  const resultOf = (value: unknown): unknown => (options.serializer === "json" ? jsonRoundTrip(value, `result of ${options.name}`) : value);
  const call = async (args: unknown[], callOptions: RemoteCallOptions = {}, onStart?: () => void): Promise<unknown> => {
    const signal = combine(callOptions.signal, currentCallSignal());
    const payload = payloadOf(args);
    for (let attempt = 0; ; attempt++) {
      try {
        return resultOf(await host.invoke(definition, payload, { timeout: callOptions.timeout ?? options.timeout, signal, onStart }));
      } catch (error) {
        // A crash or an error of the function's (on a server, already a RemoteExecutionError) is retried; a refusal is not.
        const retryable =
          (error instanceof RankError || error instanceof RankGroupError || error instanceof RankExitError || error instanceof MemoryLimitError || error instanceof RemoteExecutionError) && !signal?.aborted;
        if (!retryable || attempt >= options.retries) throw toRemoteError(error, options.name, host.description);
      }
    }
  };
  const callable = ((...args: unknown[]) => call(args)) as RemoteFunction<unknown[], unknown, unknown>;
  Object.defineProperties(callable, {
    functionName: { value: options.name, enumerable: true },
    options: { value: options, enumerable: true },
    host: { value: host, enumerable: true },
    module: { value: definition.module, enumerable: true },
  });
  callable.with = (callOptions) => (...args) => call(args, callOptions);
  callable.on = (other, overrides = {}) => {
    if ("name" in overrides) throw new ValidationError(".on(host, overrides): a function keeps its name");
    const next = { options: resolveRemoteOptions(options as RemoteOptions, overrides), module: definition.module };
    other.claim(next);
    return makeRemote(next, fn, other);
  };
  callable.local = async (...args) => {
    if (isClass) return resultOf(await runClassLocally(definition, payloadOf(args)));
    if (isGeneratorFunction(fn)) {
      const items: unknown[] = [];
      for await (const item of (fn as (...a: unknown[]) => AsyncIterable<unknown>)(...args)) items.push(item);
      return items;
    }
    return await (fn as (...a: unknown[]) => unknown)(...args);
  };
  callable.submit = (...args) => submit(options.name, (signal, onStart) => call(args, { signal }, onStart));
  callable.map = (inputs, mapOptions = {}) => mapInOrder(inputs, mapOptions.concurrency ?? options.maxRunners * options.concurrency, mapOptions.signal, (input, signal) => call([input], { signal }));
  callable.stream = (...args) => streamCall(definition, host, payloadOf(args), options, resultOf);
  return callable;
}

async function* streamCall(definition: FunctionDefinition, host: Host, payload: unknown, options: ResolvedRemoteOptions, resultOf: (v: unknown) => unknown): AsyncGenerator<unknown, void, undefined> {
  try {
    for await (const item of host.stream(definition, payload, { timeout: options.timeout, signal: currentCallSignal() })) yield resultOf(item);
  } catch (error) {
    throw toRemoteError(error, options.name, host.description);
  }
}

/**
 * Runs a `DistributedWorker` class's module from its source, in the caller's
 * `node_modules` (no environment build, no isolation), on a runner of the
 * function's world size that stops after the one call.
 */
async function runClassLocally(definition: FunctionDefinition, input: unknown): Promise<unknown> {
  const { options } = definition;
  const runner = new DistributedRunner({
    worker: functionWorkerPath(),
    worldSize: options.worldSize ?? (options.machineType ? parseMachineType(options.machineType).worldSize : 1),
    env: { ...options.env, [FUNCTION_ENV.module]: definition.module, [FUNCTION_ENV.name]: options.name },
  });
  const signal = currentCallSignal();
  try {
    await runner.start();
    return await runner.invoke(input, { timeout: options.timeout, ...(signal ? { signal } : {}) });
  } finally {
    await runner.stop();
  }
}

function submit<R>(name: string, run: (signal: AbortSignal, onStart: () => void) => Promise<R>): FunctionCall<R> {
  const id = randomUUID();
  const controller = new AbortController();
  const created = Date.now();
  let status: FunctionCallStatus = "IN_PROGRESS";
  // When a runner took the call (the first attempt's start, if it retried).
  let started: number | undefined;
  let finished = created;
  const onStart = (): void => {
    started ??= Date.now();
  };
  const result = run(controller.signal, onStart).then(
    (value) => {
      status = "COMPLETED";
      finished = Date.now();
      return value;
    },
    (error: unknown) => {
      finished = Date.now();
      const code = (error as MultirankError)?.code;
      status = controller.signal.aborted ? "CANCELLED" : code === "MULTIRANK_ERR_TIMEOUT" ? "TIMED_OUT" : "FAILED";
      throw error;
    },
  );
  result.catch(() => {});
  return {
    id,
    status: () => status,
    result: () => result,
    cancel: () => controller.abort(new AbortError(`call ${id} of ${name} was cancelled`)),
    output: async () => {
      await result.catch(() => {});
      // Runpod's split: delayTime until the call ran (environment built, runner
      // leased), executionTime from then on; a call that never ran only waited.
      const ran = started ?? finished;
      const base = { id, delayTime: ran - created, executionTime: finished - ran };
      try {
        return { ...base, status, output: await result };
      } catch (error) {
        return { ...base, status, error: error instanceof Error ? error.message : String(error) };
      }
    },
  };
}

async function* mapInOrder<I, R>(
  inputs: Iterable<I> | AsyncIterable<I>,
  concurrency: number,
  signal: AbortSignal | undefined,
  call: (input: I, signal: AbortSignal) => Promise<R>,
): AsyncGenerator<R, void, undefined> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ValidationError(`map options.concurrency must be a positive integer, got ${String(concurrency)}`);
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const pending: Array<Promise<R>> = [];
  const iterator = (Symbol.asyncIterator in inputs ? (inputs as AsyncIterable<I>)[Symbol.asyncIterator]() : (inputs as Iterable<I>)[Symbol.iterator]()) as AsyncIterator<I> | Iterator<I>;
  let exhausted = false;
  const fill = async (): Promise<void> => {
    while (!exhausted && pending.length < concurrency) {
      const next = await iterator.next();
      if (next.done) {
        exhausted = true;
        return;
      }
      const running = call(next.value, controller.signal);
      running.catch(() => {});
      pending.push(running);
    }
  };
  try {
    await fill();
    while (pending.length > 0) {
      const value = await pending.shift()!;
      await fill();
      yield value;
    }
  } finally {
    // An error, or a consumer that stopped: the calls still running are cancelled.
    if (pending.length > 0) controller.abort(new AbortError("map ended before these calls finished"));
    signal?.removeEventListener("abort", onAbort);
  }
}

function combine(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (!a) return b;
  if (!b) return a;
  return AbortSignal.any([a, b]);
}

function jsonRoundTrip(value: unknown, what: string): unknown {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`${what} cannot be sent as JSON: ${(error as Error).message}`);
  }
}

export { isRemote };
