import { join } from "node:path";

import { isLoopback } from "../util/loopback.js";

// sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_IPC_PATH = 107;

/** Where the control socket binds, and whether it needs CURVE. */
export interface ControlEndpoint {
  /** `unix:<path>` (a unix stream socket), `ipc://<path>` or `tcp://host:port` (ZeroMQ). */
  bind: string;
  secure: boolean;
}

/** The control transports a runner can be asked for. */
export type ControlTransport = "auto" | "unix" | "ipc" | "tcp";

/**
 * Chooses the control endpoint. On loopback with port 0 (`auto`), a unix
 * stream socket in the runner's private directory: on one host it needs no
 * ZeroMQ I/O threads, so a round trip costs about a quarter of zeromq.js over
 * `ipc://` (bench/RESULTS.md), and other users cannot reach the directory.
 * `ipc` asks for ZeroMQ over `ipc://` there instead (for `getZmqSocket()`).
 * Otherwise TCP (`*` port lets ZeroMQ pick), always CURVE-secured: even on
 * loopback any local user can connect to a tcp port, and without CURVE such
 * a peer could send frames up to `maxMessageBytes` for the runner to buffer.
 */
export function chooseControlEndpoint(options: { transport: ControlTransport; workerAddr: string; workerPort: number; runDir: string }): ControlEndpoint {
  const path = join(options.runDir, "control.sock");
  const local = options.workerPort === 0 && isLoopback(options.workerAddr);
  const fits = Buffer.byteLength(path) <= MAX_IPC_PATH && process.platform !== "win32";
  if (fits && (options.transport === "unix" || (options.transport === "auto" && local))) return { bind: `unix:${path}`, secure: false };
  if (fits && options.transport === "ipc") return { bind: `ipc://${path}`, secure: false };
  const host = options.workerAddr.includes(":") && !options.workerAddr.startsWith("[") ? `[${options.workerAddr}]` : options.workerAddr;
  return { bind: `tcp://${host}:${options.workerPort === 0 ? "*" : options.workerPort}`, secure: true };
}

/** Whether ranks behind `endpoint` share this host (a unix or `ipc://` socket), so shared memory reaches them. */
export function isSameHostEndpoint(endpoint: string): boolean {
  return endpoint.startsWith("unix:") || endpoint.startsWith("ipc://");
}

