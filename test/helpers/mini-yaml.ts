/**
 * A strict parser for the block-style YAML our Kubernetes manifests are
 * written in (no YAML package is a dependency, and none is needed for this):
 * documents split by `---`, block mappings and sequences by indentation,
 * `# comments`, plain, single- and double-quoted scalars, and one-line flow
 * sequences of scalars (`["npx", "multirank"]`) or empty `{}` / `[]`.
 *
 * Anything else (anchors, aliases, tags, block scalars, multi-line flow,
 * tabs, duplicate keys) throws with the line number, so a manifest cannot use
 * a construct this parser would read differently from Kubernetes. Plain
 * scalars YAML 1.1 reads as booleans or octal (`yes`, `on`, `0400`) throw too:
 * Kubernetes' YAML reader would take them for something other than they look.
 */

interface Line {
  indent: number;
  text: string;
  no: number;
}

/** Parses every document of `source`. @throws {Error} naming the line, for anything outside the subset. */
export function parseYamlDocuments(source: string): unknown[] {
  const documents: Line[][] = [[]];
  source.split("\n").forEach((raw, index) => {
    const no = index + 1;
    const leading = /^[ \t]*/.exec(raw)![0];
    if (leading.includes("\t")) throw new Error(`line ${no}: a tab in the indentation`);
    const text = stripComment(raw, no).trimEnd();
    if (/^---\s*$/.test(text)) {
      documents.push([]);
      return;
    }
    if (text.trim() === "") return;
    documents.at(-1)!.push({ indent: text.length - text.trimStart().length, text: text.trim(), no });
  });
  return documents.filter((lines) => lines.length > 0).map((lines) => new Parser(lines).document());
}

function stripComment(raw: string, no: number): string {
  let quote: string | undefined;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      // A quote opens a scalar only at its start, after `: `, `- `, `[` or `, `.
      if (i === 0 || /[\s[,]/.test(raw[i - 1]!)) quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(raw[i - 1]!))) return raw.slice(0, i);
  }
  if (quote) throw new Error(`line ${no}: an unterminated quoted scalar (multi-line scalars are not supported)`);
  return raw;
}

class Parser {
  readonly #lines: Line[];
  #i = 0;

  constructor(lines: Line[]) {
    this.#lines = lines;
  }

  document(): unknown {
    const value = this.#block(this.#lines[0]!.indent);
    const rest = this.#lines[this.#i];
    if (rest) throw new Error(`line ${rest.no}: unexpected indentation`);
    return value;
  }

  #block(indent: number): unknown {
    const line = this.#lines[this.#i]!;
    return isSequenceItem(line.text) ? this.#sequence(indent) : this.#mapping(indent);
  }

  #sequence(indent: number): unknown[] {
    const items: unknown[] = [];
    for (let line = this.#lines[this.#i]; line && line.indent === indent && isSequenceItem(line.text); line = this.#lines[this.#i]) {
      const rest = line.text.slice(1);
      const content = rest.trimStart();
      if (content === "") {
        this.#i++;
        const next = this.#lines[this.#i];
        if (!next || next.indent <= indent) throw new Error(`line ${line.no}: an empty sequence item`);
        items.push(this.#block(next.indent));
      } else if (isSequenceItem(content) || splitKey(content, line.no)) {
        // `- key: value` (or `- - x`): a block that starts on the dash's line, at the column after it.
        this.#lines[this.#i] = { indent: indent + 1 + (rest.length - content.length), text: content, no: line.no };
        items.push(this.#block(this.#lines[this.#i]!.indent));
      } else {
        items.push(scalar(content, line.no));
        this.#i++;
      }
    }
    return items;
  }

  #mapping(indent: number): Record<string, unknown> {
    const map: Record<string, unknown> = {};
    for (let line = this.#lines[this.#i]; line && line.indent === indent; line = this.#lines[this.#i]) {
      if (isSequenceItem(line.text)) break;
      const entry = splitKey(line.text, line.no);
      if (!entry) throw new Error(`line ${line.no}: expected "key: value", got ${JSON.stringify(line.text)}`);
      if (Object.hasOwn(map, entry.key)) throw new Error(`line ${line.no}: duplicate key ${entry.key}`);
      this.#i++;
      if (entry.value !== "") {
        map[entry.key] = scalar(entry.value, line.no);
        continue;
      }
      const next = this.#lines[this.#i];
      if (next && next.indent > indent) map[entry.key] = this.#block(next.indent);
      // YAML lets a sequence under a key start at the key's own column.
      else if (next && next.indent === indent && isSequenceItem(next.text)) map[entry.key] = this.#sequence(indent);
      else map[entry.key] = null;
    }
    const stray = this.#lines[this.#i];
    if (stray && stray.indent > indent) throw new Error(`line ${stray.no}: unexpected indentation`);
    return map;
  }
}

