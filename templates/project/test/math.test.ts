import { describe, expect, it } from "vitest";
import { sumNumbers } from "../functions/math.js";

describe("sumNumbers", () => {
  // .local() runs the function in this process, without its environment: the
  // project's own is-number (a devDependency) stands in for the function's.
  it("adds what looks like a number", async () => {
    expect(await sumNumbers.local({ values: [1, "2", "x", 4.5] })).toEqual({ sum: 7.5, counted: 3 });
  });

  it("counts nothing in an empty list", async () => {
    expect(await sumNumbers.local({ values: [] })).toEqual({ sum: 0, counted: 0 });
  });
});
