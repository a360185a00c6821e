/**
 * Keeps API keys out of the gateway's logs. A key reaches the gateway in the
 * `Authorization` header (and its look-alikes) or, from EventSource, in the
 * `fal_key` query parameter; both are redacted in every log line, errors
 * included:
 *
 * - {@link takeQuerySecrets} strips secret query values from the URL before
 *   routing (`rewriteUrl`), so `request.url` (which fastify and our errors
 *   quote) never holds one; the `fal_key` it took is kept for the key check.
 * - {@link redactingLogger} gives the gateway a child logger whose `req` and
 *   `err` serializers redact URLs and messages, and whose `redact` paths
 *   censor the headers, whatever a later log call passes.
 */
import type { IncomingMessage } from "node:http";
import { pino, type Logger } from "pino";

/** What a redacted value reads as. */
export const REDACTED = "[redacted]";

/** Query parameters whose values are secrets (compared in lower case). */
const SECRET_PARAMS: ReadonlySet<string> = new Set([
  "fal_key",
  "key",
  "api_key",
  "apikey",
  "api-key",
  "token",
  "access_token",
  "auth",
  "authorization",
  "secret",
  "password",
]);

/** Headers that carry credentials. */
const SECRET_HEADERS = ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-fal-key", "x-api-key", "x-fal-target-url"] as const;

// name=value after ?, & or ;, anywhere in a text (also a URL nested in another's query, or quoted in a message).
const QUERY_PAIR = /([?&;])([^=&#?;\s"'<>]+)=([^&#;\s"'<>]*)/g;
// The same percent-encoded, as in a URL passed as a parameter (?fal_webhook=http%3A...%3Ftoken%3D...).
const ENCODED_QUERY_PAIR = /(%3F|%26)((?:[A-Za-z0-9_.~-]|%(?!3D|26)[0-9A-Fa-f]{2})+)%3D((?:[^&#;\s"'<>%]|%(?!26)[0-9A-Fa-f]{2})*)/gi;

function isSecretName(raw: string): boolean {
  let name = raw;
  try {
    name = decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    // A malformed escape: judge the name as written.
  }
  return SECRET_PARAMS.has(name.toLowerCase());
}

/**
 * `text` with the value of every secret query parameter (`fal_key`, `key`,
 * `api_key`, `token`, ...) replaced by `[redacted]`. Works on a URL or on any
 * text that quotes one (an error message).
 * @example redactUrl("/fal/run/a/b/stream?fal_key=id:secret&input={}") // "/fal/run/a/b/stream?fal_key=[redacted]&input={}"
 */
export function redactUrl(text: string): string {
  if (!text.includes("=") && !/%3D/i.test(text)) return text;
  return text
    .replace(QUERY_PAIR, (match, sep: string, name: string) => (isSecretName(name) ? `${sep}${name}=${REDACTED}` : match))
    .replace(ENCODED_QUERY_PAIR, (match, sep: string, name: string) => (isSecretName(name) ? `${sep}${name}%3D${REDACTED}` : match));
}

/**
 * Splits the secret query parameters off a request URL: returns the URL with
 * their values replaced by `[redacted]` and the `fal_key` it carried, if any.
 * Only top-level parameters are touched, so a URL passed as a parameter's
 * value (`fal_webhook`) reaches the handler intact.
 */
export function takeQuerySecrets(url: string): { url: string; falKey: string | undefined } {
  const start = url.indexOf("?");
  if (start === -1) return { url, falKey: undefined };
  let falKey: string | undefined;
  let changed = false;
  const pairs = url
    .slice(start + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = eq === -1 ? pair : pair.slice(0, eq);
      if (eq === -1 || !isSecretName(name)) return pair;
      if (falKey === undefined && name.toLowerCase() === "fal_key") {
        try {
          falKey = decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, " "));
        } catch {
          falKey = pair.slice(eq + 1);
        }
      }
      changed = true;
      return `${name}=${REDACTED}`;
    });
  return changed ? { url: `${url.slice(0, start)}?${pairs.join("&")}`, falKey } : { url, falKey };
}

const falKeys = new WeakMap<IncomingMessage, string>();

/** Remembers the `fal_key` taken off `request`'s URL (see {@link takeQuerySecrets}). */
export function rememberQueryKey(request: IncomingMessage, key: string): void {
  falKeys.set(request, key);
}

/** The `fal_key` the request's URL carried before it was redacted. */
export function queryKeyOf(request: IncomingMessage): string | undefined {
  return falKeys.get(request);
}

const REDACT_PATHS = SECRET_HEADERS.flatMap((header) => [`headers["${header}"]`, `*.headers["${header}"]`]);

function serializeRequest(request: { method?: string; url?: string; host?: string; ip?: string; hostname?: string; socket?: { remotePort?: number } }): Record<string, unknown> {
  return {
    method: request.method,
    url: typeof request.url === "string" ? redactUrl(request.url) : request.url,
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}

function serializeError(error: unknown): unknown {
  if (typeof error === "string") return redactUrl(error);
  const serialized = pino.stdSerializers.err(error as Error) as unknown as Record<string, unknown>;
  if (typeof serialized !== "object" || serialized === null) return serialized;
  if (typeof serialized.message === "string") serialized.message = redactUrl(serialized.message);
  if (typeof serialized.stack === "string") serialized.stack = redactUrl(serialized.stack);
  return serialized;
}

/**
 * A child of `logger` that never writes a key: `req` is logged with its URL
 * redacted and without headers, `err` with its message and stack redacted,
 * and credential headers under `headers` (at the top or one level down) are
 * censored.
 */
export function redactingLogger(logger: Logger): Logger {
  return logger.child(
    {},
    {
      serializers: { req: serializeRequest, err: serializeError },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
    },
  );
}
