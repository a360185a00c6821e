/**
 * `multirank engine install llama [--gpu]`: installs the llama.cpp engine
 * (node-llama-cpp) into the cache ahead of time, so the LLM app's first
 * start does not wait for it (CI runs it after `npm ci`).
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { MultirankError } from "../errors.js";
import { ensureLlamaEngine } from "../functions/llama-engine.js";

const USAGE = `Usage: multirank engine install llama [--gpu] [--cache-dir <dir>]

Installs node-llama-cpp and the prebuilt llama.cpp binaries for this platform
into <cache-dir>/engines/ (once; later runs find it there). The LLM app
installs it on first use too; this does it ahead of time.

  --gpu              the CUDA binaries as well (needs a CUDA 13 runtime to run)
  --cache-dir <dir>  default $MULTIRANK_CACHE_DIR or ~/.cache/multirank
  --help             show this text

Prints the install directory. MULTIRANK_LLAMA_ENGINE=<dir> points multirank at
an existing install instead.
`;

/**
 * Runs the subcommand; progress goes to stderr as pino records.
 * @returns the exit code: 0 when the engine is there, 1 when installing failed, 2 for bad arguments.
 */
export async function runEngineCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { gpu: { type: "boolean" }, "cache-dir": { type: "string" }, help: { type: "boolean", short: "h" } } });
  } catch (error) {
    out.write(`multirank engine: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    out.write(USAGE);
    return 0;
  }
  const [action, name, ...extra] = parsed.positionals;
  if (action !== "install" || name !== "llama" || extra.length > 0) {
    out.write(`multirank engine: expected "install llama", got ${JSON.stringify(parsed.positionals.join(" "))}\n\n${USAGE}`);
    return 2;
  }
  const logger = pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "info" }, pino.destination(2));
  try {
    const engine = await ensureLlamaEngine({ gpu: parsed.values.gpu ?? false, ...(parsed.values["cache-dir"] ? { cacheDir: parsed.values["cache-dir"] } : {}), logger });
    out.write(`${engine.dir}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`multirank engine: ${error instanceof MultirankError ? `${error.code}: ` : ""}${(error as Error).message}\n`);
    const cause = (error as Error).cause;
    if (cause instanceof Error) process.stderr.write(`${cause.message}\n`);
    return 1;
  }
}
