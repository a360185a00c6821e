/**
 * fal's proxy form: the client sends every call to one URL with the real
 * target in `x-fal-target-url`. Mapped onto the gateway's own routes before
 * routing, so streaming works unchanged.
 */

const PROXY_PATHS = ["/fal/proxy", "/api/fal/proxy"];

/**
 * The URL to route a request to: for `/fal/proxy` with an `x-fal-target-url`
 * of `https://fal.run/<app>...` or `https://queue.fal.run/<app>...`, the
 * matching `/fal/run/...` or `/fal/queue/...` path; otherwise `url` itself
 * (`/fal/proxy` without a usable target answers 400).
 */
export function proxyTarget(url: string, target: string | string[] | undefined): string {
  const path = url.split("?")[0]!;
  if (!PROXY_PATHS.includes(path)) return url;
  const header = Array.isArray(target) ? target[0] : target;
  if (!header) return "/fal/proxy";
  let parsed: URL;
  try {
    parsed = new URL(header);
  } catch {
    return "/fal/proxy";
  }
  if (parsed.hostname === "fal.run") return `/fal/run${parsed.pathname}${parsed.search}`;
  if (parsed.hostname === "queue.fal.run") return `/fal/queue${parsed.pathname}${parsed.search}`;
  return "/fal/proxy";
}
