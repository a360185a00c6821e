/** Persistent data for functions: the data root, path checks, hashing a tree, and syncDir to this machine and to a server in-process. */
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { KeyChecker } from "../../src/gateway/auth.js";
import { UnauthorizedError } from "../../src/gateway/errors.js";
import { dataPath, dataRoot, DataSyncError, hashTree, registerDataRoutes, resolveDataPath, syncDir, syncDirLocal, syncDirRemote } from "../../src/functions/index.js";

const sha = (text: string): string => createHash("sha256").update(text).digest("hex");

let scratch: string;
beforeEach(async () => {
  scratch = await mkdtemp(join(tmpdir(), "multirank-data-"));
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(scratch, { recursive: true, force: true });
});

/** Every file under `dir`, relative, with its content; a missing dir is empty. */
async function listing(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (at: string, prefix: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(join(at, entry.name), rel);
      else out[rel] = await readFile(join(at, entry.name), "utf8");
    }
  };
  await walk(dir, "");
  return out;
}

async function makeSource(): Promise<string> {
  const src = join(scratch, "src");
  await mkdir(join(src, "nested", "deeper"), { recursive: true });
  await writeFile(join(src, "a.txt"), "alpha");
  await writeFile(join(src, "nested", "b.bin"), "beta");
  await writeFile(join(src, "nested", "deeper", "c.txt"), "gamma");
  await writeFile(join(src, "empty"), "");
  return src;
}

describe("dataRoot and dataPath", () => {
  it("reads MULTIRANK_DATA_DIR, made absolute, or defaults to ~/.local/share/multirank", () => {
    expect(dataRoot({ MULTIRANK_DATA_DIR: "/srv/data" })).toBe("/srv/data");
    expect(dataRoot({ MULTIRANK_DATA_DIR: "rel/dir" })).toBe(join(process.cwd(), "rel/dir"));
    expect(dataRoot({ HOME: "/home/u" })).toBe("/home/u/.local/share/multirank");
    expect(dataRoot({ HOME: "/home/u", MULTIRANK_DATA_DIR: "" })).toBe("/home/u/.local/share/multirank");
  });

  it("dataPath maps /data/... under the root this process was given", () => {
    vi.stubEnv("MULTIRANK_DATA_DIR", scratch);
    expect(dataPath("/data/models")).toBe(join(scratch, "models"));
    expect(() => dataPath("/data/../x")).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
  });
});

describe("resolveDataPath", () => {
  it("maps fal's /data convention, relative paths and absolute paths inside the root", () => {
    const root = join(scratch, "root");
    expect(resolveDataPath(root, "/data/models")).toBe(join(root, "models"));
    expect(resolveDataPath(root, "/data")).toBe(root);
    expect(resolveDataPath(root, "/data/")).toBe(root);
    expect(resolveDataPath(root, "models/x")).toBe(join(root, "models", "x"));
    expect(resolveDataPath(root, "models/../x")).toBe(join(root, "x"));
    expect(resolveDataPath(root, join(root, "abs"))).toBe(join(root, "abs"));
  });

  it.each(["../x", "/data/../../etc", "/etc/passwd", "/database", "a\0b", "", "models/../../x"])("refuses %j, naming it", (path) => {
    const root = join(scratch, "root");
    expect(() => resolveDataPath(root, path)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining(JSON.stringify(path)) }));
  });

  it("refuses a path through a symlink inside the root that points outside it, existing or not below it", async () => {
    const root = join(scratch, "root");
    await mkdir(join(root, "inside"), { recursive: true });
    await mkdir(join(scratch, "elsewhere"));
    await symlink(join(scratch, "elsewhere"), join(root, "out"));
    await symlink(join(root, "inside"), join(root, "in"));
    await symlink(join(scratch, "nowhere"), join(root, "dangling"));
    for (const path of ["/data/out", "out/x", "out/not/yet/there", "dangling/x", "dangling"]) {
      expect(() => resolveDataPath(root, path), path).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    }
    // A link that stays inside is fine.
    expect(resolveDataPath(root, "in/x")).toBe(join(root, "in", "x"));
  });

  it("refuses a relative root", () => {
    expect(() => resolveDataPath("relative", "x")).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
  });
});

