/**
 * `multirank serve`: runs the gateway. With no `--config`, serves
 * `./gateway.config.ts` when it exists, else the example apps on CPU ranks.
 * Prints the URL and a ready-to-paste curl; SIGTERM or SIGINT shut it down
 * gracefully (in-flight requests finish, runners stop) and it exits 0.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { cudaAvailability, listDevices } from "../devices/index.js";
import { AbortError, MultirankError } from "../errors.js";
import { findProjectConfig, type ProjectConfig } from "../deploy/project-config.js";
import { QueueUnavailableError } from "../gateway/errors.js";
import { redactUrl } from "../queue/queue-options.js";
import { createGateway, exampleApps, loadGatewayConfig } from "../server/index.js";
import { sweepLeftovers } from "../shm/sweep.js";

const USAGE = `usage: multirank serve [options]

  --port <n>        port to listen on (default 8000, or $PORT)
  --host <addr>     address to bind (default 127.0.0.1)
  --config <file>   the project's config (default ./multirank.config.ts or ./gateway.config.ts if present, else the example apps)
  --key <id:secret> accept this API key (repeatable; also $MULTIRANK_GATEWAY_KEYS, comma-separated); none = no auth
  --require-key-for-ops  ask for a key on /healthz, /metrics and /apps too (public by default)
  --admin-key <key> accept this admin key for registering remote functions and syncDir uploads (repeatable;
                    better $MULTIRANK_ADMIN_KEYS, comma-separated, as argv is visible to other users);
                    none = uploads only while listening on loopback
  --data-dir <dir>  the data root for syncDir uploads and dataPath() (default $MULTIRANK_DATA_DIR or ~/.local/share/multirank)
  --cache-dir <dir> function environments (default <data-dir>/.multirank/cache with --data-dir, else $MULTIRANK_CACHE_DIR or ~/.cache/multirank)
                    deployments (multirank deploy) are kept in <data-dir>/.multirank/deployments and come back after a restart
  --shutdown-grace <s>  seconds to finish in-flight requests on SIGTERM (default 30)
  --redis <url>     keep the queue and the jobs' records in Redis (redis://[user:password@]host:port[/db]), shared by
                    every gateway given the same Redis; also $MULTIRANK_REDIS_URL (better for a URL with a password,
                    as argv is visible to other users); the flag wins; the config's queue options apply to either
  --rank-pool <n>   keep n rank processes started, with the runtime loaded, for cold starts to take (default 0: off;
                    also $MULTIRANK_RANK_POOL; each idle one holds about 60 MiB)
  --help            this text
`;

/**
 * Runs the gateway until SIGTERM or SIGINT; resolves with the exit code.
 * @example process.exitCode = await runServeCommand(["--port", "8000"], process.stdout);
 */
