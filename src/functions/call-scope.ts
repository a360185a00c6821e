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

/** The signal of the remote call this code runs under, if any. */
export function currentCallSignal(): AbortSignal | undefined {
  return scope.getStore()?.signal;
}

/**
 * Inside a remote function: the signal of the call it runs for, aborted when
 * that call is cancelled or times out (the caller's `cancel()`, a closed
 * connection). Long work can stop early on it; remote functions called from
 * here inherit it. Undefined outside a remote call.
 * @example const signal = callSignal(); for (const chunk of work) { signal?.throwIfAborted(); ... }
 */
export function callSignal(): AbortSignal | undefined {
  return currentCallSignal();
}
