/** Peer links as a group across hosts uses them: unix links carry data, tcp links only watch the peer. */
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { GroupAuth, RefusalLog } from "../../src/collectives/auth.js";
import { PeerLinks } from "../../src/collectives/links.js";
import { packHeader } from "../../src/collectives/wire.js";
import { groupSecret } from "../fixtures/collectives-spawn.js";

describe("peer links between hosts", () => {
  it("a tcp link carries no data (it is authenticated, not encrypted): what comes on it is dropped and logged once, and its loss is still reported", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "warn" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
    const secret = groupSecret();
    const identity = (rank: number) => ({ auth: new GroupAuth(secret), refusals: new RefusalLog(logger), groupId: "c0ffee", rank });
    const a = await PeerLinks.listen({ tcpHost: "127.0.0.1" }, logger, identity(0));
    const b = await PeerLinks.listen({ tcpHost: "127.0.0.1" }, logger, identity(1));
    try {
      const targets = [a, b].map((l) => ({ address: `tcp:127.0.0.1:${l.tcpPort!}`, data: false }));
      const signal = AbortSignal.timeout(10_000);
      await Promise.all([a.links.link(0, targets, signal), b.links.link(1, targets, signal)]);
      expect([...a.links.kinds()]).toEqual([[1, "tcp"]]);
      const received: string[] = [];
      b.links.start({ onMessage: (h) => received.push(String(h.s)), onDisconnect: () => {} });
      a.links.start({ onMessage: () => {}, onDisconnect: () => {} });
      const lost = new Promise<number>((resolve) => b.links.onLost(resolve));
      for (let i = 0; i < 3; i++) await a.links.send(1, [packHeader({ k: "p", s: 0 }), Buffer.from(`message ${i}`)]);
      // The link's end comes after the messages on the same stream: once b hears it, it has read them.
      a.links.close(100);
      expect(await lost).toBe(0);
      expect(received).toEqual([]);
      expect(lines.filter((l) => l.includes("carries no data"))).toHaveLength(1);
    } finally {
      a.links.close();
      b.links.close();
    }
  });
});
