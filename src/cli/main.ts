#!/usr/bin/env node
/**
 * The `multirank` command. Each subcommand lives in its own module and is
 * loaded only when used, so `multirank devices` never loads the gateway.
 */
type Command = (argv: string[], out: NodeJS.WritableStream) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  init: { summary: "write a new project (a function, a streaming worker app, a test) into a folder", load: async () => (await import("./init.js")).runInitCommand },
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
  run: { summary: "call a remote function or a worker module once and print the result as JSON", load: async () => (await import("./run.js")).runRunCommand },
  rank: {
    summary: "run one rank of a runner in attach mode, under mpirun, srun, Kubernetes or torchrun (MULTIRANK_JOIN)",
    load: async () => (await import("./rank.js")).runRankCommand,
  },
  engine: { summary: "install the llama.cpp engine (node-llama-cpp) ahead of time: engine install llama [--gpu]", load: async () => (await import("./engine.js")).runEngineCommand },
  devices: { summary: "list CUDA devices and their local CPU cores (--json for scripts)", load: async () => (await import("./devices.js")).runDevicesCommand },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(10)} ${summary}`);
  return `usage: multirank <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nmultirank help <command> prints a command's options; --version (-v) prints the version.\n`;
}

/**
 * True when `--version` or `-v` is one of the arguments (before a `--`). A
 * value that starts with a dash must be given as `--option=value` anyway
 * (parseArgs refuses it otherwise), so such a token is never an option's value.
 */
function asksVersion(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === "--version" || arg === "-v");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (asksVersion(argv)) {
    // Loaded here only: version.js reads package.json, which no other path needs at startup.
    process.stdout.write(`multirank ${(await import("../version.js")).MULTIRANK_VERSION}\n`);
    return 0;
  }
  if (name === "help" && rest.length > 0) {
    const [topic, ...extra] = rest;
    const target = COMMANDS[topic!];
    if (!target || extra.length > 0) {
      process.stderr.write(`multirank help: ${target ? "one command at a time" : `unknown command "${topic}"`}\n\n${usage()}`);
      return 2;
    }
    return (await target.load())(["--help"], process.stdout);
  }
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
