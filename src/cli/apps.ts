/** `multirank apps list | info NAME | rollback NAME [REV] | delete NAME`, against a server. */
import { parseArgs } from "node:util";
import { deleteDeployment, deploymentInfo, listDeployments, rollbackDeployment, type DeployTarget } from "../deploy/client.js";

const USAGE = `usage: multirank apps <list | info NAME | rollback NAME [REVISION] | delete NAME> [options]

  --to <url>   the server (default $MULTIRANK_HOST)
  --key <key>  its key (default $MULTIRANK_KEY; rollback and delete need an admin key)
  --json       print JSON
  --help       this text

NAME is a deployed project, or one of its apps or functions.
`;

/** Runs `multirank apps`; resolves with the exit code. */
export async function runAppsCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { to: { type: "string" }, key: { type: "string" }, json: { type: "boolean", default: false }, help: { type: "boolean", default: false } }, strict: true });
  } catch (error) {
    out.write(`multirank apps: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [action, name, revision] = positionals;
  if (values.help || !action) {
    out.write(USAGE);
    return values.help ? 0 : 2;
  }
  const target: DeployTarget = { url: values.to, key: values.key };
  const print = (value: unknown, text: () => string): void => void out.write(values.json ? `${JSON.stringify(value, null, 2)}\n` : text());
  const needName = (): string => {
    if (!name) throw new Error(`apps ${action} needs a NAME`);
    return name;
  };
  try {
    switch (action) {
      case "list": {
        const apps = await listDeployments(target);
        print(apps, () => (apps.length === 0 ? "nothing deployed\n" : apps.map((a) => `${a.project.padEnd(28)} revision ${a.current} of ${a.revisions.length}   ${(a.revisions.find((r) => r.revision === a.current)?.entries ?? []).map((e) => e.name).join(", ")}\n`).join("")));
        return 0;
      }
      case "info": {
        const info = await deploymentInfo(needName(), target);
        print(info, () =>
          [
            `${info.project}: revision ${info.current} is live`,
            ...info.revisions.map((r) => `  ${r.revision === info.current ? "*" : " "} revision ${r.revision}  ${r.created}  ${r.hash.slice(0, 12)}  ${r.entries.map((e) => `${e.kind} ${e.name}`).join(", ")}`),
            "",
          ].join("\n"),
        );
        return 0;
      }
      case "rollback": {
        const rev = revision === undefined ? undefined : Number(revision);
        if (rev !== undefined && !(Number.isInteger(rev) && rev > 0)) throw new Error(`REVISION must be a positive integer, got ${revision}`);
        const result = await rollbackDeployment(needName(), rev, target);
        print(result, () => `${result.project} revision ${result.revision} is live\n`);
        return 0;
      }
      case "delete": {
        await deleteDeployment(needName(), target);
        print({ deleted: name }, () => `${name} deleted\n`);
        return 0;
      }
      default:
        out.write(`multirank apps: unknown action "${action}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    out.write(`multirank apps: ${(error as Error).message}\n`);
    return 1;
  }
}
