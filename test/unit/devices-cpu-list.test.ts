import { describe, expect, it } from "vitest";
import { formatCpuList, parseCpuList, splitCpus } from "../../src/devices/index.js";

describe("cpu lists", () => {
  it("parses kernel cpulists", () => {
    expect(parseCpuList("0-2,8,10-11\n")).toEqual([0, 1, 2, 8, 10, 11]);
    expect(parseCpuList("3,1,1")).toEqual([1, 3]);
    expect(parseCpuList("")).toEqual([]);
    expect(() => parseCpuList("1-")).toThrow(RangeError);
    expect(() => parseCpuList("3-1")).toThrow(RangeError);
  });

  it("formats runs", () => {
    expect(formatCpuList([8, 0, 1, 2, 10, 11])).toBe("0-2,8,10-11");
    expect(formatCpuList([])).toBe("");
  });

  it("splits evenly, contiguously, and round robin when short", () => {
    expect(splitCpus([0, 1], 2)).toEqual([[0], [1]]);
    expect(splitCpus([0, 1, 2, 3, 4, 5, 6], 3)).toEqual([[0, 1, 2], [3, 4], [5, 6]]);
    expect(splitCpus([0, 1], 3)).toEqual([[0], [1], [0]]);
    expect(splitCpus([], 2)).toEqual([[], []]);
    expect(splitCpus([0], 0)).toEqual([]);
  });
});
