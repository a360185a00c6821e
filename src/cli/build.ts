/** `multirank build`: the project's deployment artifact under `.multirank/`. */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { buildProject } from "../deploy/build.js";

const USAGE = `usage: multirank build [options]

  --dir <dir>          the project (default: this folder); its multirank.config.ts (or gateway.config.ts)
  --exclude <pkg,...>  packages neither bundled nor installed (the server provides them)
  --no-lockfiles       do not ask npm for lockfiles (offline builds; the server resolves the specs)
  --help               this text

Writes .multirank/manifest.json and .multirank/artifact.tgz (the same sources give the same bytes).
`;

/** Runs `multirank build`; resolves with the exit code. */
export async function runBuildCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { dir: { type: "string" }, exclude: { type: "string" }, "no-lockfiles": { type: "boolean", default: false }, help: { type: "boolean", default: false } }, strict: true }));
  } catch (error) {
    out.write(`multirank build: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const logger = pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "warn" }, pino.destination(2));
  try {
    const result = await buildProject({
      ...(values.dir ? { dir: values.dir } : {}),
      exclude: (values.exclude ?? "").split(",").map((s) => s.trim()).filter(Boolean),
      lockfiles: !values["no-lockfiles"],
      logger,
    });
    out.write(`built ${result.manifest.project}: ${result.manifest.entries.length} entr${result.manifest.entries.length === 1 ? "y" : "ies"}\n`);
    for (const entry of result.manifest.entries) out.write(`  ${entry.kind.padEnd(8)} ${entry.name.padEnd(28)} ${entry.hash.slice(0, 12)}  ${entry.routes[0] ?? ""}\n`);
    out.write(`  ${result.artifactPath}  sha256 ${result.hash}\n`);
    return 0;
  } catch (error) {
    out.write(`multirank build: ${(error as Error).message}\n`);
    return 1;
  }
}
