/**
 * The functions protocol between a client (`server(url)`) and `multirank
 * serve`: routes, headers and the shapes both sides agree on. Bodies travel
 * as msgpack, so Buffers and typed arrays stay binary.
 */
import type { ResolvedRemoteOptions } from "./options.js";

/** Routes, relative to the server's URL. */
export const FN_ROUTES = Object.freeze({
  info: "/fn/v1/info",
  functions: "/fn/v1/functions",
  call: (name: string) => `/fn/v1/functions/${encodeURIComponent(name)}/call`,
  stream: (name: string) => `/fn/v1/functions/${encodeURIComponent(name)}/stream`,
});

/** Headers of the protocol. */
export const FN_HEADERS = Object.freeze({
  /** Every request and answer carries its side's multirank version. */
  version: "x-multirank-version",
  /** Seconds a call may run (the function's `timeout`). */
  timeout: "x-multirank-timeout",
  /** Set on calls from inside a function: call by name only, never register. */
  nested: "x-multirank-nested",
});

/** Content type of msgpack bodies. */
export const MSGPACK = "application/x-msgpack";

/**
 * A function's options as a server receives them: the resolved options
 * without `dependencies` (sent apart, with tarballs) and with the secrets'
 * values instead of their names (read from the caller's environment; the
 * server keeps them in memory only).
 */
export type WireOptions = Omit<ResolvedRemoteOptions, "dependencies" | "secrets" | "name">;

/** `POST /fn/v1/functions`: register (or replace) one function. */
export interface RegistrationRequest {
  name: string;
  /** Who defines it: `<hostname>:<module path>`; another source under the same name is a clash. */
  source: string;
  /** sha256 of `code`. */
  hash: string;
  /** The bundled module. */
  code: string;
  /** npm specs; a `file:` tarball is sent as `file:<sha256>.tgz` with its bytes in `tarballs`. */
  dependencies: string[];
  tarballs: Record<string, Uint8Array>;
  options: WireOptions;
  secrets: Record<string, string>;
}

/** The answer to a registration. */
export interface RegistrationResponse {
  name: string;
  /** `unchanged`: the same code and options were already there. */
  status: "registered" | "replaced" | "unchanged";
  /** The app name it is served under over fal's and Runpod's protocols (`fn/<name>`). */
  app: string;
}

/** The body of an error answer. */
export interface WireError {
  error: string;
  code: string;
  /** The server-side error's brands (`errorKinds`: the codes of its classes), most derived first. */
  kinds?: readonly string[];
  /** For `MULTIRANK_ERR_REMOTE`: what the function threw. */
  remote?: { name: string; message: string; stack?: string | undefined; rank?: number | undefined };
}

/** The app name a function is served under. */
export function functionAppName(name: string): string {
  return `fn/${name}`;
}
