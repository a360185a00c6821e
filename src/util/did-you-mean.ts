/**
 * "Did you mean": the known name closest to a misspelt one, by edit distance,
 * so an options object can refuse `keepalive` and point at `keepAlive`.
 */

/** Levenshtein distance between `a` and `b`, case-insensitive (a wrong case is one typo away, not many). */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let previous = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const current = [i];
    for (let j = 1; j <= t.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[t.length]!;
}

/** The candidate closest to `name`, when one is close enough to be a typo (at most a third of its length, at least 2 edits). */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * The first own key of `object` that `known` does not list, with a message
 * part naming it (`"keepalive" (did you mean "keepAlive"?)`); undefined when
 * every key is known.
 */
export function unknownKey(object: object, known: readonly string[]): { key: string; described: string } | undefined {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const suggestion = closestName(key, known);
    return { key, described: `${JSON.stringify(key)}${suggestion ? ` (did you mean ${JSON.stringify(suggestion)}?)` : ""}` };
  }
  return undefined;
}
