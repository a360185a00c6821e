import { describe, expect, it } from "vitest";
import { blockKind, extractBlocks, splitFiles } from "../helpers/readme-blocks.js";

describe("README block extraction", () => {
  it("finds fenced blocks with their line, language and marker, indented ones included", () => {
    const md = ["# t", "", "<!-- readme-test: covered needs a GPU -->", "```sh", "nvidia-smi", "```", "- item:", "  ```ts", "  const a = 1;", "  ```", "```", "plain", "```"].join("\n");
    const blocks = extractBlocks(md);
    expect(blocks.map((b) => [b.line, b.lang, b.marker?.kind])).toEqual([
      [4, "sh", "covered"],
      [8, "ts", undefined],
      [11, "", undefined],
    ]);
    expect(blocks[0]!.marker!.reason).toBe("needs a GPU");
    expect(blocks[1]!.code).toBe("const a = 1;\n");
  });

  it("refuses an unknown marker and an unclosed fence", () => {
    expect(() => extractBlocks("<!-- readme-test: maybe -->\n```ts\nx\n```")).toThrow(/unknown readme-test marker/);
    expect(() => extractBlocks("```ts\nx\n")).toThrow(/line 1: code fence never closed/);
  });

  it("splits a block at first-column comments that name a file", () => {
    const files = splitFiles("// functions/math.ts\nexport const x = 1;\n\n// main.ts\nimport { x } from \"./functions/math.js\"; // not a path: a comment\n// or, without CUDA:\n");
    expect(files.map((f) => f.path)).toEqual(["functions/math.ts", "main.ts"]);
    expect(files[1]!.code).toContain("// or, without CUDA:");
    expect(splitFiles("console.log(1);\n").map((f) => f.path)).toEqual([null]);
  });

  it("classifies languages", () => {
    expect(["ts", "js", "bash", "json", "text", ""].map(blockKind)).toEqual(["program", "program", "shell", "json", "other", "other"]);
  });
});
