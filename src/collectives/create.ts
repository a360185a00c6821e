import { AbortError, TimeoutError } from "../errors.js";
import { defaultLogger } from "../util/logger.js";
import { setLongTimeout } from "../util/timers.js";
import { GroupAuth, RefusalLog } from "./auth.js";
import { LocalBackend } from "./local-backend.js";
import { resolveGroupOptions } from "./options.js";
import { BackendProcessGroup } from "./process-group.js";
import type { ProcessGroup, ProcessGroupOptions } from "./types.js";
import { createCpuBackend } from "./cpu-backend.js";

/**
 * Joins the process group: rank 0 binds the rendezvous at
 * `tcp://masterAddr:masterPort`, the others connect, they swap where each
 * listens (unix sockets for peers on the same host, tcp with ZeroMQ and
 * CURVE for peers on others) and from then on talk directly.
 * Every rank must call it; it resolves on each once all are connected. World
 * size 1 opens no socket at all.
 *
 * With `options.secret` (or `MULTIRANK_GROUP_SECRET`) every rendezvous message
 * and link is proven with it: a process without it is refused, logged once,
 * changes nothing, and the ranks connect as if it were not there.
 *
 * @throws ValidationError for bad options (naming the field) or when ranks
 * disagree on the world size; TimeoutError after `options.timeout` (saying which
 * ranks were missing); AbortError when `options.signal` aborts;
 * TransportError when rank 0 cannot bind the port.
 * @example
 * const group = await createProcessGroup({ rank, size, masterAddr: "127.0.0.1", masterPort: 29500 });
 * const total = await group.allReduce(new Float32Array([1, 2, 3]), "sum");
 * await group.close();
 */
export async function createProcessGroup(options: ProcessGroupOptions): Promise<ProcessGroup> {
  const o = resolveGroupOptions(options);
  const log = (o.logger ?? defaultLogger()).child({ component: "collectives", rank: o.rank });
  if (o.size === 1) return new BackendProcessGroup(new LocalBackend(), log, o.operationTimeout);

  const auth = new GroupAuth(o.secret);
  if (!auth.keyed && o.rank === 0) {
    log.warn("the process group has no secret (options.secret or MULTIRANK_GROUP_SECRET): any process that reaches masterAddr:masterPort can join it");
  }
  const refusals = new RefusalLog(log);
  const controller = new AbortController();
  const status = { waiting: "starting" };
  const timer = setLongTimeout(o.timeout, () =>
    controller.abort(new TimeoutError(`process group rendezvous timed out after ${o.timeout / 1000} s (${status.waiting}${refusals.summary()})`, o.timeout, { rank: o.rank })),
  );
  const onAbort = (): void => controller.abort(new AbortError(`process group rendezvous was aborted on rank ${o.rank}`, { rank: o.rank, cause: o.signal?.reason }));
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const backend = await createCpuBackend({
      rank: o.rank,
      size: o.size,
      masterAddr: o.masterAddr,
      masterPort: o.masterPort,
      socketPath: o.rendezvousSocket,
      transport: o.transport,
      sharedMemory: o.sharedMemory,
      hostAddr: o.hostAddr,
      signal: controller.signal,
      status,
      log,
      auth,
      refusals,
    });
    return new BackendProcessGroup(backend, log, o.operationTimeout);
  } finally {
    timer.cancel();
    o.signal?.removeEventListener("abort", onAbort);
  }
}