describe("hashTree", () => {
  it("lists regular files with POSIX paths, size, sha256 and mode, sorted, following links inside", async () => {
    const src = await makeSource();
    await chmod(join(src, "a.txt"), 0o755);
    await symlink(join(src, "nested", "b.bin"), join(src, "link-to-b"));
    await symlink(join(src, "nested", "deeper"), join(src, "link-dir"));
    const tree = await hashTree(src);
    expect(tree.map((e) => e.path)).toEqual(["a.txt", "empty", "link-dir/c.txt", "link-to-b", "nested/b.bin", "nested/deeper/c.txt"]);
    expect(tree[0]).toEqual({ path: "a.txt", size: 5, sha256: sha("alpha"), mode: 0o755 });
    expect(tree.find((e) => e.path === "link-to-b")).toMatchObject({ size: 4, sha256: sha("beta") });
    expect(tree.find((e) => e.path === "empty")).toMatchObject({ size: 0, sha256: sha("") });
    expect(tree.special).toEqual([]);
  });

  it("refuses a symlink that points outside the directory, and a link loop", async () => {
    const src = await makeSource();
    await writeFile(join(scratch, "secret"), "s");
    await symlink(join(scratch, "secret"), join(src, "nested", "leak"));
    await expect(hashTree(src)).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("nested/leak") });
    await rm(join(src, "nested", "leak"));
    await symlink(src, join(src, "nested", "loop"));
    await expect(hashTree(src)).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("loop") });
  });

  it("reports sockets and dangling links instead of skipping them silently", async () => {
    const src = await makeSource();
    await symlink(join(src, "gone"), join(src, "dangling"));
    const socketPath = join(src, "nested", "sock");
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const tree = await hashTree(src);
      expect(tree.special).toEqual([
        { path: "dangling", kind: "dangling-symlink" },
        { path: "nested/sock", kind: "socket" },
      ]);
      expect(tree.map((e) => e.path)).not.toContain("nested/sock");
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("refuses a localDir that is not a directory", async () => {
    await writeFile(join(scratch, "file"), "x");
    await expect(hashTree(join(scratch, "file"))).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    await expect(hashTree(join(scratch, "missing"))).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
  });
});

describe("syncDirLocal", () => {
  it("copies a nested tree, then skips every unchanged file, then sends only the changed one", async () => {
    const src = await makeSource();
    const root = join(scratch, "root");
    const first = await syncDirLocal(src, "/data/models", { root });
    expect(first.path).toBe(join(root, "models"));
    expect(first.uploaded).toEqual(["a.txt", "empty", "nested/b.bin", "nested/deeper/c.txt"]);
    expect(first.skipped).toEqual([]);
    expect(await listing(join(root, "models"))).toEqual(await listing(src));

    const second = await syncDirLocal(src, "/data/models", { root });
    expect(second).toMatchObject({ uploaded: [], skipped: ["a.txt", "empty", "nested/b.bin", "nested/deeper/c.txt"] });

    await writeFile(join(src, "nested", "b.bin"), "beta, changed");
    await writeFile(join(src, "nested", "new.txt"), "new");
    const third = await syncDirLocal(src, "models", { root });
    expect(third.uploaded).toEqual(["nested/b.bin", "nested/new.txt"]);
    expect(third.skipped).toEqual(["a.txt", "empty", "nested/deeper/c.txt"]);
    expect(await listing(join(root, "models"))).toEqual(await listing(src));
    // Atomic writes leave no temporary files behind.
    expect(Object.keys(await listing(root)).filter((p) => p.includes(".multirank-"))).toEqual([]);
  });

  it("keeps the mode, and a mode change alone sends the file again", async () => {
    const src = await makeSource();
    const root = join(scratch, "root");
    await chmod(join(src, "a.txt"), 0o750);
    await syncDirLocal(src, "m", { root });
    expect((await stat(join(root, "m", "a.txt"))).mode & 0o777).toBe(0o750);
    await chmod(join(src, "a.txt"), 0o640);
    const again = await syncDirLocal(src, "m", { root });
    expect(again.uploaded).toEqual(["a.txt"]);
    expect((await stat(join(root, "m", "a.txt"))).mode & 0o777).toBe(0o640);
  });

  it("replaces a target that differs only in content of the same size", async () => {
    const src = await makeSource();
    const root = join(scratch, "root");
    await mkdir(join(root, "m"), { recursive: true });
    await writeFile(join(root, "m", "a.txt"), "ALPHA");
    await chmod(join(root, "m", "a.txt"), 0o644);
    const result = await syncDirLocal(src, "m", { root });
    expect(result.uploaded).toContain("a.txt");
    expect(await readFile(join(root, "m", "a.txt"), "utf8")).toBe("alpha");
  });

  it.each(["../escape", "/data/../../escape", join(tmpdir(), "elsewhere")])("refuses remoteDir %j and writes nothing", async (remoteDir) => {
    const src = await makeSource();
    const root = join(scratch, "root");
    await expect(syncDirLocal(src, remoteDir, { root })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    expect((await readdir(scratch)).sort()).toEqual(["src"]);
  });

  it("refuses a target directory reached through a symlink that leaves the root", async () => {
    const src = await makeSource();
    const root = join(scratch, "root");
    await mkdir(join(scratch, "outside"));
    await mkdir(root);
    await symlink(join(scratch, "outside"), join(root, "link"));
    await expect(syncDirLocal(src, "/data/link/models", { root })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" });
    expect(await readdir(join(scratch, "outside"))).toEqual([]);
  });

  it("stops with AbortError when the signal aborts", async () => {
    const src = await makeSource();
    const controller = new AbortController();
    controller.abort(new Error("enough"));
    await expect(syncDirLocal(src, "m", { root: join(scratch, "root"), signal: controller.signal })).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });
  });

  it("syncDir without a host writes under MULTIRANK_DATA_DIR", async () => {
    const src = await makeSource();
    vi.stubEnv("MULTIRANK_DATA_DIR", join(scratch, "env-root"));
    const result = await syncDir(src, "/data/models");
    expect(result.path).toBe(join(scratch, "env-root", "models"));
    expect(result.path).toBe(dataPath("/data/models"));
    expect(Object.keys(await listing(result.path))).toHaveLength(4);
  });
});

