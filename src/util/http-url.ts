import { ValidationError } from "../errors.js";

/**
 * A server's base URL, checked and without a trailing slash
 * (`http://10.0.0.5:8000`). Credentials in the URL are refused: they would
 * be logged with it; keys travel in a header.
 * @throws {ValidationError} naming `field` unless `url` is an http(s) URL.
 */
export function httpBaseUrl(url: unknown, field: string): string {
  let parsed: URL | undefined;
  try {
    parsed = typeof url === "string" ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) throw new ValidationError(`${field} must be an http(s) URL, got ${JSON.stringify(url)}`);
  if (parsed.username || parsed.password) throw new ValidationError(`${field}: put the key in the options, not in the URL`);
  return parsed.href.replace(/\/+$/, "");
}
