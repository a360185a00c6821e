import { AsyncLocalStorage } from "node:async_hooks";
import type { CallContext } from "../worker/call-context.js";

/**
 * The call a remote function's code runs under, so a remote function it calls
 * in turn inherits its cancellation: a cancelled or timed-out outer call
 * cancels the inner ones.
 */
const scope = new AsyncLocalStorage<CallContext>();

/** Runs `fn` as the body of the call `ctx`. */
export function runWithCallContext<T>(ctx: CallContext, fn: () => T): T {
  return scope.run(ctx, fn);
}

/**
 * The `AbortSignal` of the remote call this code runs under, inside a
 * function's environment; `undefined` elsewhere. It aborts when the call is
 * cancelled or times out, so a function can stop its own work (a remote
 * function it calls is cancelled with it without this).
 * @example
 * const signal = callSignal();
 * for (const item of items) { signal?.throwIfAborted(); await work(item); }
 */
export function callSignal(): AbortSignal | undefined {
  return scope.getStore()?.signal;
}

/** The signal of the remote call this code runs under, if any. */
export function currentCallSignal(): AbortSignal | undefined {
  return scope.getStore()?.signal;
}