export async function runServeCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        config: { type: "string" },
        key: { type: "string", multiple: true },
        "require-key-for-ops": { type: "boolean", default: false },
        "admin-key": { type: "string", multiple: true },
        "data-dir": { type: "string" },
        "cache-dir": { type: "string" },
        "shutdown-grace": { type: "string" },
        redis: { type: "string" },
        "rank-pool": { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    out.write(`multirank serve: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const port = Number(values.port ?? process.env.PORT ?? 8000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    out.write(`multirank serve: --port must be a port number; got ${values.port}\n`);
    return 2;
  }
  const grace = values["shutdown-grace"] === undefined ? undefined : Number(values["shutdown-grace"]);
  if (grace !== undefined && !(grace >= 0)) {
    out.write("multirank serve: --shutdown-grace must be a number of seconds\n");
    return 2;
  }
  const poolText = values["rank-pool"] ?? (process.env.MULTIRANK_RANK_POOL || undefined);
  const poolSize = poolText === undefined ? undefined : Number(poolText);
  if (poolSize !== undefined && !(Number.isInteger(poolSize) && poolSize >= 0)) {
    out.write(`multirank serve: --rank-pool (or $MULTIRANK_RANK_POOL) must be a whole number of processes; got ${poolText}\n`);
    return 2;
  }
  const logger = pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "info" }, pino.destination(2));
  // A server killed earlier (or its runners) left run dirs and /dev/shm segments that nothing else removes.
  const swept = sweepLeftovers();
  if (swept.tmp.length + swept.shm.length > 0) logger.info({ swept }, "removed leftovers of runners that are gone");
  const gpuCount = countGpus();
  let config: ProjectConfig;
  const configPath = values.config ?? findProjectConfig(process.cwd());
  if (configPath) {
    try {
      config = (await loadGatewayConfig(resolve(configPath))) as ProjectConfig;
    } catch (error) {
      // A mistake in the config (a misspelt option, a missing file or package) is one line; a bug in it keeps its stack.
      const expected = error instanceof MultirankError || (error as { code?: unknown })?.code === "ERR_MODULE_NOT_FOUND";
      out.write(`multirank serve: cannot load ${configPath}: ${expected ? (error as Error).message : ((error as Error)?.stack ?? String(error))}\n`);
      return 2;
    }
  } else {
    config = { apps: exampleApps({ gpuCount }) };
  }
  // The project's name and functions are not gateway options: the functions are served once it listens.
  const { functions: configFunctions = [], name: _projectName, ...gatewayConfig } = config;
  // The URL given here replaces the config's; its other queue options (prefix, stalledAfter...) still apply.
  const redisUrl = values.redis ?? (process.env.MULTIRANK_REDIS_URL || undefined);
  if (redisUrl !== undefined) gatewayConfig.queue = { ...config.queue, redis: redisUrl };
  // The flag's size replaces the config's; its other pool options (nodeArgs) still apply.
  if (poolSize !== undefined) gatewayConfig.rankPool = { ...(gatewayConfig.rankPool instanceof Object ? gatewayConfig.rankPool : {}), size: poolSize };
  const envKeys = (process.env.MULTIRANK_GATEWAY_KEYS ?? "").split(",").filter(Boolean);
  const keys = [...(config.keys ?? []), ...(values.key ?? []), ...envKeys];
  const requireKeyForOps = values["require-key-for-ops"] === true || config.requireKeyForOps === true;
  if (requireKeyForOps && keys.length === 0) {
    out.write("multirank serve: --require-key-for-ops needs at least one key (--key, $MULTIRANK_GATEWAY_KEYS or keys in the config)\n");
    return 2;
  }
  const adminKeys = [...(values["admin-key"] ?? []), ...(process.env.MULTIRANK_ADMIN_KEYS ?? "").split(",").filter(Boolean)];
  const functionServer = {
    adminKeys,
    ...(values["data-dir"] ? { dataDir: resolve(values["data-dir"]) } : {}),
    // With --data-dir, everything the server keeps lives there: deployments and their environments too.
    ...(values["cache-dir"] ? { cacheDir: resolve(values["cache-dir"]) } : values["data-dir"] ? { cacheDir: resolve(values["data-dir"], ".multirank", "cache") } : {}),
  };
  let gateway;
  try {
    gateway = await createGateway({ ...gatewayConfig, keys, logger, requireKeyForOps, functionServer, ...(grace === undefined ? {} : { shutdownGrace: grace }) });
  } catch (error) {
    // The messages name the Redis URL with its password hidden; an unreachable Redis is no mistake in the command.
    out.write(`multirank serve: ${(error as Error).message}\n`);
    return error instanceof QueueUnavailableError ? 1 : 2;
  }

  let stop: (signal: NodeJS.Signals) => void = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolveStop) => (stop = resolveStop));
  const onSignal = (signal: NodeJS.Signals): void => stop(signal);
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);

  let url: string;
  try {
    url = await gateway.listen({ port, host: values.host });
  } catch (error) {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await gateway.close();
    out.write(`multirank serve: could not listen on ${values.host}:${port}: ${(error as Error).message}\n`);
    return 1;
  }
  // A signal while the functions' environments install (npm can take minutes) stops the install too.
  const startup = new AbortController();
  void stopped.then((signal) => startup.abort(new AbortError(`${signal} during start-up`)));
  try {
    await gateway.serveFunctions(configFunctions, { signal: startup.signal });
  } catch (error) {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await gateway.close();
    if (startup.signal.aborted) {
      out.write("stopped during start-up\n");
      return 0;
    }
    out.write(`multirank serve: the config's functions could not be served: ${(error as Error).message}\n`);
    return 1;
  }
  void gateway.warm();
  out.write(banner(url, gateway.apps.map((app) => ({ name: app.name, input: app.exampleInput, worldSize: app.worldSize })), keys.length > 0, gpuCount, adminKeys.length > 0, gatewayConfig.queue?.redis));

  const signal = await stopped;
  out.write(`\n${signal}: shutting down (finishing requests in flight)…\n`);
  // A second Ctrl-C (not a relayed duplicate: at least a second later) means "now"; repeated SIGTERMs are ignored.
  const since = Date.now();
  const ignore = (): void => {};
  const force = (): void => {
    if (Date.now() - since < 1000) return;
    out.write("second Ctrl-C: exiting now\n");
    process.exit(130);
  };
  process.on("SIGTERM", ignore);
  process.on("SIGINT", force);
  try {
    await gateway.close();
  } finally {
    process.off("SIGTERM", ignore);
    process.off("SIGINT", force);
  }
  out.write("stopped\n");
  return 0;
}