describe("data routes and syncDirRemote", () => {
  const ADMIN = "admin-1";
  let server: FastifyInstance;
  let url: string;
  let serverRoot: string;
  let serverParent: string;

  beforeAll(async () => {
    serverParent = await mkdtemp(join(tmpdir(), "multirank-data-server-"));
    serverRoot = join(serverParent, "root");
    const admins = new KeyChecker([ADMIN]);
    server = Fastify({ logger: false });
    registerDataRoutes(server, {
      root: serverRoot,
      maxFileBytes: 1024,
      authorizeAdmin: (request) => {
        if (!admins.check(request.headers.authorization)) throw new UnauthorizedError("an admin key is required");
      },
    });
    url = await server.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await server?.close();
    await rm(serverParent, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await rm(serverRoot, { recursive: true, force: true });
  });

  const put = (query: Record<string, string>, body: string, key = ADMIN): Promise<Response> =>
    fetch(`${url}/fn/data/file?${new URLSearchParams(query)}`, {
      method: "PUT",
      headers: { authorization: `Key ${key}`, "content-type": "application/octet-stream" },
      body,
    });

  it("plans, uploads what is missing, then skips what the server holds", async () => {
    const src = await makeSource();
    const first = await syncDirRemote(src, "/data/models", { url, adminKey: ADMIN });
    expect(first.path).toBe(join(serverRoot, "models"));
    expect(first.uploaded).toEqual(["a.txt", "empty", "nested/b.bin", "nested/deeper/c.txt"]);
    expect(await listing(join(serverRoot, "models"))).toEqual(await listing(src));

    const second = await syncDir(src, "/data/models", { host: { url, adminKey: ADMIN } });
    expect(second).toMatchObject({ uploaded: [], skipped: ["a.txt", "empty", "nested/b.bin", "nested/deeper/c.txt"] });

    await writeFile(join(src, "a.txt"), "alpha, changed");
    const third = await syncDirRemote(src, "models", { url, adminKey: ADMIN });
    expect(third.uploaded).toEqual(["a.txt"]);
    expect(await readFile(join(serverRoot, "models", "a.txt"), "utf8")).toBe("alpha, changed");
    expect(Object.keys(await listing(serverRoot)).filter((p) => p.includes(".multirank-"))).toEqual([]);
  });

  it("a wrong or missing admin key answers 401 and writes nothing", async () => {
    const src = await makeSource();
    await expect(syncDirRemote(src, "/data/models", { url, adminKey: "wrong" })).rejects.toMatchObject({
      code: "MULTIRANK_ERR_DATA_SYNC",
      status: 401,
      remoteCode: "MULTIRANK_ERR_GATEWAY_UNAUTHORIZED",
    });
    await expect(syncDirRemote(src, "/data/models", { url })).rejects.toBeInstanceOf(DataSyncError);
    const response = await put({ remoteDir: "m", path: "x", sha256: sha("x") }, "x", "wrong");
    expect(response.status).toBe(401);
    expect(await listing(serverRoot)).toEqual({});
  });

  it.each([
    ["remoteDir", { remoteDir: "../escape", path: "x" }],
    ["remoteDir", { remoteDir: "/data/../../escape", path: "x" }],
    ["remoteDir", { remoteDir: "/tmp", path: "x" }],
    ["path", { remoteDir: "m", path: "../../escape" }],
    ["path", { remoteDir: "m", path: "/etc/passwd" }],
    ["path", { remoteDir: "m", path: "a/./b" }],
  ])("traversal in %s (%j) answers 4xx and writes nothing", async (_field, query) => {
    const response = await put({ ...query, sha256: sha("x") }, "x");
    expect(response.status).toBe(400);
    expect(await listing(serverParent)).toEqual({});
  });

  it("syncDirRemote to a remoteDir outside the root fails with the server's 400 and writes nothing", async () => {
    const src = await makeSource();
    await expect(syncDirRemote(src, "../escape", { url, adminKey: ADMIN })).rejects.toMatchObject({ code: "MULTIRANK_ERR_DATA_SYNC", status: 400 });
    expect(await listing(serverParent)).toEqual({});
  });

  it("refuses an upload through a symlink in the server's root that points out", async () => {
    await mkdir(serverRoot, { recursive: true });
    const outside = await mkdtemp(join(tmpdir(), "multirank-data-outside-"));
    try {
      await symlink(outside, join(serverRoot, "link"));
      const response = await put({ remoteDir: "/data/link", path: "x", sha256: sha("x") }, "x");
      expect(response.status).toBe(400);
      expect(await readdir(outside)).toEqual([]);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it("a body whose sha256 differs answers 422 and leaves no file, not even a temporary one", async () => {
    const response = await put({ remoteDir: "m", path: "dir/x.txt", sha256: sha("something else") }, "x");
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({ code: "MULTIRANK_ERR_GATEWAY_BAD_REQUEST" });
    expect(await listing(serverRoot)).toEqual({});
  });

  it("an upload over maxFileBytes answers 413 and leaves nothing", async () => {
    const big = "x".repeat(2048);
    const response = await put({ remoteDir: "m", path: "big", sha256: sha(big) }, big);
    expect(response.status).toBe(413);
    expect(await listing(serverRoot)).toEqual({});
  });

  it("a streamed file over maxFileBytes fails the sync with 413, and a streamed body with a wrong key gets its 401", async () => {
    const src = await makeSource();
    await writeFile(join(src, "nested", "big.bin"), Buffer.alloc(4096, 7));
    await expect(syncDirRemote(src, "m", { url, adminKey: ADMIN })).rejects.toMatchObject({ code: "MULTIRANK_ERR_DATA_SYNC", status: 413 });
    expect(Object.keys(await listing(serverRoot)).filter((p) => p.includes("big") || p.includes(".multirank-"))).toEqual([]);

    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 4 * 1024 * 1024) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const response = await fetch(`${url}/fn/data/file?${new URLSearchParams({ remoteDir: "m", path: "streamed", sha256: sha("x") })}`, {
      method: "PUT",
      headers: { authorization: "Key wrong", "content-type": "application/octet-stream" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(401);
    expect(Object.keys(await listing(serverRoot))).not.toContain("m/streamed");
  });

  it("a malformed plan answers 422 naming the field", async () => {
    const response = await fetch(`${url}/fn/data/plan`, {
      method: "POST",
      headers: { authorization: `Key ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify({ remoteDir: "m", files: [{ path: "a", size: -1, sha256: sha("a") }] }),
    });
    expect(response.status).toBe(422);
    expect(JSON.stringify(await response.json())).toContain("files[0].size");
  });

  it("refuses bad client options before sending anything", async () => {
    const src = await makeSource();
    await expect(syncDirRemote(src, "m", { url: "ftp://x" })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("options.url") });
    await expect(syncDir(src, "m", { host: { url, adminKey: ADMIN }, root: "/x" })).rejects.toMatchObject({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining("options.root") });
  });
});
