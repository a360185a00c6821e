/**
 * Parsing and checking of the npm specs a function lists in `dependencies`,
 * and reading the name out of a `file:` tarball. Specs never reach a shell
 * (npm is spawned with an argument array and the specs go into a
 * package.json), so the character checks here are defence in depth and a
 * guard against specs that would only ever be typos: whitespace, quotes,
 * `$`, backticks and the like.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { DependencyInstallError, ValidationError } from "../errors.js";

/** One dependency, parsed: what goes into the environment's package.json and into its key. */
export interface ParsedSpec {
  /** The spec as the caller wrote it. */
  spec: string;
  /** The package name (for a `file:` spec, read from the tarball's package.json). */
  name: string;
  /** The value under `dependencies[name]` in package.json: a range, a tag, `file:<absolute path>`. */
  target: string;
  /** What the key hashes: the target, plus the tarball's sha256 for a `file:` spec. */
  keyPart: string;
}

// npm's own rule for new names (validate-npm-package-name), with upper case
// allowed because old packages on the registry still have it.
const NAME = /^(?:@[a-z0-9~-][a-z0-9._~-]*\/)?[a-z0-9~-][a-z0-9._~-]*$/i;
// Whitespace, control characters and what a shell would interpret. Semver's
// own operators (< > = | ^ ~ *) stay allowed: `>=1.2 <2` is a range, and no
// shell ever sees it.
const FORBIDDEN = /[\s\p{Cc};&$`'"\\(){}!]/u;

/**
 * Checks every spec and returns them parsed, `file:` tarballs resolved to
 * absolute paths and hashed.
 * @throws {ValidationError} naming `options.dependencies[i]` for a spec that is not a non-empty
 * string, holds whitespace or shell metacharacters, has no valid package name, or names a package twice.
 * @throws {DependencyInstallError} when a `file:` tarball cannot be read or holds no package.json.
 */
export function parseSpecs(dependencies: readonly unknown[], cwd = process.cwd()): ParsedSpec[] {
  const parsed: ParsedSpec[] = [];
  const byName = new Map<string, string>();
  for (const [i, spec] of dependencies.entries()) {
    const field = `options.dependencies[${i}]`;
    if (typeof spec !== "string" || spec.length === 0) throw new ValidationError(`${field} must be a non-empty npm spec string, got ${describe(spec)}`);
    if (spec.length > 1024) throw new ValidationError(`${field} is ${spec.length} characters long; an npm spec is at most 1024`);
    if (FORBIDDEN.test(spec)) throw new ValidationError(`${field} ${JSON.stringify(spec)} holds whitespace, a quote or a shell metacharacter`);
    const one = parseSpec(spec, field, cwd);
    const earlier = byName.get(one.name);
    if (earlier !== undefined) throw new ValidationError(`${field} ${JSON.stringify(spec)} names package ${one.name} again (already ${JSON.stringify(earlier)})`);
    byName.set(one.name, spec);
    parsed.push(one);
  }
  return parsed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function parseSpec(spec: string, field: string, cwd: string): ParsedSpec {
  if (spec.startsWith("file:")) return fileSpec(spec, undefined, spec.slice(5), field, cwd);
  // The version part starts at the first "@" after the name (a scope's "@" is the first character).
  const at = spec.indexOf("@", spec.startsWith("@") ? 1 : 0);
  const name = at === -1 ? spec : spec.slice(0, at);
  const range = at === -1 ? "" : spec.slice(at + 1);
  if (!NAME.test(name) || name.startsWith(".") || name.startsWith("_")) {
    throw new ValidationError(`${field} ${JSON.stringify(spec)} is not an npm spec: use "name", "name@range", "@scope/name@range" or "file:/path/to/package.tgz"`);
  }
  if (at !== -1 && range.length === 0) throw new ValidationError(`${field} ${JSON.stringify(spec)} has an empty version after "@"`);
  if (range.startsWith("file:")) return fileSpec(spec, name, range.slice(5), field, cwd);
  // A bare name means what `npm install name` means: the latest tag.
  const target = range || "latest";
  return { spec, name, target, keyPart: `${name}@${target}` };
}

function fileSpec(spec: string, givenName: string | undefined, file: string, field: string, cwd: string): ParsedSpec {
  if (file.length === 0) throw new ValidationError(`${field} ${JSON.stringify(spec)} names no file`);
  const absolute = path.resolve(cwd, file);
  let bytes: Buffer;
  try {
    // Synchronous: the key is computed synchronously, and a tarball of a function's dependency is small.
    bytes = readFileSync(absolute);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "EIO";
    throw new DependencyInstallError(`cannot read the tarball of ${spec}: ${code} ${absolute}`, [spec], "", { cause: error });
  }
  const name = givenName ?? tarballName(bytes, spec);
  if (!NAME.test(name)) throw new DependencyInstallError(`the tarball of ${spec} names its package ${JSON.stringify(name)}, not a valid npm name`, [spec], "");
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const target = `file:${absolute}`;
  // The content hash is in the key so a tarball rebuilt under the same name makes a new environment.
  return { spec, name, target, keyPart: `${name}@${target}#sha256=${sha256}` };
}

/**
 * The `name` in the package.json at the top of an npm tarball (a gzipped tar
 * whose files sit under one directory, `package/` from `npm pack`). A small
 * reader, not a tar library: it reads ustar headers, GNU long names and pax
 * `path` records, which is all `npm pack` and GitHub tarballs use.
 * @throws {DependencyInstallError} when the file is not a gzipped tar or has no top-level package.json with a name.
 */
export function tarballName(gz: Buffer, spec: string): string {
  const fail = (why: string, cause?: unknown): never => {
    throw new DependencyInstallError(`the tarball of ${spec} ${why}`, [spec], "", cause === undefined ? undefined : { cause });
  };
  let tar: Buffer;
  try {
    tar = gunzipSync(gz);
  } catch (error) {
    return fail("is not a gzipped tar file (make it with `npm pack`)", error);
  }
  let longName: string | undefined;
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const size = parseInt(cString(header, 124, 12).trim() || "0", 8);
    if (!Number.isFinite(size) || size < 0) return fail("has a corrupt tar header");
    const type = String.fromCharCode(header[156]!);
    const body = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = cString(body, 0, body.length);
      continue;
    }
    if (type === "x") {
      const match = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
      if (match) longName = match[1];
      continue;
    }
    const prefix = cString(header, 345, 155);
    const entry = longName ?? (prefix ? `${prefix}/${cString(header, 0, 100)}` : cString(header, 0, 100));
    longName = undefined;
    if ((type === "0" || type === "\0") && /^[^/]+\/package\.json$/.test(entry.replace(/^\.\//, ""))) {
      let name: unknown;
      try {
        name = (JSON.parse(body.toString("utf8")) as { name?: unknown }).name;
      } catch (error) {
        return fail("has a package.json that is not JSON", error);
      }
      return typeof name === "string" ? name : fail("has a package.json without a name");
    }
  }
  return fail("holds no package.json at its top level");
}

function cString(buffer: Buffer, start: number, length: number): string {
  const field = buffer.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString("utf8");
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : typeof value;
}
