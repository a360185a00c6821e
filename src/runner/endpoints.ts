import { createServer } from "node:net";
import { join } from "node:path";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/;

/** True for addresses that never leave this host. */
export function isLoopback(address: string): boolean {
  return LOOPBACK.test(address);
}

// sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_IPC_PATH = 107;

/** Where the control socket binds, and whether it needs CURVE. */
export interface ControlEndpoint {
  bind: string;
  secure: boolean;
}

/**
 * Chooses the control endpoint. On loopback with port 0, `ipc://` in the
 * runner's private directory: faster than TCP on one host and unreachable by
 * other users. Otherwise TCP (`*` port lets ZeroMQ pick), CURVE-secured when
 * the address is reachable from other hosts.
 */
export function chooseControlEndpoint(options: { transport: "auto" | "ipc" | "tcp"; workerAddr: string; workerPort: number; runDir: string }): ControlEndpoint {
  const ipcPath = join(options.runDir, "control.sock");
  const wantsIpc = options.transport === "ipc" || (options.transport === "auto" && options.workerPort === 0 && isLoopback(options.workerAddr));
  if (wantsIpc && Buffer.byteLength(ipcPath) <= MAX_IPC_PATH && process.platform !== "win32") {
    return { bind: `ipc://${ipcPath}`, secure: false };
  }
  const host = options.workerAddr.includes(":") && !options.workerAddr.startsWith("[") ? `[${options.workerAddr}]` : options.workerAddr;
  return { bind: `tcp://${host}:${options.workerPort === 0 ? "*" : options.workerPort}`, secure: !isLoopback(options.workerAddr) };
}

/** Finds a free TCP port on `host` by letting the kernel pick one. */
export function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
