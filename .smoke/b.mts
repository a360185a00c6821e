import { createProcessGroup, processGroupOptionsFromEnv } from "../src/collectives/index.js";
import { pino } from "pino";
const g = await createProcessGroup(processGroupOptionsFromEnv(process.env, { logger: pino({ level: process.env.LL ?? "warn" }, pino.destination(2)) }));
const N = Number(process.env.N ?? 16 * 1024 * 1024);
const data = new Float32Array(N).fill(1);
for (let i = 0; i < 4; i++) { await g.barrier(); const t = performance.now(); await g.allReduce(data); if (g.rank === 0) console.log("allreduce", (performance.now() - t).toFixed(1)); }
const ts: number[] = [];
for (let i = 0; i < 300; i++) { const t = performance.now(); await g.barrier(); ts.push(performance.now() - t); }
ts.sort((a, b) => a - b);
if (g.rank === 0) console.log("barrier median", ts[150].toFixed(3), "p10", ts[30].toFixed(3));
await g.close(); process.exit(0);