function isSequenceItem(text: string): boolean {
  return text === "-" || text.startsWith("- ");
}

/** `key: value` or `key:`, the key plain or quoted; undefined when the text is not a mapping entry. */
function splitKey(text: string, no: number): { key: string; value: string } | undefined {
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = text.indexOf(text[0]!, 1);
    if (end < 0 || !/^:(\s|$)/.test(text.slice(end + 1))) return undefined;
    return { key: scalar(text.slice(0, end + 1), no) as string, value: text.slice(end + 2).trim() };
  }
  if (/^[[{]/.test(text)) return undefined;
  const m = /^([^\s:#][^:#]*?)\s*:(\s+(.*))?$/.exec(text);
  return m ? { key: m[1]!, value: (m[3] ?? "").trim() } : undefined;
}

const YAML11_BOOLEAN = /^(y|n|yes|no|on|off)$/i;

function scalar(text: string, no: number): unknown {
  if (text.startsWith('"')) {
    if (!text.endsWith('"') || text.length < 2) throw new Error(`line ${no}: a quoted scalar with text after it`);
    return JSON.parse(text) as string;
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`line ${no}: a quoted scalar with text after it`);
    return text.slice(1, -1).replaceAll("''", "'");
  }
  if (text === "{}") return {};
  if (text === "[]") return [];
  if (text.startsWith("[")) {
    if (!text.endsWith("]") || /[[\]{}]/.test(text.slice(1, -1))) throw new Error(`line ${no}: only one-line flow sequences of scalars are supported`);
    return splitFlow(text.slice(1, -1), no).map((item) => scalar(item, no));
  }
  if (/^[{|>&*!%@`]/.test(text)) throw new Error(`line ${no}: ${JSON.stringify(text[0])} (flow mappings, block scalars, anchors, aliases, tags) is not supported`);
  if (YAML11_BOOLEAN.test(text)) throw new Error(`line ${no}: ${text} is a boolean to Kubernetes' YAML 1.1 reader; quote it or write true/false`);
  if (text === "true") return true;
  if (text === "false") return false;
  if (text === "null" || text === "~") return null;
  if (/^[-+]?0\d+$/.test(text)) throw new Error(`line ${no}: ${text} is octal to YAML 1.1 and decimal to YAML 1.2; write it in decimal without the leading zero`);
  if (/^[-+]?\d+$/.test(text) || /^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text);
  if (/:\s|\s#/.test(text)) throw new Error(`line ${no}: a plain scalar holding ": " or " #"; quote it`);
  return text;
}

function splitFlow(body: string, no: number): string[] {
  const items: string[] = [];
  let current = "";
  let quote: string | undefined;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (quote) {
      current += c;
      if (c === "\\" && quote === '"') current += body[++i] ?? "";
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
      current += c;
    } else if (c === ",") {
      items.push(current.trim());
      current = "";
    } else current += c;
  }
  if (quote) throw new Error(`line ${no}: an unterminated quoted scalar in a flow sequence`);
  if (current.trim() !== "") items.push(current.trim());
  if (items.some((item) => item === "")) throw new Error(`line ${no}: an empty item in a flow sequence`);
  return items;
}
