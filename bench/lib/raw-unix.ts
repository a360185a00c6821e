/**
 * A second reference point for the invoke table: a round trip over a bare
 * unix stream socket between two Node processes (one `write`, one `data`
 * event each way, no framing, no multirank code). It shows what the unix
 * control channel itself costs against zeromq.js's `ipc://`.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CHILD = `
const socket = require("node:net").connect(process.env.SOCK);
socket.on("data", (d) => socket.write(d));
`;

export interface RawUnixPeer {
  roundTrip(body: Buffer): Promise<void>;
  close(): Promise<void>;
}

export async function rawUnixPeer(): Promise<RawUnixPeer> {
  const dir = mkdtempSync(join(tmpdir(), "mr-bench-"));
  const path = join(dir, "s");
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawn(process.execPath, ["-e", CHILD], { env: { ...process.env, SOCK: path }, stdio: ["ignore", "inherit", "inherit"] });
  const [socket] = (await once(server, "connection")) as [net.Socket];
  let answered: () => void = () => {};
  socket.on("data", () => answered());
  return {
    roundTrip(body) {
      return new Promise<void>((resolve) => {
        answered = resolve;
        socket.write(body);
      });
    },
    async close() {
      socket.destroy();
      child.kill("SIGKILL");
      await once(child, "exit").catch(() => {});
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
