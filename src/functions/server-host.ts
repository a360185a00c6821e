/**
 * The client of a `multirank serve`: `server(url, { key })` as a host for
 * remote functions. The first call of a function registers it (its bundle,
 * dependencies and options; the server builds its environment), later calls
 * go straight to it. Calls and results travel as msgpack, streams as
 * Server-Sent Events; aborting a call closes its connection, which cancels it
 * at every rank.
 */
import { pack, unpack } from "../codec/packer.js";
import { AbortError, HostError, ValidationError, VersionMismatchError } from "../errors.js";
import { httpBaseUrl } from "../util/http-url.js";
import { MULTIRANK_VERSION } from "../version.js";
import { packageFunction } from "./function-package.js";
import { claimName, type CallOptions, type FunctionDefinition, type Host } from "./host.js";
import { definedBy, type RegisteredFunction } from "./registry.js";
import { FN_HEADERS, FN_ROUTES, MSGPACK, type RegistrationRequest, type RegistrationResponse } from "./wire.js";
import { errorFromAnswer } from "./wire-error.js";

/** Options of {@link server}. */
export interface ServerHostOptions {
  /**
   * The key sent as `Authorization: Key <key>`: a caller's key calls
   * functions an admin registered; an admin key (`multirank serve
   * --admin-key`) also registers them. Never logged.
   * @default none (a server without keys)
   */
  key?: string | undefined;
  /** The fetch to use. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** Environment variable that names the server a function's processes call other functions on (set by the server). */
const NESTED_HOST_ENV = "MULTIRANK_NESTED_HOST";

/** A `multirank serve` as a host of remote functions. */
export class ServerHost implements Host {
  readonly kind = "server" as const;
  /** The server's URL, without a trailing slash. */
  readonly url: string;
  readonly description: string;
  readonly #key: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #modules = new Map<string, string>();
  /** Registrations done or under way, by function name. */
  readonly #registered = new Map<string, Promise<void>>();
  /**
   * Inside a function this server runs (it sets the variable when it starts
   * the function's processes), functions are called by name: they were
   * registered along with the caller's. Read once: calls are the hot path.
   */
  readonly #nested: boolean;

  constructor(url: string, options: ServerHostOptions = {}) {
    this.url = normalizeUrl(url);
    this.description = this.url;
    if (options.key !== undefined && (typeof options.key !== "string" || options.key === "" || /\s/.test(options.key))) {
      throw new ValidationError("server(url, options): options.key must be a non-empty string without spaces");
    }
    this.#key = options.key;
    this.#fetch = options.fetch ?? globalThis.fetch;
    const nested = process.env[NESTED_HOST_ENV];
    this.#nested = nested !== undefined && normalizeUrl(nested) === this.url;
  }

  /** The key, for `syncDir(dir, remoteDir, { host: server(...) })`; not an own property, so logging the host never shows it. */
  get adminKey(): string | undefined {
    return this.#key;
  }

  /** @throws {ValidationError} when another module already defined a function of that name for this server. */
  claim(definition: FunctionDefinition): void {
    claimName(this.#modules, definition);
  }

  async invoke(definition: FunctionDefinition, payload: unknown, options: CallOptions): Promise<unknown> {
    const body = pack(payload, `the arguments of ${definition.options.name}`);
    const response = await this.#callWithRegistration(definition, FN_ROUTES.call(definition.options.name), body, options);
    const answer = unpack<{ value?: unknown }>(new Uint8Array(await response.arrayBuffer()), `the result of ${definition.options.name}`);
    return answer?.value;
  }

  async *stream(definition: FunctionDefinition, payload: unknown, options: CallOptions): AsyncGenerator<unknown, void, undefined> {
    const name = definition.options.name;
    const body = pack(payload, `the arguments of ${name}`);
    const response = await this.#callWithRegistration(definition, FN_ROUTES.stream(name), body, options);
    if (!response.body) throw new HostError({ url: this.url, status: response.status, message: `the server at ${this.url} answered a stream of ${name} with no body` });
    for await (const event of serverSentEvents(response.body, options.signal)) {
      if (event.type === "item") yield unpack(Buffer.from(event.data, "base64"), `a value of ${name}`);
      else if (event.type === "error") throw errorFromAnswer({ url: this.url, status: 500, text: event.data, what: name, functionName: name });
      else if (event.type === "end") return;
    }
    throw new HostError({ url: this.url, status: response.status, message: `the stream of ${name} from ${this.url} ended before its end event` });
  }

  /** Nothing stays warm on this side: the server keeps each function warm for its `keepAlive`. */
  async close(): Promise<void> {}

  /** Calls, registering first; a server that lost the function (it restarted) gets it again once. */
  async #callWithRegistration(definition: FunctionDefinition, route: string, body: Buffer, options: CallOptions): Promise<Response> {
    const name = definition.options.name;
    for (let attempt = 0; ; attempt++) {
      await this.#ensureRegistered(definition, options.signal);
      const response = await this.#request(route, { body, contentType: MSGPACK, signal: options.signal, timeout: options.timeout });
      if (response.ok) return response;
      const error = await this.#failure(response, name);
      if (attempt === 0 && response.status === 404 && !this.#nested && (error as HostError).code === "MULTIRANK_ERR_GATEWAY_APP_NOT_FOUND") {
        this.#registered.delete(name);
        continue;
      }
      throw error;
    }
  }


