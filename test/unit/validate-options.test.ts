import { describe, expect, it } from "vitest";
import { resolveBenchmarkOptions } from "../../src/benchmark/options.js";
import { resolveGroupOptions } from "../../src/collectives/options.js";
import { defineApp } from "../../src/gateway/app.js";
import { resolveRunnerOptions } from "../../src/runner/options.js";
import { abortSignal, boolean, check, integerAtLeast, integerInRange, nonEmptyString, nonNegativeInteger, nonNegativeNumber, oneOf, positiveInteger } from "../../src/util/validate.js";

const invalid = (message: string) => expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message });

describe("util/validate", () => {
  it("returns the value it accepts", () => {
    expect(positiveInteger(3, "f")).toBe(3);
    expect(nonNegativeInteger(0, "f")).toBe(0);
    expect(integerInRange(65535, "f", 0, 65535)).toBe(65535);
    expect(integerAtLeast(1024, "f", 1024)).toBe(1024);
    expect(nonNegativeNumber(0.5, "f")).toBe(0.5);
    expect(oneOf("ipc", "f", ["auto", "ipc"] as const)).toBe("ipc");
    expect(boolean(false, "f")).toBe(false);
    expect(nonEmptyString("x", "f")).toBe("x");
    const signal = new AbortController().signal;
    expect(abortSignal(signal, "f")).toBe(signal);
    expect(() => check(true, "never")).not.toThrow();
  });

  it.each<[string, () => unknown, string]>([
    ["positiveInteger", () => positiveInteger(0, "options.n"), "options.n must be a positive integer, got 0"],
    ["positiveInteger with a ceiling", () => positiveInteger(2000, "options.n", 1024), "options.n must be a positive integer up to 1024, got 2000"],
    ["positiveInteger of a string", () => positiveInteger("3", "--n"), '--n must be a positive integer, got "3"'],
    ["nonNegativeInteger", () => nonNegativeInteger(-1, "options.n"), "options.n must be a non-negative integer, got -1"],
    ["integerInRange", () => integerInRange(70000, "options.port", 0, 65535), "options.port must be an integer from 0 to 65535, got 70000"],
    ["integerAtLeast", () => integerAtLeast(10, "options.mib", 64, "an integer number of MiB"), "options.mib must be an integer number of MiB of at least 64, got 10"],
    ["nonNegativeNumber", () => nonNegativeNumber(Number.NaN, "options.x"), "options.x must be a non-negative number, got NaN"],
    ["oneOf", () => oneOf("udp", "options.transport", ["auto", "ipc", "tcp"]), 'options.transport must be "auto", "ipc" or "tcp", got "udp"'],
    ["boolean", () => boolean("yes", "options.stream"), 'options.stream must be a boolean, got "yes"'],
    ["nonEmptyString", () => nonEmptyString("", "options.host", "a host address"), 'options.host must be a host address, got ""'],
    ["abortSignal", () => abortSignal({}, "options.signal"), "options.signal must be an AbortSignal, got an object"],
    ["check", () => check(false, "options.a and options.b cannot both be set"), "options.a and options.b cannot both be set"],
  ])("%s throws a ValidationError naming the field and the value", (_name, call, message) => {
    expect(call).toThrow(invalid(message));
  });

  it("the four option resolvers fail in the one dialect", () => {
    expect(() => resolveRunnerOptions({ worker: "/w.ts", worldSize: 0 })).toThrow(invalid("options.worldSize must be a positive integer, got 0"));
    expect(() => resolveGroupOptions({ rank: 0, size: 0, masterAddr: "x", masterPort: 1 })).toThrow(invalid("options.size must be a positive integer, got 0"));
    expect(() => defineApp({ name: "t/v", worker: "/w.ts", concurrency: 0 })).toThrow(invalid("app t/v: options.concurrency must be a positive integer, got 0"));
    expect(() => resolveBenchmarkOptions({ worker: "w.ts", requests: 0 })).toThrow(invalid("options.requests must be a positive integer, got 0"));
  });
});
