import { isEncodedImage } from "./images.js";

/**
 * JSON form of a result for text events: encoded images become fal's image
 * shape with a `data:` URL (`{ url, content_type, width, height }`), other
 * binary becomes base64, typed arrays become arrays of numbers, bigints strings.
 */
export function toJsonSafe(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== "object") return typeof value === "bigint" ? value.toString() : value;
  if (isEncodedImage(value)) {
    const { data, ...rest } = value;
    return { ...rest, url: `data:${value.content_type};base64,${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64")}` };
  }
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number | bigint>, (n) => (typeof n === "bigint" ? n.toString() : n));
  if (value instanceof Date) return value.toISOString();
  if (depth > 32) return null;
  if (Array.isArray(value)) return value.map((item) => toJsonSafe(item, depth + 1));
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toJsonSafe(v, depth + 1)]));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) if (item !== undefined) out[key] = toJsonSafe(item, depth + 1);
  return out;
}

/** One Server-Sent Event, `data: <json>\n\n`, as bytes ready for a socket. */
export function formatTextEvent(value: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(toJsonSafe(value))}\n\n`);
}

/** The value inside one `data: <json>\n\n` event (inverse of {@link formatTextEvent}). */
export function parseTextEvent(event: Uint8Array): unknown {
  const text = Buffer.from(event.buffer, event.byteOffset, event.byteLength).toString("utf8");
  const data = text
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
    .join("\n");
  return JSON.parse(data);
}
