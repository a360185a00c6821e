/**
 * The baselines: what zeromq.js alone does between two processes, with no
 * multirank code. A child process runs a DEALER that echoes (or acks, or
 * streams) and the parent drives it from a ROUTER, the same socket types and
 * process layout the runner uses.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Router } from "zeromq";

const CHILD = `
const { Dealer } = require(${JSON.stringify(require_resolve_zeromq())});
(async () => {
  const d = new Dealer({ routingId: "peer", sendHighWaterMark: 100000, receiveHighWaterMark: 100000 });
  d.connect(process.env.EP);
  await d.send("hi");
  for await (const [msg] of d) {
    const text = msg.length < 64 ? msg.toString() : "";
    if (text.startsWith("stream ")) {
      const [, count, size] = text.split(" ");
      const body = Buffer.alloc(Number(size), 120);
      for (let i = 0; i < Number(count); i++) await d.send(body);
      await d.send("end");
    } else if (text === "ack-next") {
      // the next message is a payload to acknowledge without echoing it back
      const [payload] = await d.receive();
      await d.send(String(payload.length));
    } else {
      await d.send(msg);
    }
  }
})();
`;

function require_resolve_zeromq(): string {
  return join(process.cwd(), "node_modules", "zeromq");
}

export interface RawPeer {
  router: Router;
  roundTrip(body: Buffer): Promise<void>;
  streamFrom(count: number, size: number): Promise<number>;
  sendAndAck(body: Buffer): Promise<void>;
  close(): Promise<void>;
}

export async function rawPeer(): Promise<RawPeer> {
  const dir = mkdtempSync(join(tmpdir(), "mr-bench-"));
  const endpoint = `ipc://${join(dir, "s")}`;
  const router = new Router({ sendHighWaterMark: 100000, receiveHighWaterMark: 100000 });
  await router.bind(endpoint);
  const child: ChildProcess = spawn(process.execPath, ["-e", CHILD], { env: { ...process.env, EP: endpoint }, stdio: ["ignore", "inherit", "inherit"] });
  const [id] = await router.receive(); // hello
  const peer = id!;
  return {
    router,
    async roundTrip(body) {
      await router.send([peer, body]);
      await router.receive();
    },
    async streamFrom(count, size) {
      await router.send([peer, `stream ${count} ${size}`]);
      let received = 0;
      for (;;) {
        const [, msg] = await router.receive();
        if (msg!.length === 3 && msg!.toString() === "end") return received;
        received++;
      }
    },
    async sendAndAck(body) {
      await router.send([peer, "ack-next"]);
      await router.send([peer, body]);
      await router.receive();
    },
    async close() {
      child.kill("SIGKILL");
      await once(child, "exit").catch(() => {});
      router.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
