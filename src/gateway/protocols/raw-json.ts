/**
 * JSON text made elsewhere (a job's output, a rank's stream chunk) inside a
 * body that a fast-json-stringify serializer writes. Neither
 * fast-json-stringify nor Node 20 (no `JSON.rawJSON`) can embed JSON text,
 * and parsing it only to write it again is the cost the gateway avoids: the
 * serializer writes the key with `null` (or `[]` for a list), and
 * {@link placeRawJson} puts the text in its place.
 */

/**
 * Replaces the value `placeholder` (`null`, or `[]`) of `key` in `json` with
 * the JSON text `raw`. Only a key can match: inside a JSON string every `"`
 * is escaped, so `"key":` never occurs in one; and the serializers that use
 * this write only scalars ahead of `key`, so no nested object's key comes first.
 * @throws {Error} when `json` has no `"key":placeholder` (a serializer that dropped it: a bug, not input).
 */
export function placeRawJson(json: string, key: string, raw: string, placeholder = "null"): string {
  const slot = `"${key}":${placeholder}`;
  const at = json.indexOf(slot);
  if (at < 0) throw new Error(`no ${slot} in the serialized body`);
  const valueAt = at + slot.length - placeholder.length;
  return `${json.slice(0, valueAt)}${raw}${json.slice(at + slot.length)}`;
}
