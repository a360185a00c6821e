/**
 * Reads the fenced code blocks of a Markdown file, for the test that runs every
 * block of the README (test/integration/readme-blocks.test.ts, where the
 * conventions are described). Pure functions: nothing here spawns or writes.
 */

/** How a block is covered, from a `<!-- readme-test: KIND reason -->` comment just above it. */
export type MarkerKind = "covered" | "sample" | "fragment";

/** One fenced code block. */
export interface CodeBlock {
  /** 1-based line of the opening fence in the Markdown file. */
  line: number;
  /** The fence's language, lower-cased ("" when none). */
  lang: string;
  /** The block's text, without the fences and without the fence's own indentation. */
  code: string;
  /** The marker comment on the nearest non-blank line above the fence, if any. */
  marker?: { kind: MarkerKind; reason: string };
}

/** One file of a block: `path` is null for code that names no file. */
export interface BlockFile {
  path: string | null;
  code: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/;
const MARKER = /^\s*<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->\s*$/;
// A first-column comment that is nothing but a relative path with an extension: "// functions/math.ts".
const FILE_COMMENT = /^\/\/ ((?:\.{1,2}\/)?[\w@.-]+(?:\/[\w@.-]+)*\.[A-Za-z]{1,4})\s*$/;

/** Every fenced block of `markdown`, in order. Throws on an unclosed fence or an unknown marker. */
export function extractBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang] = open as unknown as [string, string, string, string];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      if (l.trim().startsWith(fence[0]!.repeat(fence.length)) && l.trim().replace(/[`~]/g, "") === "") break;
      // A list item's block is indented like its fence; the indentation is not part of the code.
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    if (j === lines.length) throw new Error(`README line ${i + 1}: code fence never closed`);
    const block: CodeBlock = { line: i + 1, lang: lang.toLowerCase(), code: body.join("\n") + "\n" };
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === "") k--;
    const marker = k >= 0 ? MARKER.exec(lines[k]!) : null;
    if (marker) {
      const kind = marker[1]!;
      if (kind !== "covered" && kind !== "sample" && kind !== "fragment") throw new Error(`README line ${k + 1}: unknown readme-test marker "${kind}"`);
      block.marker = { kind, reason: marker[2]! };
    }
    blocks.push(block);
    i = j;
  }
  return blocks;
}

/**
 * Splits a block into files: a first-column comment holding only a relative
 * path (`// functions/math.ts`) starts a file of that name; code before any
 * such comment is one unnamed file.
 */
export function splitFiles(code: string): BlockFile[] {
  const files: BlockFile[] = [];
  let current: BlockFile | undefined;
  for (const line of code.split("\n")) {
    const named = FILE_COMMENT.exec(line);
    if (named) {
      current = { path: named[1]!, code: "" };
      files.push(current);
      continue;
    }
    if (!current) {
      current = { path: null, code: "" };
      files.push(current);
    }
    current.code += `${line}\n`;
  }
  return files.filter((f) => f.path !== null || f.code.trim() !== "");
}

/** The kind of a fence language: a program, a shell script, JSON, or something else. */
export function blockKind(lang: string): "program" | "shell" | "json" | "other" {
  if (["ts", "typescript", "js", "javascript", "mjs", "mts", "tsx"].includes(lang)) return "program";
  if (["sh", "bash", "shell", "console"].includes(lang)) return "shell";
  if (lang === "json") return "json";
  return "other";
}
