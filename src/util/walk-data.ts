/**
 * Visits the values inside plain data (objects with Object's prototype,
 * arrays), depth first, up to `maxDepth` levels. `visit` sees every value; it
 * returns "stop" to end the walk, "skip" to not descend into that value.
 * Typed arrays, Buffers and class instances are visited but never entered.
 * Returns true when a visit stopped the walk.
 */
export function walkData(value: unknown, visit: (value: unknown) => "stop" | "skip" | void, maxDepth = 6, depth = 0): boolean {
  const verdict = visit(value);
  if (verdict === "stop") return true;
  if (verdict === "skip" || depth >= maxDepth || typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (walkData(item, visit, maxDepth, depth + 1)) return true;
    return false;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key in value) if (walkData((value as Record<string, unknown>)[key], visit, maxDepth, depth + 1)) return true;
  return false;
}

/**
 * A copy of plain data (as {@link walkData} enters it) in which every
 * ArrayBufferView that is a key of `refs` is replaced by its value. Only the
 * containers on the way are copied; `value` itself is not changed.
 */
export function replaceViews(value: unknown, refs: ReadonlyMap<ArrayBufferView, unknown>, maxDepth = 8, depth = 0): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (ArrayBuffer.isView(value)) return refs.has(value) ? refs.get(value) : value;
  if (depth >= maxDepth) return value;
  if (Array.isArray(value)) return value.map((item) => replaceViews(item, refs, maxDepth, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const key in value) out[key] = replaceViews((value as Record<string, unknown>)[key], refs, maxDepth, depth + 1);
  return out;
}
