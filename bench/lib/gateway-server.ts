/**
 * One server of bench/gateway.ts, in a process of its own (so the server
 * measured and autocannon, which loads the bench process's CPU, never share
 * an event loop):
 *
 *   node --import tsx bench/lib/gateway-server.ts bare
 *   node --import tsx bench/lib/gateway-server.ts gateway [REDIS_URL]
 *
 * `bare` is a fastify route, `POST /echo`, returning the JSON body it got;
 * `gateway` is a gateway serving the echo app (2 ranks) as `bench/echo`, its
 * queue in memory or, given a URL, in Redis. Prints one line to stdout,
 * `READY <url to POST to>`, once it listens. SIGTERM (or the bench closing
 * stdin) closes the server and exits 0, so a `--cpu-prof` given to this
 * process writes its profile.
 */
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import { pino } from "pino";
import { createGateway, defineApp } from "../../src/server/index.js";

const [mode, redis] = process.argv.slice(2);
let url: string;
let close: () => Promise<void>;

if (mode === "bare") {
  const bare = Fastify({ logger: false });
  bare.post("/echo", async (request) => request.body);
  await bare.listen({ port: 0, host: "127.0.0.1" });
  url = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/echo`;
  close = () => bare.close();
} else if (mode === "gateway") {
  const app = defineApp({ name: "bench/echo", worker: fileURLToPath(new URL("../../workers/echo.ts", import.meta.url)), machineType: "cpu-x2", concurrency: 64, keepAlive: 600 });
  // Warnings to stderr: stdout carries only the READY line.
  const gateway = await createGateway({ apps: [app], logger: pino({ level: "warn" }, pino.destination(2)), ...(redis ? { queue: { redis } } : {}) });
  url = `${await gateway.listen({ port: 0 })}/fal/run/bench/echo`;
  close = () => gateway.close();
} else {
  process.stderr.write(`gateway-server: mode must be "bare" or "gateway"; got ${String(mode)}\n`);
  process.exit(2);
}

let closing = false;
const stop = (): void => {
  if (closing) return;
  closing = true;
  close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`gateway-server: close failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
// The bench holds our stdin open; when it is gone, so are we.
process.stdin.on("end", stop).on("error", stop).resume();
process.stdout.write(`READY ${url}\n`);
