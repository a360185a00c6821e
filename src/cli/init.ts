/**
 * `multirank init [dir]`: writes a project that works at once, from the
 * template under `templates/project/` (shipped in the package).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ValidationError } from "../errors.js";
import { MULTIRANK_VERSION } from "../version.js";

export const USAGE = `usage: multirank init [dir] [options]

  dir              where to write the project (default: this folder); made when missing
  --name <name>    the package's name (default: the folder's name)
  --force          write into a folder that is not empty (files of the same name are replaced)
  --help           this text

Then: cd dir && npm install && npm run dev   (npm test runs its tests)
`;

/** One folder up from both `src/cli` and `dist/cli`. */
const TEMPLATE_DIR = fileURLToPath(new URL("../../templates/project/", import.meta.url));

/** Options of {@link initProject}. */
export interface InitProjectOptions {
  /** The project's folder; made when missing. */
  dir: string;
  /** The package's name. @default the folder's name, made a valid npm name */
  name?: string;
  /** Write into a folder that is not empty. @default false */
  force?: boolean;
}

/** What {@link initProject} wrote. */
export interface InitProjectResult {
  dir: string;
  name: string;
  /** Paths written, relative to `dir`, sorted. */
  files: string[];
}

/**
 * Writes a new project into `options.dir`: package.json (multirank as a
 * dependency at this version), tsconfig.json, multirank.config.ts, a remote
 * function with a dependency, a streaming worker app, a vitest test, a
 * README, `.env.example` and `.gitignore`.
 * @throws {ValidationError} when the folder is not empty (a `.git` alone does not count) and `force` is not set, or the name is not usable.
 * @example await initProject({ dir: "my-app" });
 */
export function initProject(options: InitProjectOptions): InitProjectResult {
  const dir = resolve(options.dir);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ValidationError(`${dir} exists and is not a folder`);
    // A fresh `git init` is a common first step; it does not make the folder a project.
    const present = readdirSync(dir).filter((entry) => entry !== ".git");
    if (present.length > 0 && options.force !== true) {
      throw new ValidationError(`the folder ${dir} is not empty (${present.slice(0, 3).join(", ")}${present.length > 3 ? ", ..." : ""}); choose an empty or new folder, or pass --force to write into it`);
    }
  }
  const name = options.name ?? packageName(basename(dir));
  if (!/^[a-z0-9][a-z0-9._-]{0,213}$/.test(name)) throw new ValidationError(`options.name must be a lowercase npm name (letters, digits, . _ -); got ${JSON.stringify(name)}`);
  const files: string[] = [];
  for (const source of listFiles(TEMPLATE_DIR)) {
    const target = relative(TEMPLATE_DIR, source)
      .split("/")
      // npm leaves dot files such as .gitignore out of a package, so the template names them _gitignore.
      .map((part) => (part.startsWith("_") ? `.${part.slice(1)}` : part))
      .join("/");
    const text = readFileSync(source, "utf8").replaceAll("{{name}}", name).replaceAll("{{version}}", MULTIRANK_VERSION);
    mkdirSync(dirname(join(dir, target)), { recursive: true });
    writeFileSync(join(dir, target), text);
    files.push(target);
  }
  return { dir, name, files: files.sort() };
}

/** A folder's name as an npm package name (`My App` -> `my-app`). */
function packageName(folder: string): string {
  const cleaned = folder.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[._-]+|-+$/g, "");
  return cleaned || "multirank-project";
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? listFiles(join(dir, entry.name)) : [join(dir, entry.name)]));
}

/** Runs `multirank init`; resolves with the exit code (2 for bad usage or a folder that is not empty). */
export async function runInitCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { name: { type: "string" }, force: { type: "boolean", default: false }, help: { type: "boolean", default: false } }, strict: true });
  } catch (error) {
    process.stderr.write(`multirank init: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  if (positionals.length > 1) {
    process.stderr.write(`multirank init: one folder at most; got ${positionals.join(" ")}\n\n${USAGE}`);
    return 2;
  }
  let result: InitProjectResult;
  try {
    result = initProject({ dir: positionals[0] ?? ".", force: values.force, ...(values.name === undefined ? {} : { name: values.name }) });
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    process.stderr.write(`multirank init: ${error.message} [${error.code}]\n`);
    return 2;
  }
  const rel = relative(process.cwd(), result.dir);
  const cd = rel.startsWith("..") ? result.dir : rel;
  out.write(
    [
      `created ${result.name} in ${result.dir}:`,
      ...result.files.map((file) => `  ${file}`),
      "",
      "next:",
      ...(cd ? [`  cd ${cd.includes(" ") ? JSON.stringify(cd) : cd}`] : []),
      "  npm install",
      "  npm run dev      # serves it; edits reload",
      "  npm test",
      "",
    ].join("\n"),
  );
  return 0;
}
