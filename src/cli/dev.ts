/**
 * `multirank dev`: `serve` plus reload. It watches the project; after an edit
 * to a worker, a function or the config, the next request runs the new code:
 * apps and functions whose code or options changed drain and restart, the
 * others stay warm. An edit that does not load (a syntax error) is reported
 * and the previous code keeps serving.
 */
import { watch, type FSWatcher } from "node:fs";
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { findProjectConfig } from "../deploy/project-config.js";
import { probeProject } from "../dev/project-probe.js";
import { createGateway, type UpdateChange } from "../server/index.js";
import { banner, countGpus } from "./serve.js";

const USAGE = `usage: multirank dev [options]

  --port <n>        port to listen on (default 8000, or $PORT)
  --host <addr>     address to bind (default 127.0.0.1)
  --config <file>   the project's config (default ./multirank.config.ts or ./gateway.config.ts)
  --help            this text

Serves the project like serve, and reloads what changed after each edit.
`;

const IGNORED = /(^|\/)(node_modules|\.multirank|\.git|dist|coverage)(\/|$)/;

/** Runs `multirank dev` until SIGTERM or SIGINT; resolves with the exit code. */
export async function runDevCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { port: { type: "string" }, host: { type: "string", default: "127.0.0.1" }, config: { type: "string" }, help: { type: "boolean", default: false } }, strict: true }));
  } catch (error) {
    out.write(`multirank dev: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const port = Number(values.port ?? process.env.PORT ?? 8000);
  const configPath = values.config ? resolve(values.config) : findProjectConfig(process.cwd());
  if (!configPath) {
    out.write("multirank dev: no multirank.config.ts (or gateway.config.ts) here; multirank init makes a project\n");
    return 2;
  }
  const logger = pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "info" }, pino.destination(2));
  let project;
  try {
    project = await probeProject(configPath);
  } catch (error) {
    out.write(`multirank dev: ${(error as Error).message}\n`);
    return 2;
  }
  const keys = (process.env.MULTIRANK_GATEWAY_KEYS ?? "").split(",").filter(Boolean);
  const gateway = await createGateway({ apps: [], keys, logger, functionServer: {}, shutdownGrace: 5 });
  let url: string;
  try {
    url = await gateway.listen({ port, host: values.host });
    await gateway.update(project);
  } catch (error) {
    await gateway.close();
    out.write(`multirank dev: ${(error as Error).message}\n`);
    return 1;
  }
  const gpus = countGpus();
  out.write(banner(url, gateway.apps.map((app) => ({ name: app.name, input: app.exampleInput, worldSize: app.worldSize })), keys.length > 0, gpus, false));
  out.write(`  watching ${project.dir} for changes\n\n`);

  let reloading: Promise<void> | undefined;
  let again = false;
  const reload = async (): Promise<void> => {
    try {
      const next = await probeProject(configPath);
      const changes = (await gateway.update(next)).filter((c: UpdateChange) => c.change !== "unchanged");
      if (changes.length > 0) out.write(`reloaded: ${changes.map((c) => `${c.kind} ${c.name} ${c.change}`).join(", ")}\n`);
    } catch (error) {
      out.write(`reload failed, the previous code keeps serving: ${(error as Error).message}\n`);
    }
  };
  const schedule = (): void => {
    if (reloading) {
      again = true;
      return;
    }
    reloading = (async () => {
      do {
        again = false;
        await reload();
      } while (again);
    })().finally(() => (reloading = undefined));
  };
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(project.dir, { recursive: true }, (_event, file) => {
      const path = file ? relative(project.dir, resolve(project.dir, file.toString())) : "";
      if (IGNORED.test(path)) return;
      // Editors write a file in several steps: reload once they are done.
      clearTimeout(timer);
      timer = setTimeout(schedule, 150);
    });
  } catch (error) {
    out.write(`multirank dev: cannot watch ${project.dir}: ${(error as Error).message}\n`);
  }

  const signal = await new Promise<NodeJS.Signals>((resolveStop) => {
    process.once("SIGTERM", resolveStop);
    process.once("SIGINT", resolveStop);
  });
  out.write(`\n${signal}: stopping…\n`);
  clearTimeout(timer);
  watcher?.close();
  await reloading;
  await gateway.close();
  out.write("stopped\n");
  return 0;
}
