/** A half-open element range `[start, end)`. */
export interface Range {
  start: number;
  end: number;
}

/**
 * Splits `length` elements into `parts` contiguous ranges the way numpy's
 * `array_split` does: the first `length % parts` ranges get one element more.
 * Ranges may be empty when `length < parts`. This is the split
 * `reduceScatter` and the ring use.
 * @example splitRanges(10, 4) // [0,3) [3,6) [6,8) [8,10)
 */
export function splitRanges(length: number, parts: number): Range[] {
  const base = Math.floor(length / parts);
  const extra = length % parts;
  const out: Range[] = [];
  for (let i = 0; i < parts; i++) {
    const start = i * base + Math.min(i, extra);
    out.push({ start, end: start + base + (i < extra ? 1 : 0) });
  }
  return out;
}
