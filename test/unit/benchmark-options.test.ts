import { describe, expect, it } from "vitest";
import { BENCHMARK_DEFAULTS, resolveBenchmarkOptions, type BenchmarkOptions } from "../../src/benchmark/options.js";

const invalid = (field: string) => expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining(field) });

describe("resolveBenchmarkOptions", () => {
  it("fills in the documented defaults", () => {
    const resolved = resolveBenchmarkOptions({ worker: "w.ts" });
    expect(resolved.settings).toEqual({ worldSizes: [1, 2, 4], requests: 200, concurrency: 1, warmup: 10, payloadBytes: 0, payloadKind: "default", stream: false, quick: false });
    expect(resolved.timeout).toBe(60);
    expect(resolved.startTimeout).toBe(300);
    expect(resolved.setupArgs).toEqual({});
    expect(Object.isFrozen(BENCHMARK_DEFAULTS)).toBe(true);
    expect(Object.isFrozen(BENCHMARK_DEFAULTS.worldSizes)).toBe(true);
  });

  it("quick changes only the defaults of requests and warmup", () => {
    expect(resolveBenchmarkOptions({ worker: "w.ts", quick: true }).settings).toMatchObject({ requests: 20, warmup: 2, quick: true });
    expect(resolveBenchmarkOptions({ worker: "w.ts", quick: true, requests: 7, warmup: 0 }).settings).toMatchObject({ requests: 7, warmup: 0 });
  });

  it("builds payloads: tiny by default, a shared Buffer for payloadBytes, a custom value or function", () => {
    expect(resolveBenchmarkOptions({ worker: "w.ts" }).payloadFor(3)).toEqual({ seq: 3 });
    const bytes = resolveBenchmarkOptions({ worker: "w.ts", payloadBytes: 16 });
    const a = bytes.payloadFor(0) as { seq: number; data: Buffer };
    const b = bytes.payloadFor(1) as { seq: number; data: Buffer };
    expect(a.data.length).toBe(16);
    expect(b.data).toBe(a.data);
    expect(bytes.settings.payloadKind).toBe("bytes");
    const custom = resolveBenchmarkOptions({ worker: "w.ts", payload: { prompt: "hi" } });
    expect(custom.payloadFor(5)).toEqual({ prompt: "hi" });
    expect(custom.settings.payloadKind).toBe("custom");
    expect(resolveBenchmarkOptions({ worker: "w.ts", payload: (seq: number) => ({ n: seq * 2 }) }).payloadFor(4)).toEqual({ n: 8 });
  });

  it("copies worldSizes and setupArgs so later changes by the caller do not leak in", () => {
    const worldSizes = [1, 2];
    const setupArgs = { model: "tiny" };
    const resolved = resolveBenchmarkOptions({ worker: new URL("file:///w.ts"), worldSizes, setupArgs });
    worldSizes.push(8);
    setupArgs.model = "big";
    expect(resolved.settings.worldSizes).toEqual([1, 2]);
    expect(resolved.setupArgs).toEqual({ model: "tiny" });
  });

  it.each<[string, Partial<BenchmarkOptions>, string]>([
    ["a missing worker", { worker: "" }, "options.worker"],
    ["empty worldSizes", { worldSizes: [] }, "options.worldSizes"],
    ["a zero world size", { worldSizes: [1, 0] }, "options.worldSizes[1]"],
    ["a fractional world size", { worldSizes: [1.5] }, "options.worldSizes[0]"],
    ["zero requests", { requests: 0 }, "options.requests"],
    ["fractional concurrency", { concurrency: 1.5 }, "options.concurrency"],
    ["negative warmup", { warmup: -1 }, "options.warmup"],
    ["negative payloadBytes", { payloadBytes: -1 }, "options.payloadBytes"],
    ["payload and payloadBytes", { payload: {}, payloadBytes: 8 }, "options.payload and options.payloadBytes"],
    ["a non-boolean stream", { stream: "yes" as unknown as boolean }, "options.stream"],
    ["a zero timeout", { timeout: 0 }, "options.timeout"],
    ["an infinite startTimeout", { startTimeout: Number.POSITIVE_INFINITY }, "options.startTimeout"],
    ["setupArgs with timeout", { setupArgs: { timeout: 5 } }, "options.setupArgs"],
    ["an array as setupArgs", { setupArgs: [] as unknown as Record<string, unknown> }, "options.setupArgs"],
    ["a signal that is not one", { signal: {} as AbortSignal }, "options.signal"],
    ["an onProgress that is not a function", { onProgress: 1 as unknown as () => void }, "options.onProgress"],
  ])("rejects %s, naming the field", (_what, options, field) => {
    expect(() => resolveBenchmarkOptions({ worker: "w.ts", ...options })).toThrow(invalid(field));
  });
});
