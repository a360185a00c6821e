import * as zmq from "zeromq";
const r = Number(process.env.RANK), n = Number(process.env.WORLD_SIZE);
const pull = new zmq.Pull(); await pull.bind(`ipc:///tmp/mr/rm-${r}`);
const pushes: zmq.Push[] = [];
for (let p = 0; p < n; p++) if (p !== r) { const s = new zmq.Push(); if (process.env.MON) s.events.on("disconnect", () => {}); s.connect(`ipc:///tmp/mr/rm-${p}`); pushes.push(s); }
await new Promise((res) => setTimeout(res, 500));
const counts = new Map<number, number>(); let waiter: (() => void) | null = null; let need = 0;
(async () => { for await (const [m] of pull) { const it = m.readUInt32LE(0); counts.set(it, (counts.get(it) ?? 0) + 1); if (waiter && (counts.get(need) ?? 0) >= n - 1) { const w = waiter; waiter = null; w(); } } })();
const ts: number[] = [];
for (let it = 0; it < 400; it++) {
  const t = performance.now();
  const b = Buffer.alloc(4); b.writeUInt32LE(it);
  await Promise.all(pushes.map((s) => s.send(process.env.MP ? [b, b] : b)));
  if ((counts.get(it) ?? 0) < n - 1) await new Promise<void>((res) => { need = it; waiter = res; });
  ts.push(performance.now() - t);
}
ts.sort((a, b) => a - b);
if (r === 0) console.log("raw all-to-all barrier n=" + n, "median", ts[200].toFixed(3), "p10", ts[40].toFixed(3));
await new Promise((res) => setTimeout(res, 300));
process.exit(0);
