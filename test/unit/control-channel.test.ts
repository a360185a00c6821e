import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { connectRankChannel, openRunnerChannel, type RankChannel, type RunnerChannel } from "../../src/transport/control-channel.js";
import { encodePrefix } from "../../src/transport/stream-framing.js";

const log = pino({ level: "silent" });
let dir: string;
const open: Array<RunnerChannel | RankChannel> = [];
const sockets: net.Socket[] = [];

afterEach(() => {
  for (const channel of open.splice(0)) channel.close();
  for (const socket of sockets.splice(0)) socket.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function pair(): Promise<{ runner: RunnerChannel; rank: RankChannel }> {
  dir = mkdtempSync(join(tmpdir(), "multirank-channel-"));
  const runner = await openRunnerChannel(`unix:${join(dir, "control.sock")}`, { maxMessageBytes: 64 * 1024 * 1024, log });
  const rank = connectRankChannel({ routingId: "r0", endpoint: runner.endpoint, maxMessageBytes: 64 * 1024 * 1024, lingerMs: 0, log });
  open.push(runner, rank);
  return { runner, rank };
}

describe("the unix control channel", () => {
  it("a send waits while the peer does not read, and the reader's inbox pauses the socket instead of growing", async () => {
    const { runner, rank } = await pair();
    const iterator = runner[Symbol.asyncIterator]();
    await rank.send([Buffer.from("hello")]);
    expect((await iterator.next()).value[1].toString()).toBe("hello");
    // The runner stops reading: the rank's sends of 8 KiB messages must start to wait
    // once the kernel's buffers, the runner's 1 MiB inbox and the rank's 1 MiB mark are full.
    const message = Buffer.alloc(8 * 1024, 1);
    let sent = 0;
    let waited = false;
    while (sent < 10_000) {
      const sending = rank.send([message]);
      let settled = false;
      void sending.then(() => (settled = true));
      await new Promise((resolve) => setImmediate(resolve));
      if (!settled) {
        waited = true;
        break;
      }
      sent++;
    }
    expect(waited).toBe(true);
    expect(sent * message.byteLength).toBeLessThan(16 * 1024 * 1024);
    // Reading again drains everything, in order.
    let received = 0;
    while (received < sent + 1) {
      const { value } = await iterator.next();
      expect(value[1].byteLength).toBe(message.byteLength);
      received++;
    }
    expect(received).toBe(sent + 1);
  });

  it("a connection that has not named itself may not announce more than a name's bytes", async () => {
    const { runner } = await pair();
    const socket = net.connect(runner.endpoint.slice("unix:".length));
    sockets.push(socket);
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.on("error", () => {});
    // A first message announcing 32 MiB: the router must drop it, not allocate it.
    socket.write(encodePrefix([Buffer.alloc(0)], 32 * 1024 * 1024)); // under the 64 MiB limit for named peers
    await closed;
  });
});
