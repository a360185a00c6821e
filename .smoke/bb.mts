import { createProcessGroup, processGroupOptionsFromEnv } from "../src/collectives/index.js";
import { pino } from "pino";
const g = await createProcessGroup(processGroupOptionsFromEnv(process.env, { logger: pino({ level: "warn" }, pino.destination(2)) }));
const ts: number[] = [];
for (let i = 0; i < 3000; i++) { const t = performance.now(); await g.barrier(); ts.push(performance.now() - t); }
ts.sort((a, b) => a - b);
if (g.rank === 0) console.log("barrier n=" + g.size + " median", ts[1500].toFixed(3), "p10", ts[300].toFixed(3));
await g.close(); process.exit(0);
