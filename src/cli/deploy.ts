/** `multirank deploy`: build the project and deploy it to a multirank server. */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { buildProject } from "../deploy/build.js";
import { deployArtifact } from "../deploy/client.js";

const USAGE = `usage: multirank deploy [options]

  --to <url>           the server (default $MULTIRANK_HOST)
  --key <key>          an admin key of that server (default $MULTIRANK_KEY; prefer the variable: argv is visible to other users)
  --dir <dir>          the project (default: this folder)
  --exclude <pkg,...>  packages neither bundled nor installed
  --no-lockfiles       do not ask npm for lockfiles
  --help               this text

Builds .multirank/artifact.tgz, uploads it, and prints the server's build log.
Apps and functions that did not change keep their warm runners; the switch is atomic.
`;

/** Runs `multirank deploy`; resolves with the exit code. */
export async function runDeployCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        to: { type: "string" },
        key: { type: "string" },
        dir: { type: "string" },
        exclude: { type: "string" },
        "no-lockfiles": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    out.write(`multirank deploy: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const url = values.to ?? process.env.MULTIRANK_HOST;
  if (!url) {
    out.write("multirank deploy: no server: give --to URL or set MULTIRANK_HOST\n");
    return 2;
  }
  try {
    const built = await buildProject({
      ...(values.dir ? { dir: values.dir } : {}),
      exclude: (values.exclude ?? "").split(",").map((s) => s.trim()).filter(Boolean),
      lockfiles: !values["no-lockfiles"],
      logger: pino({ level: process.env.MULTIRANK_LOG_LEVEL ?? "warn" }, pino.destination(2)),
    });
    out.write(`deploying ${built.manifest.project} (${built.hash.slice(0, 12)}) to ${url}\n`);
    const result = await deployArtifact(built.artifact, { url, key: values.key ?? process.env.MULTIRANK_KEY }, (line) => out.write(`  ${line.msg}\n`));
    out.write(`${result.project} revision ${result.revision} is live\n`);
    for (const change of result.changes) out.write(`  ${change.kind.padEnd(8)} ${change.name.padEnd(28)} ${change.change}\n`);
    return 0;
  } catch (error) {
    out.write(`multirank deploy: ${(error as Error).message}\n`);
    return 1;
  }
}
