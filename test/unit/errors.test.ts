import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as api from "../../src/index.js";
import { ERROR_CODES, MultirankError, RankError, RankExitError, RankGroupError, serializeError, TimeoutError, ValidationError } from "../../src/errors.js";

describe("error catalogue", () => {
  it("every exported error class has a code from the catalogue", () => {
    const classes = Object.values(api).filter((value) => typeof value === "function" && value.prototype instanceof Error);
    expect(classes.length).toBeGreaterThanOrEqual(12);
    const samples: MultirankError[] = [
      new api.ValidationError("x"),
      new api.AbortError(),
      new api.TimeoutError("x", 1),
      new api.SerializationError("x"),
      new api.MessageTooLargeError("x", 2, 1),
      new api.TransportError("x"),
      new api.StateError("x"),
      new api.RankError({ name: "E", message: "m" }, 0, "call"),
      new api.RankExitError(0, 1, null, ""),
      new api.RankGroupError("x", []),
      new api.CollectiveMismatchError("x"),
      new api.PeerLostError("x"),
      new api.NativeError("x"),
      new api.UndeclaredDependencyError("x", "/m.ts", "/m.ts", "x@1.0.0"),
      new api.BundleError("x", "/m.ts"),
      new api.DependencyInstallError("x", ["a@1"], ""),
      new api.EngineMissingError("x", "npx multirank engine install llama"),
      new api.RankHungError(0, 2000, 1000),
      new api.MemoryLimitError(0, 256, "heap", { exitCode: null, signal: "SIGABRT", stderrTail: "" }),
      new api.RemoteExecutionError({ functionName: "f", host: "local", remoteName: "E", remoteMessage: "m" }),
      new api.DataSyncError("x"),
      new api.VersionMismatchError("0.1.0", "0.2.0", "http://127.0.0.1:1"),
      new api.HostError({ url: "http://127.0.0.1:1", status: 0, message: "x" }),
      new api.ArtifactError("x"),
    ];
    for (const error of samples) expect(ERROR_CODES).toContain(error.code);
    expect(new Set(samples.map((e) => e.code)).size).toBe(ERROR_CODES.length);
  });

  it("a HostError keeps the server's code and matches the server's error class", () => {
    const error = new api.HostError({ url: "http://h", status: 422, message: "bad", code: "MULTIRANK_ERR_INVALID_ARGUMENT", kinds: api.errorKinds(new api.ValidationError("x")) });
    expect(error.code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
    expect(error).toBeInstanceOf(api.ValidationError);
    expect(error).toBeInstanceOf(api.HostError);
    expect(error).not.toBeInstanceOf(api.TimeoutError);
    expect(api.errorKinds(new api.ValidationError("x"))).toEqual(["MULTIRANK_ERR_INVALID_ARGUMENT", "MULTIRANK_ERR"]);
    expect(api.errorKinds(new api.AppNotFoundError("a"))).toEqual(["MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND", "MULTIRANK_ERR_GATEWAY", "MULTIRANK_ERR"]);
    const gateway = new api.HostError({ url: "http://h", status: 404, message: "no app", code: "MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND", kinds: api.errorKinds(new api.AppNotFoundError("a")) });
    expect(gateway).toBeInstanceOf(api.AppNotFoundError);
    expect(gateway).toBeInstanceOf(api.GatewayError);
    expect(gateway).not.toBeInstanceOf(api.ValidationError);
    expect(new api.VersionMismatchError("0.1.0", "0.2.0", "http://h").message).toMatch(/0\.1\.0.*0\.2\.0/);
  });

  it("every code used in the sources is documented in the README's error table", () => {
    const root = fileURLToPath(new URL("../../", import.meta.url));
    const codes = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith(".ts")) for (const m of readFileSync(path, "utf8").matchAll(/"(MULTIRANK_ERR_[A-Z_]+[A-Z])"/g)) codes.add(m[1]!);
      }
    };
    walk(join(root, "src"));
    const readme = readFileSync(join(root, "README.md"), "utf8");
    expect(codes.size).toBeGreaterThanOrEqual(ERROR_CODES.length);
    for (const code of codes) expect(readme, `README lacks ${code}`).toContain(`\`${code}\``);
  });

  it("instanceof works across copies of the module (branded, not prototype-based)", () => {
    const foreign = Object.assign(new Error("from another copy"), { code: "MULTIRANK_ERR_TIMEOUT" });
    // What another copy of errors.ts puts on its TimeoutError: one Symbol.for brand per class code.
    for (const brand of ["MULTIRANK_ERR_TIMEOUT", "MULTIRANK_ERR"]) Object.defineProperty(foreign, Symbol.for(`multirank.error.${brand}`), { value: true });
    expect(foreign instanceof TimeoutError).toBe(true);
    expect(foreign instanceof MultirankError).toBe(true);
    expect(foreign instanceof ValidationError).toBe(false);
    expect(new TimeoutError("t", 1) instanceof MultirankError).toBe(true);
    expect(new Error("plain") instanceof MultirankError).toBe(false);
  });

  it("the brand is the class's code, not its name: a same-named class elsewhere does not match, a minified copy still does", () => {
    // Another library's error class that happens to share a name (or a minifier's rename to one).
    const Foreign = { ValidationError: class ValidationError extends MultirankError {} }.ValidationError;
    const foreign = new Foreign("MULTIRANK_ERR_OTHER", "not ours");
    expect(foreign instanceof ValidationError).toBe(false);
    expect(foreign instanceof MultirankError).toBe(true);
    expect(foreign instanceof Foreign).toBe(true);
    // A minified copy of the package, whose ValidationError is now called `e`: the brand (the code) is unchanged.
    const Minified = class e extends MultirankError {
      static override readonly brand = "MULTIRANK_ERR_INVALID_ARGUMENT";
    };
    expect(new Minified(Minified.brand, "x") instanceof ValidationError).toBe(true);
    expect(new ValidationError("x") instanceof Minified).toBe(true);
    expect(new Minified(Minified.brand, "x") instanceof TimeoutError).toBe(false);
  });

  it("serializes name, code, stack and cause, and rebuilds a RankError that names rank and phase", () => {
    const original = Object.assign(new RangeError("too big", { cause: new Error("root") }), { code: "E_BIG" });
    const wire = serializeError(original);
    expect(wire).toMatchObject({ name: "RangeError", message: "too big", code: "E_BIG", cause: { name: "Error", message: "root" } });
    const rebuilt = new RankError(wire, 3, "call");
    expect(rebuilt).toMatchObject({ code: "MULTIRANK_ERR_RANK", rank: 3, phase: "call", remoteName: "RangeError", remoteCode: "E_BIG" });
    expect(rebuilt.message).toBe("rank 3 failed in call: RangeError: too big");
    expect(rebuilt.stack).toContain("--- on rank 3 ---");
    expect((rebuilt.cause as Error).message).toBe("root");
    expect(serializeError("plain string")).toMatchObject({ name: "NonError", message: "non-Error value thrown: plain string" });
  });

  it("RankExitError says how the rank ended and shows its stderr", () => {
    expect(new RankExitError(2, null, "SIGSEGV", "boom").message).toBe("rank 2 was killed by SIGSEGV\nlast stderr lines of rank 2:\nboom");
    expect(new RankExitError(1, 3, null, "").message).toBe("rank 1 exited with code 3");
    const group = new RankGroupError("2 ranks failed", [new RankExitError(0, 1, null, ""), new RankExitError(1, 2, null, "")]);
    expect(group.message).toContain("rank 0 exited with code 1");
    expect(group.message).toContain("rank 1 exited with code 2");
  });
});
