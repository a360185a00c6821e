#!/usr/bin/env node
// Adds the platform-specific optional packages npm leaves out of
// package-lock.json (npm/cli#4828): `npm install` on Linux records only the
// Linux builds of, say, @rollup/rollup-*, while `npm ci` insists on an entry
// for every platform named in optionalDependencies and refuses to install.
// Run after `npm install` changes the lock: node scripts/complete-lockfile.mjs
//
// A registry mirror may not carry other platforms' builds at all (that is why
// npm left them out). Such entries get the platform fields read from the
// package name and no integrity: npm never fetches a package whose os/cpu/libc
// do not match the machine, so it only needs to know it is not for this one.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const OSES = ["android", "darwin", "freebsd", "linux", "netbsd", "openbsd", "openharmony", "sunos", "win32", "aix"];
const CPUS = ["arm64", "arm", "x64", "ia32", "loong64", "ppc64", "riscv64", "s390x", "mips64el"];

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const packages = lock.packages;
let added = 0;

for (const [path, entry] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    // Hoisted to the top level unless already nested under the dependent.
    const nested = `${path}/node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (packages[nested] || packages[hoisted]) continue;
    const meta = view(name, version) ?? platformFromName(name);
    if (!meta) throw new Error(`${name}@${version}: not in the registry, and its platform cannot be read from its name`);
    const record = { version };
    if (meta["dist.integrity"]) record.integrity = meta["dist.integrity"];
    for (const field of ["cpu", "os", "libc"]) if (meta[field]) record[field] = [].concat(meta[field]);
    if (meta.license) record.license = meta.license;
    record.optional = true;
    if (meta.engines) record.engines = meta.engines;
    packages[hoisted] = record;
    added++;
    process.stderr.write(`added ${hoisted}@${version}\n`);
  }
}

function view(name, version) {
  try {
    const out = execFileSync("npm", ["view", `${name}@${version}`, "--json", "dist.integrity", "os", "cpu", "libc", "license", "engines"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return out.trim() ? JSON.parse(out) : undefined;
  } catch {
    return undefined;
  }
}

/** `@rollup/rollup-linux-x64-musl` -> { os: ["linux"], cpu: ["x64"], libc: ["musl"] }. */
function platformFromName(name) {
  const parts = name.split("/").pop().split("-");
  const os = parts.find((p) => OSES.includes(p));
  const cpu = parts.find((p) => CPUS.includes(p));
  if (!os || !cpu) return undefined;
  const meta = { os: [os], cpu: [cpu] };
  if (os === "linux") meta.libc = [parts.includes("musl") ? "musl" : "glibc"];
  return meta;
}

// npm keeps packages sorted by path; keep the file stable for diffs.
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
process.stderr.write(`${added} optional package(s) added to package-lock.json\n`);
