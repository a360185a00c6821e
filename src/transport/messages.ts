import type { SerializedError } from "../errors.js";

/**
 * The control protocol between the runner (ROUTER) and its ranks (DEALER), over
 * ZeroMQ or the unix stream sockets of the same shape (stream-sockets.ts).
 * Every message is one msgpack-encoded object in the message's frame; `t`
 * says which. Requests carry a runner-unique `id`, so no message of one
 * request can be mistaken for another's, cancelled ones included.
 */

/**
 * The runner's limits, for joined ranks (spawned ranks have them in their
 * environment): the largest message either way, and the bytes of streamed
 * results a request may send ahead of the runner's credit.
 */
export interface RankLimits {
  maxMessageBytes: number;
  streamWindow: number;
}

/** Runner to rank. */
export type RunnerMessage =
  /** `group`: in attach mode, where the process group meets (rank 0's report) and its secret. */
  /**
   * `runnerSilenceMs` (attach mode, heartbeats on): a joined rank has no
   * death pipe, so it leaves once the runner, which pings it far more often,
   * has been silent this long.
   */
  | { t: "setup"; args: Record<string, unknown>; group?: GroupRendezvous; runnerSilenceMs?: number; limits?: RankLimits }
  /** In attach mode: the runner refused this rank's hello; the rank exits with `reason`. */
  | { t: "refused"; reason: string }
  | {
      t: "req";
      id: number;
      payload: unknown;
      streaming: boolean;
      /**
       * How rank 0 sends this request's streamed results: `true`, every one
       * as a ready Server-Sent Event (`{ event }`, formatted once, on the
       * rank); `false`, every one as its value (`{ data }`), even one the
       * worker asked to send as a text event. Absent: each as the worker's
       * `addStreamingResult` call asked.
       */
      asTextEvents?: boolean;
    }
  | { t: "cancel"; id: number; reason: "aborted" | "timeout" | "failed" }
  /** The consumer took `bytes` of the request's streamed results: rank 0 may send that much more. */
  | { t: "credit"; id: number; bytes: number }
  /** A heartbeat: the rank's main thread answers with a `pong` of the same `n`. */
  | { t: "ping"; n: number }
  /**
   * `restart` (attach mode): the runner is restarting, so the rank exits with
   * {@link RESTART_EXIT_CODE} instead of 0, and a launcher that restarts
   * failed processes (torchrun's `--max-restarts`, a Job's `OnFailure`)
   * starts it again.
   */
  | { t: "teardown"; restart?: boolean };

/**
 * A rank's first message. A spawned rank sends `rank`, `pid` and the token
 * the runner gave it. A rank that joins (attach mode) also sends its world
 * size and host, its token is {@link joinToken} of the run's secret, and rank
 * 0 says where the process group should meet (`group`).
 */
export interface RankHello {
  t: "hello";
  rank: number;
  pid: number;
  token: string;
  worldSize?: number;
  host?: string;
  group?: { masterAddr: string; masterPort: number };
}

/** Where a joined group's ranks meet, and the secret of the group's links. */
export interface GroupRendezvous {
  masterAddr: string;
  masterPort: number;
  secret: string;
}

/** One streamed result: a value, or a ready Server-Sent Event the rank formatted. */
export type StreamItem = { data: unknown } | { event: Uint8Array };

/** A log record a rank forwards for one request. */
export interface ForwardedLog {
  level: number;
  msg: string;
  time: number;
  rank: number;
}

/**
 * On a `done`: the pooled payload segments the worker kept with `ctx.keep()`,
 * by name. The runner unlinks them instead of lending them to a later request.
 */
export interface KeptSegments {
  kept?: string[];
}

/** Rank to runner. */
export type RankMessage =
  | RankHello
  | { t: "ready"; device: unknown }
  | { t: "setup-failed"; error: SerializedError }
  | { t: "items"; id: number; items: StreamItem[] }
  | { t: "item-error"; id: number; error: SerializedError }
  | { t: "progress"; id: number; data: unknown }
  | { t: "log"; id: number; log: ForwardedLog }
  | ({ t: "done"; id: number; ok: true; result?: unknown; hasResult: boolean } & KeptSegments)
  | ({ t: "done"; id: number; ok: false; error: SerializedError; cancelled: boolean } & KeptSegments)
  | { t: "pong"; n: number }
  | { t: "teardown-done"; error?: SerializedError }
  /**
   * `groupBroken`: the rank leaves because its process group broke (a peer
   * died or was cut off): a consequence, not the cause, so the runner waits
   * for its heartbeats to name the rank that is really gone.
   */
  | { t: "fatal"; error: SerializedError; groupBroken?: boolean };

/**
 * Exit code of a joined rank after a teardown for `restart()`: not 0, so
 * launchers with a restart policy start it again (75 is EX_TEMPFAIL: try again).
 */
export const RESTART_EXIT_CODE = 75;

/**
 * Exit code of a rank whose process group broke for good (it failed: a peer
 * lost, a link down, `fail()`; or it was closed under the requests). The rank
 * sent a `fatal` saying why; the runner restarts the ranks when it was ready.
 */
export const GROUP_BROKEN_EXIT_CODE = 71;

/** Environment variables the runner hands each rank (besides torchrun's). */
export const RANK_ENV = Object.freeze({
  controlEndpoint: "MULTIRANK_CONTROL_ENDPOINT",
  routingId: "MULTIRANK_ROUTING_ID",
  token: "MULTIRANK_TOKEN",
  workerModule: "MULTIRANK_WORKER_MODULE",
  /** The worker module compiled by the runner, when it is TypeScript: what the rank imports instead of running tsx. */
  compiledWorker: "MULTIRANK_COMPILED_WORKER",
  errorFile: "MULTIRANK_ERROR_FILE",
  maxMessageBytes: "MULTIRANK_MAX_MESSAGE_BYTES",
  curveServerKey: "MULTIRANK_CURVE_SERVER_KEY",
  curvePublicKey: "MULTIRANK_CURVE_PUBLIC_KEY",
  curveSecretKey: "MULTIRANK_CURVE_SECRET_KEY",
  deathPipeFd: "MULTIRANK_DEATH_PIPE_FD",
  logLevel: "MULTIRANK_LOG_LEVEL",
  streamWindow: "MULTIRANK_STREAM_WINDOW",
  /** The process group's secret, new for every start (see `ProcessGroupOptions.secret`). */
  groupSecret: "MULTIRANK_GROUP_SECRET",
  /** A unix socket path the group meets at instead of MASTER_ADDR:MASTER_PORT (a runner's own ranks, on its host). */
  rendezvousSocket: "MULTIRANK_RENDEZVOUS_SOCKET",
});
