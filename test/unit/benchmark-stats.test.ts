import { describe, expect, it } from "vitest";
import { percentile, ratePerSecond, summarize } from "../../src/benchmark/stats.js";

describe("percentile (nearest rank)", () => {
  const ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

  it("returns the sample at rank ceil(p/100 * n)", () => {
    expect(percentile(ten, 50)).toBe(50); // rank 5
    expect(percentile(ten, 90)).toBe(90); // rank 9
    expect(percentile(ten, 99)).toBe(100); // rank ceil(9.9) = 10
    expect(percentile(ten, 51)).toBe(60); // rank ceil(5.1) = 6
    expect(percentile(ten, 100)).toBe(100);
    expect(percentile(ten, 0)).toBe(10); // rank 1
    expect(percentile([10, 20, 30, 40], 50)).toBe(20);
    expect(percentile([10, 20, 30, 40], 75)).toBe(30);
    expect(percentile([10, 20, 30, 40], 76)).toBe(40);
  });

  it("never interpolates: the answer is always a measured sample", () => {
    expect(percentile([1, 2], 50)).toBe(1);
    expect(percentile([1, 1000], 60)).toBe(1000);
  });

  it("is not pushed up a rank by floating-point error", () => {
    // 0.29 * 100 = 28.999999999999996 and 0.7 * 10 = 7.000000000000001 in floats.
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 29)).toBe(29);
    expect(percentile(ten, 70)).toBe(70);
  });

  it("handles a single sample", () => {
    expect(percentile([7], 0)).toBe(7);
    expect(percentile([7], 99)).toBe(7);
  });

  it("rejects empty samples and p outside [0, 100] with a ValidationError", () => {
    expect(() => percentile([], 50)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    expect(() => percentile([1], -1)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    expect(() => percentile([1], 100.5)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    expect(() => percentile([1], Number.NaN)).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
  });
});

describe("summarize", () => {
  it("sorts a copy and gives count, p50, p90, p99, mean, min and max", () => {
    const samples = [5, 1, 4, 2, 3];
    expect(summarize(samples)).toEqual({ count: 5, p50: 3, p90: 5, p99: 5, mean: 3, min: 1, max: 5 });
    expect(samples).toEqual([5, 1, 4, 2, 3]);
  });

  it("on 1..200 gives the nearest-rank percentiles exactly", () => {
    const samples = Array.from({ length: 200 }, (_, i) => 200 - i);
    expect(summarize(samples)).toEqual({ count: 200, p50: 100, p90: 180, p99: 198, mean: 100.5, min: 1, max: 200 });
  });

  it("sorts numerically, not as strings", () => {
    expect(summarize([10, 9, 100]).min).toBe(9);
    expect(summarize([10, 9, 100]).max).toBe(100);
  });

  it("rejects empty samples and non-finite values", () => {
    expect(() => summarize([])).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
    expect(() => summarize([1, Number.POSITIVE_INFINITY])).toThrow(expect.objectContaining({ code: "MULTIRANK_ERR_INVALID_ARGUMENT" }));
  });
});

describe("ratePerSecond", () => {
  it("is count per second, and 0 when no time passed", () => {
    expect(ratePerSecond(500, 250)).toBe(2000);
    expect(ratePerSecond(3, 1500)).toBe(2);
    expect(ratePerSecond(10, 0)).toBe(0);
  });
});
