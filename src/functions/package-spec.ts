/**
 * What package an npm dependency spec names. A remote function lists its
 * dependencies as npm specs; the bundler keeps those packages' imports bare,
 * so it needs each spec's package name, which for a `file:` tarball is only
 * inside the tarball.
 */
import { readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { ValidationError } from "../errors.js";

// npm's rules, loosened to accept the upper-case names old packages have.
const PACKAGE_NAME = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/i;

/** Whether `name` is a valid npm package name (`is-number`, `@scope/x`). */
export function isPackageName(name: string): boolean {
  return name.length <= 214 && PACKAGE_NAME.test(name) && !name.startsWith(".") && !name.startsWith("_");
}

/**
 * The package a bare import specifier refers to: `lodash/fp` -> `lodash`,
 * `@scope/x/y` -> `@scope/x`. Returns `undefined` when the specifier is not a
 * package import (`./x`, `/abs`, `node:fs`, `#internal`, `@/alias`, a URL).
 */
export function packageOfSpecifier(specifier: string): string | undefined {
  if (specifier.includes(":") || specifier.startsWith("#")) return undefined;
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
  return isPackageName(name) ? name : undefined;
}

/**
 * The package name an npm dependency spec installs.
 *
 * - `"is-number@7.0.0"`, `"is-number"` -> `"is-number"`
 * - `"@scope/x@^1"` -> `"@scope/x"`
 * - `"left-pad@file:/abs/left-pad-1.3.0.tgz"`, `"x@npm:other@1"` -> the name before the `@`
 * - `"file:/abs/x-1.0.0.tgz"` (or `file:` a directory) -> the `name` in that package's `package.json`
 *
 * @throws {ValidationError} for a spec that names no package (`user/repo`, a
 *   URL without `name@`), or a `file:` path that holds no readable package.
 */
export function packageNameOf(spec: string): string {
  if (typeof spec !== "string" || spec.trim() === "") throw new ValidationError(`dependency spec must be a non-empty string, got ${JSON.stringify(spec)}`);
  if (spec.startsWith("file:")) return packageNameOfPath(spec);
  const at = spec.indexOf("@", spec.startsWith("@") ? 1 : 0);
  const name = at === -1 ? spec : spec.slice(0, at);
  if (!isPackageName(name)) {
    throw new ValidationError(
      `dependency "${spec}" does not name an npm package; write it as name@version, name@range or name@<url or file: path>`,
    );
  }
  return name;
}

function packageNameOfPath(spec: string): string {
  const path = spec.startsWith("file://") ? fileURLToPath(spec) : resolve(spec.slice("file:".length));
  let json: string;
  try {
    json = statSync(path).isDirectory() ? readFileSync(join(path, "package.json"), "utf8") : readTarEntry(readFileSync(path), "package.json");
  } catch (error) {
    throw new ValidationError(`dependency "${spec}": cannot read its package.json (${(error as Error).message})`, { cause: error });
  }
  let name: unknown;
  try {
    name = (JSON.parse(json) as { name?: unknown }).name;
  } catch (error) {
    throw new ValidationError(`dependency "${spec}": its package.json is not valid JSON`, { cause: error });
  }
  if (typeof name !== "string" || !isPackageName(name)) throw new ValidationError(`dependency "${spec}": its package.json has no valid "name"`);
  return name;
}

/**
 * The text of `file` at the top of a (gzipped) tarball, under its one top
 * directory (`package/` in what `npm pack` makes). Throws when it is absent.
 */
function readTarEntry(archive: Buffer, file: string): string {
  const tar = archive[0] === 0x1f && archive[1] === 0x8b ? gunzipSync(archive) : archive;
  const text = (block: Buffer, start: number, length: number): string => {
    const raw = block.subarray(start, start + length);
    const end = raw.indexOf(0);
    return raw.subarray(0, end === -1 ? raw.length : end).toString("utf8");
  };
  let paxPath: string | undefined;
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const size = Number.parseInt(text(header, 124, 12).trim() || "0", 8);
    const type = String.fromCharCode(header[156] || 0x30);
    const body = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      // A pax header: its `path` record replaces the next entry's name (long paths).
      paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString("utf8"))?.[1];
      continue;
    }
    const prefix = text(header, 345, 155);
    const name = paxPath ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    paxPath = undefined;
    const parts = name.replace(/^\.\//, "").split("/");
    if ((type === "0" || type === "\0") && parts.length === 2 && parts[1] === file) return body.toString("utf8");
  }
  throw new Error(`no ${file} at the top of the archive`);
}
