import type { MultirankError } from "../errors.js";
import type { ForwardedLog } from "../transport/messages.js";
import type { RankExit } from "./rank-process.js";

/*
 * The public types of a runner's calls and events (`DistributedRunner`'s
 * `start`, `invoke`, `stream`, `stop` and `on`), re-exported by
 * distributed-runner.ts and the package root.
 */

/** Where a runner is in its life. */
export type RunnerState = "idle" | "starting" | "ready" | "stopping" | "stopped" | "failed";

/** Options of `DistributedRunner.start`; any other field is passed to every rank's `setup(args)`. */
export interface StartOptions {
  /** Seconds to wait for every rank to be ready. @default 1800 */
  timeout?: number;
  /** Aborting it stops the start and the ranks. */
  signal?: AbortSignal;
  [setupArg: string]: unknown;
}

/** Options of `DistributedRunner.invoke`. */
export interface InvokeOptions {
  /** Seconds before the request fails with a `TimeoutError` and is cancelled at the ranks. @default the runner's `timeout` */
  timeout?: number;
  /** Aborting it cancels the request at every rank. */
  signal?: AbortSignal;
  /** Called with each `ctx.progress(data)` of rank 0. */
  onProgress?: (data: unknown) => void;
  /** Called with each record a rank logs through `ctx.log`. */
  onLog?: (log: ForwardedLog) => void;
}

/** Options of `DistributedRunner.stream`. */
export interface StreamOptions extends InvokeOptions {
  /** Seconds allowed between two streamed results. @default no limit */
  streamingTimeout?: number;
  /** Yield ready-to-send Server-Sent Events (`data: <json>\n\n` bytes) instead of values. @default false */
  asTextEvents?: boolean;
}

/** Options of `DistributedRunner.stop`. */
export interface StopOptions {
  /** Seconds for ranks to finish their requests and `teardown()` before SIGTERM, then SIGKILL. @default 10 */
  timeout?: number;
}

/** Events a runner emits. */
export interface RunnerEvents {
  state: [state: RunnerState];
  rankExit: [exit: RankExit & { expected: boolean }];
  /** Attach mode: the control socket is bound and `runner.joinInfo` is known (each start). */
  listening: [];
  /** The runner failed while ready (a rank died or hung), with why; `state` turns `failed` right after. */
  failure: [error: MultirankError];
}