export function countGpus(): number {
  if (!cudaAvailability().available) return 0;
  try {
    return listDevices().length;
  } catch {
    return 0;
  }
}

/** `{}` is defineApp's default: the app gave no example, so `{}` would be a guess, not its input. */
function hasExample(input: unknown): boolean {
  return !(typeof input === "object" && input !== null && !Array.isArray(input) && Object.keys(input).length === 0);
}

/** The curl `-d` argument: the example, shell-quoted, or a placeholder that says what goes there. */
function body(input: unknown): string {
  return hasExample(input) ? `'${JSON.stringify(input).replaceAll("'", "'\\''")}'` : "'<input JSON>'";
}

export function banner(url: string, apps: Array<{ name: string; input: unknown; worldSize: number }>, auth: boolean, gpus: number, adminKeys: boolean, redis?: string): string {
  // Double quotes, so the shell expands $FAL_KEY (in single quotes it went out literally and got 401).
  const header = auth ? ` -H "Authorization: Key $FAL_KEY"` : "";
  const first = apps.find((a) => a.name.endsWith("/echo")) ?? apps[0];
  const streaming = apps.find((a) => a.name.endsWith("/text-stream"));
  const lines = [
    "",
    `multirank gateway listening on ${url}  (${gpus > 0 ? `${gpus} GPU${gpus === 1 ? "" : "s"}` : "no GPU: ranks run on the CPU"})`,
    "",
    `  web page   ${url}/`,
    `  metrics    ${url}/metrics`,
    // The password, if any, stays out of the terminal (and whatever records it).
    ...(redis ? [`  queue      Redis at ${redactUrl(redis)}, shared with every gateway on it`] : []),
    "",
    "  apps:",
    ...apps.map((a) => `    ${a.name.padEnd(28)} ${a.worldSize} rank${a.worldSize === 1 ? "" : "s"}   fal: ${url}/fal/run/${a.name}   runpod: ${url}/v2/${a.name.replace("/", "--")}`),
  ];
  if (first) lines.push("", "  try:", `    curl -s ${url}/fal/run/${first.name}${header} -H 'content-type: application/json' -d ${body(first.input)}`);
  if (streaming) lines.push(`    curl -N ${url}/fal/run/${streaming.name}/stream${header} -H 'content-type: application/json' -d ${body(streaming.input)}`);
  if ((first && !hasExample(first.input)) || (streaming && !hasExample(streaming.input))) {
    lines.push("    (the body is the app's own input; give the app an exampleInput to print a ready-to-paste one)");
  }
  if (auth) lines.push("    (set FAL_KEY to one of the gateway's keys first)");
  lines.push(
    "",
    `  functions  remote() functions run here with MULTIRANK_HOST=${url}${adminKeys ? " and an admin key as MULTIRANK_KEY" : " (registration: loopback only, no admin key)"}`,
    "",
    "  Ctrl-C stops it gracefully.",
    "",
  );
  return lines.join("\n");
}