  #ensureRegistered(definition: FunctionDefinition, signal: AbortSignal | undefined): Promise<void> {
    if (this.#nested) return Promise.resolve();
    const name = definition.options.name;
    let done = this.#registered.get(name);
    if (!done) {
      done = this.#register(definition, signal);
      this.#registered.set(name, done);
      done.catch(() => this.#registered.delete(name));
    }
    return done;
  }

  async #register(definition: FunctionDefinition, signal: AbortSignal | undefined): Promise<void> {
    const { registration, files } = await packageFunction(definition.options, definition.module, { signal });
    await this.#send(registration, signal);
    // Functions defined in the modules this bundle inlined may be called from it: register them too, so such a
    // call finds them by name. Best effort: a companion this key may not register only fails if it is called.
    const companions = new Set<RegisteredFunction>();
    for (const file of files) for (const entry of definedBy(file)) if (entry.name !== definition.options.name && entry.options) companions.add(entry);
    for (const entry of companions) {
      if (this.#registered.has(entry.name)) continue;
      const done = packageFunction(entry.options!, entry.module, { signal }).then(async ({ registration: companion }) => void (await this.#send(companion, signal)));
      this.#registered.set(entry.name, done);
      await done.catch(() => this.#registered.delete(entry.name));
    }
  }

  async #send(registration: RegistrationRequest, signal: AbortSignal | undefined): Promise<RegistrationResponse> {
    const response = await this.#request(FN_ROUTES.functions, { body: pack(registration, `the registration of ${registration.name}`), contentType: MSGPACK, signal });
    if (!response.ok) throw await this.#failure(response, registration.name);
    return (await response.json()) as RegistrationResponse;
  }

  async #request(route: string, init: { body: Buffer; contentType: string; signal?: AbortSignal | undefined; timeout?: number }): Promise<Response> {
    const headers: Record<string, string> = { "content-type": init.contentType, [FN_HEADERS.version]: MULTIRANK_VERSION };
    if (this.#key !== undefined) headers.authorization = `Key ${this.#key}`;
    if (init.timeout !== undefined) headers[FN_HEADERS.timeout] = String(init.timeout);
    if (this.#nested) headers[FN_HEADERS.nested] = "1";
    let response: Response;
    try {
      response = await this.#fetch(`${this.url}${route}`, { method: "POST", headers, body: init.body as unknown as Uint8Array<ArrayBuffer>, ...(init.signal ? { signal: init.signal } : {}) });
    } catch (error) {
      if (init.signal?.aborted) throw new AbortError(`the call to ${this.url} was aborted`, { cause: init.signal.reason });
      throw new HostError({ url: this.url, status: 0, message: `cannot reach the multirank server at ${this.url}: ${(error as Error).message}`, cause: error });
    }
    const theirs = response.headers.get(FN_HEADERS.version);
    if (theirs !== null && theirs !== MULTIRANK_VERSION) {
      void response.body?.cancel().catch(() => {});
      throw new VersionMismatchError(MULTIRANK_VERSION, theirs, this.url);
    }
    return response;
  }

  async #failure(response: Response, functionName: string): Promise<Error> {
    const text = await response.text().catch(() => "");
    return errorFromAnswer({ url: this.url, status: response.status, text, what: functionName, functionName });
  }
}

const servers = new Map<string, ServerHost>();

/**
 * A `multirank serve` at `url` as a host: `fn.on(server(url, { key }))`, or
 * the default host when `MULTIRANK_HOST` (and `MULTIRANK_KEY`) are set.
 * The same URL and key give the same host.
 * @throws {ValidationError} for a URL that is not http(s), or a bad key.
 * @example const onServer = sumNumbers.on(server("http://10.0.0.5:8000", { key: process.env.MULTIRANK_KEY }));
 */
export function server(url: string, options: ServerHostOptions = {}): ServerHost {
  const id = `${normalizeUrl(url)}\0${options.key ?? ""}`;
  let host = servers.get(id);
  if (!host || options.fetch) {
    host = new ServerHost(url, options);
    if (!options.fetch) servers.set(id, host);
  }
  return host;
}

function normalizeUrl(url: string): string {
  return httpBaseUrl(url, "server(url): url");
}


/** The events of a `text/event-stream` body, pulled as the consumer asks (TCP holds the server back). */
async function* serverSentEvents(body: ReadableStream<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<{ type: string; data: string }, void, undefined> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (signal?.aborted) throw new AbortError("the stream was aborted", { cause: signal.reason });
        throw error;
      }
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length > 0) yield { type, data: data.join("\n") };
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
