// The parts of dependency environments that need no npm: spec parsing and
// validation, the key, reading a tarball's name, and reading npm's output.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { DependencyInstallError, ValidationError } from "../../src/errors.js";
import { environmentKey } from "../../src/functions/index.js";
import { failedPackages, redactSecrets } from "../../src/functions/npm-run.js";
import { parseSpecs, tarballName } from "../../src/functions/npm-specs.js";

const REGISTRY = "https://registry.npmjs.org/";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "multirank-test-envkey-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A gzipped tar with one file, as `npm pack` lays it out; `pax` stores the path in a pax header instead. */
function tgz(entry: string, content: string, pax = false): Buffer {
  const header = (name: string, size: number, type: string): Buffer => {
    const h = Buffer.alloc(512);
    h.write(name.slice(0, 100), 0);
    h.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
    h.write(type, 156);
    h.write("ustar\0", 257);
    return h;
  };
  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
  const body = Buffer.from(content);
  const blocks: Buffer[] = [];
  if (pax) {
    // A pax record is "<length> path=<value>\n", its length counting its own digits.
    const record = ` path=${entry}\n`;
    let length = record.length + 1;
    while (String(length).length + record.length !== length) length += 1;
    const paxBody = Buffer.from(`${length}${record}`);
    blocks.push(header("PaxHeader", paxBody.length, "x"), pad(paxBody), header("ignored-short-name", body.length, "0"), pad(body));
  } else blocks.push(header(entry, body.length, "0"), pad(body));
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

describe("dependency specs", () => {
  it("parses names, scopes, ranges and tags", () => {
    const parsed = parseSpecs(["is-number@7.0.0", "@scope/pkg@^1.2.0", "left-pad", "semver@>=7.5.0", "alias@npm:is-odd@3", "ms@1||2"]);
    expect(Object.fromEntries(parsed.map((p) => [p.name, p.target]))).toEqual({
      "is-number": "7.0.0",
      "@scope/pkg": "^1.2.0",
      "left-pad": "latest",
      semver: ">=7.5.0",
      alias: "npm:is-odd@3",
      ms: "1||2",
    });
  });

  it("refuses bad specs naming the index", () => {
    for (const spec of ["", " a", "a b", "a@1;b", "a@$X", "a@`x`", "a@'1'", 'a@"1"', "a@(1)", "a@1\\", "a\t@1", "_a@1", "@@1", "a@"]) {
      expect(() => parseSpecs(["ok@1", spec]), spec).toThrow(ValidationError);
      expect(() => parseSpecs(["ok@1", spec]), spec).toThrow(/options\.dependencies\[1\]/);
    }
    expect(() => parseSpecs(["a@1", "a@2"])).toThrow(/names package a again/);
  });

  it("a file: spec takes its name from the tarball, resolves its path and hashes its bytes", () => {
    const file = path.join(dir, "thing-1.0.0.tgz");
    fs.writeFileSync(file, tgz("package/package.json", JSON.stringify({ name: "thing", version: "1.0.0" })));
    const [spec] = parseSpecs([`file:${path.relative(process.cwd(), file)}`]);
    expect(spec).toMatchObject({ name: "thing", target: `file:${file}` });
    expect(spec!.keyPart).toMatch(/#sha256=[0-9a-f]{64}$/);
    const [named] = parseSpecs([`other@file:${file}`]);
    expect(named).toMatchObject({ name: "other", target: `file:${file}` });
  });

  it("reads a tarball's package name, from ustar and pax headers, and refuses what is not a package", () => {
    expect(tarballName(tgz("package/package.json", '{"name":"a"}'), "s")).toBe("a");
    expect(tarballName(tgz("some-dir/package.json", '{"name":"@s/b"}', true), "s")).toBe("@s/b");
    expect(() => tarballName(Buffer.from("not gzip"), "file:x.tgz")).toThrow(DependencyInstallError);
    expect(() => tarballName(tgz("package/index.js", "1"), "file:x.tgz")).toThrow(/no package\.json/);
    expect(() => tarballName(tgz("package/package.json", "{"), "file:x.tgz")).toThrow(/not JSON/);
    expect(() => tarballName(tgz("package/package.json", "{}"), "file:x.tgz")).toThrow(/without a name/);
  });
});

describe("environmentKey", () => {
  it("is a sha256 that ignores the order of specs, a registry's trailing slash and its credentials", () => {
    const key = environmentKey(["a@1", "b@2"], REGISTRY);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(environmentKey(["b@2", "a@1"], REGISTRY)).toBe(key);
    expect(environmentKey(["a@1", "b@2"], "https://registry.npmjs.org")).toBe(key);
    expect(environmentKey(["a@1"], "https://user:secret@npm.example.com/")).toBe(environmentKey(["a@1"], "https://npm.example.com/"));
  });

  it("changes with the specs, the registry and a tarball's content", () => {
    const key = environmentKey(["a@1"], REGISTRY);
    expect(environmentKey(["a@1.0.1"], REGISTRY)).not.toBe(key);
    expect(environmentKey(["a@1"], "https://npm.example.com/")).not.toBe(key);
    const file = path.join(dir, "changing-1.0.0.tgz");
    fs.writeFileSync(file, tgz("package/package.json", '{"name":"changing","version":"1.0.0"}'));
    const before = environmentKey([`file:${file}`], REGISTRY);
    fs.writeFileSync(file, tgz("package/package.json", '{"name":"changing","version":"1.0.0","main":"x.js"}'));
    expect(environmentKey([`file:${file}`], REGISTRY)).not.toBe(before);
  });

  it("refuses a registry that is not an http(s) URL, without echoing its credentials", () => {
    expect(() => environmentKey([], "file:///x")).toThrow(ValidationError);
    expect(() => environmentKey([], "ftp://u:hunter2@x/")).toThrow(/registry/);
    expect(() => environmentKey([], "ftp://u:hunter2@x/")).not.toThrow(/hunter2/);
  });
});

describe("npm output", () => {
  it("loses credentials", () => {
    const text = [
      "npm error 404 Not Found - GET https://alice:s3cret@npm.example.com/pkg",
      "//npm.example.com/:_authToken=abcdef123456",
      "_auth = dXNlcjpwYXNz",
      "Authorization: Bearer eyJhbGciOi",
      "token npm_abcdefghijklmnopqrstuvwxyz0123456789",
    ].join("\n");
    const clean = redactSecrets(text);
    for (const secret of ["s3cret", "alice", "abcdef123456", "dXNlcjpwYXNz", "eyJhbGciOi", "npm_abcdefghijklmnopqrstuvwxyz0123456789"]) expect(clean).not.toContain(secret);
    expect(clean).toContain("https://***:***@npm.example.com/pkg");
  });

  it("finds which spec failed from npm's messages, or none", () => {
    const names = new Map([
      ["is-number", "is-number@99"],
      ["@scope/pkg", "@scope/pkg@1"],
      ["left-pad", "left-pad@1"],
      ["local", "file:/tmp/x/local-1.0.0.tgz"],
    ]);
    const paths = new Map([["/tmp/x/local-1.0.0.tgz", "file:/tmp/x/local-1.0.0.tgz"]]);
    const find = (output: string): string[] => failedPackages(output, names, paths);
    expect(find("npm error code ETARGET\nnpm error notarget No matching version found for is-number@99.\n")).toEqual(["is-number@99"]);
    expect(find("npm error 404 Not Found - GET https://registry.npmjs.org/@scope%2fpkg - Not found\nnpm error 404  '@scope/pkg@1' is not in this registry.")).toEqual(["@scope/pkg@1"]);
    expect(find("npm error FetchError: request to http://127.0.0.1:9/left-pad failed, reason: connect ECONNREFUSED")).toEqual(["left-pad@1"]);
    expect(find("npm error enoent ENOENT: no such file or directory, open '/tmp/x/local-1.0.0.tgz'")).toEqual(["file:/tmp/x/local-1.0.0.tgz"]);
    expect(find("npm error code E404\nnpm error 404  'transitive-dep@2' is not in this registry.")).toEqual([]);
    expect(find("npm error gyp ERR! build error")).toEqual([]);
  });
});

describe("DependencyInstallError", () => {
  it("carries the specs and npm's output, and shows the output in its message", () => {
    const error = new DependencyInstallError("npm install of a@1 failed", ["a@1"], "npm error 404 a");
    expect(error).toMatchObject({ code: "MULTIRANK_ERR_DEPENDENCY_INSTALL", specs: ["a@1"], output: "npm error 404 a", name: "DependencyInstallError" });
    expect(error.message).toBe("npm install of a@1 failed\nnpm output (last lines):\nnpm error 404 a");
    expect(Object.isFrozen(error.specs)).toBe(true);
  });
});
