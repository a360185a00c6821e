#!/usr/bin/env node
/**
 * The `multirank` command. Each subcommand lives in its own module and is
 * loaded only when used, so `multirank devices` never loads the gateway.
 */
type Command = (argv: string[], out: NodeJS.WritableStream) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  serve: {
    summary: "serve the apps over fal's and Runpod's HTTP protocols (gateway.config.ts, or the examples)",
    load: async () => (await import("./serve.js")).runServeCommand,
  },
  dev: { summary: "serve the project and reload what changed after each edit", load: async () => (await import("./dev.js")).runDevCommand },
  bench: {
    summary: "benchmark a worker at several world sizes (table, --json, --chart)",
    load: async () => (await import("./bench.js")).runBenchCommand,
  },
  build: { summary: "bundle the project's apps and functions into .multirank/artifact.tgz", load: async () => (await import("./build.js")).runBuildCommand },
  deploy: { summary: "build and deploy the project to a multirank server (--to URL, $MULTIRANK_HOST)", load: async () => (await import("./deploy.js")).runDeployCommand },
  apps: { summary: "list, inspect, roll back or delete deployments on a server", load: async () => (await import("./apps.js")).runAppsCommand },
  devices: { summary: "list CUDA devices and their local CPU cores (--json for scripts)", load: async () => (await import("./devices.js")).runDevicesCommand },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(10)} ${summary}`);
  return `usage: multirank <command> [options]\n\ncommands:\n${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`multirank: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await command.load())(rest, process.stdout);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`multirank: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
