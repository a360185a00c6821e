import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/** A registry on 127.0.0.1 that serves a few package folders (packed with npm pack) and answers 404 to anything else. */
export interface TinyRegistry {
  /** For `npm_config_registry`, with a trailing slash. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `folders` (each a package folder with a package.json) as a registry,
 * so that a real `npm install` of them works without the network.
 */
export async function startTinyRegistry(folders: string[], work: string): Promise<TinyRegistry> {
  const packs = join(work, ".packs");
  mkdirSync(packs, { recursive: true });
  const known = new Map<string, { manifest: { name: string; version: string }; tgzName: string; tgz: Buffer }>();
  for (const dir of folders) {
    const tgzName = execFileSync("npm", ["pack", "--silent", "--pack-destination", packs], { cwd: dir, encoding: "utf8", env: { ...process.env, npm_config_cache: join(work, ".npm-cache") } })
      .trim()
      .split("\n")
      .at(-1)!;
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name: string; version: string };
    known.set(manifest.name, { manifest, tgzName, tgz: readFileSync(join(packs, tgzName)) });
  }
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? "").slice(1);
    const name = path.startsWith("@") ? path.split("/").slice(0, 2).join("/") : path.split("/")[0]!;
    const pkg = req.method === "GET" ? known.get(name) : undefined;
    if (pkg && path === name) {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const dist = {
        tarball: `${base}/${name}/-/${pkg.tgzName}`,
        shasum: createHash("sha1").update(pkg.tgz).digest("hex"),
        integrity: `sha512-${createHash("sha512").update(pkg.tgz).digest("base64")}`,
      };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ name, "dist-tags": { latest: pkg.manifest.version }, versions: { [pkg.manifest.version]: { ...pkg.manifest, dist } } }));
    } else if (pkg && path === `${name}/-/${pkg.tgzName}`) {
      res.setHeader("content-type", "application/octet-stream");
      res.end(pkg.tgz);
    } else {
      res.statusCode = 404;
      res.end("{}");
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
