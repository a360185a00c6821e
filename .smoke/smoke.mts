import { spawnRanks, killAll } from "../test/fixtures/collectives-spawn.js";
const size = Number(process.argv[2] ?? 2);
const scenario = process.argv[3] ?? "ops";
const t = Date.now();
const ranks = await spawnRanks(size, "test/fixtures/collectives-rank.ts", { SCENARIO: scenario, ...(process.argv[4] ? { SHM: "0" } : {}) });
try {
  const res = await Promise.all(ranks.map((r) => r.result));
  for (const r of res) console.log(JSON.stringify(r).slice(0, 600));
} catch (e) { console.log(String(e)); for (const r of ranks) console.log(r.rank, r.stderr.slice(-2000)); }
console.log("ms", Date.now() - t);
killAll();
