/**
 * The error catalogue. Every error multirank throws is a {@link MultirankError}
 * with a stable `code` (`MULTIRANK_ERR_*`); tests and callers branch on `code`,
 * never on message text. Errors raised on a rank travel as
 * {@link SerializedError} and are rebuilt in the runner as {@link RankError}.
 */

/** Where on a rank an error happened. */
export type RankPhase = "setup" | "call" | "teardown" | "process" | "keepalive" | "collective";

/** The wire form of an error: what crosses the process boundary. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  cause?: SerializedError;
  rank?: number;
  phase?: RankPhase;
}

// Brands shared by every copy of this module: Symbol.for keys are
// process-global, so `instanceof` keeps working when two copies of multirank
// are loaded, as happens when a worker module resolves its own copy of the
// package. A class is known by the code it stands for (undici's
// `Symbol.for('undici.error.UND_ERR_...')`), never by its name, which a
// minifier rewrites and another library's class can share.
const BRAND_PREFIX = "multirank.error.";

function brandSymbol(brand: string): symbol {
  return Symbol.for(`${BRAND_PREFIX}${brand}`);
}

function addBrand(error: object, brand: string): void {
  Object.defineProperty(error, brandSymbol(brand), { value: true, enumerable: false, configurable: true });
}

/** Extra fields every multirank error accepts. */
export interface MultirankErrorOptions {
  cause?: unknown;
  rank?: number;
  phase?: RankPhase;
}

/** Base class of every error multirank throws. */
export class MultirankError extends Error {
  /** Stable machine-readable code, `MULTIRANK_ERR_*`. */
  readonly code: string;
  /** The rank the error came from, when it came from one. */
  readonly rank?: number;
  /** What the rank was doing, when it came from one. */
  readonly phase?: RankPhase;

  /**
   * What this class stands for in `instanceof`: the `code` of its instances,
   * or for a family of codes their common prefix (`MULTIRANK_ERR` here, for
   * every multirank error). An error carries the brand of every class on its
   * prototype chain that declares one; a subclass that declares none (a
   * private one) is matched through its prototype chain instead.
   */
  static readonly brand: string = "MULTIRANK_ERR";

  constructor(code: string, message: string, options: MultirankErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.rank !== undefined) this.rank = options.rank;
    if (options.phase !== undefined) this.phase = options.phase;
    for (let proto = Object.getPrototypeOf(this); proto && proto !== Error.prototype; proto = Object.getPrototypeOf(proto)) {
      const type = proto.constructor as typeof MultirankError;
      if (Object.hasOwn(type, "brand")) addBrand(this, type.brand);
    }
    Object.defineProperty(this, "name", { value: new.target.name, enumerable: false, configurable: true, writable: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== "object" || value === null) return false;
    if (!Object.hasOwn(this, "brand")) return Function.prototype[Symbol.hasInstance].call(this, value);
    return (value as Record<symbol, unknown>)[brandSymbol(this.brand)] === true;
  }
}

/** An option or argument was invalid. The message names the field. */
export class ValidationError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_INVALID_ARGUMENT";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(ValidationError.brand, message, options);
  }
}

/** The operation was cancelled through an `AbortSignal` or by breaking out of a stream. */
export class AbortError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_ABORTED";
  constructor(message = "The operation was aborted", options?: MultirankErrorOptions) {
    super(AbortError.brand, message, options);
  }
}

/** The operation did not finish in the time it was given. */
export class TimeoutError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_TIMEOUT";
  /** The limit that passed, in milliseconds. */
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, options?: MultirankErrorOptions) {
    super(TimeoutError.brand, message, options);
    this.timeoutMs = timeoutMs;
  }
}

/** A value could not be packed or unpacked (a function, a symbol, a corrupt frame). */
export class SerializationError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_SERIALIZATION";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(SerializationError.brand, message, options);
  }
}

/** A message was larger than `maxMessageBytes`. */
export class MessageTooLargeError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_MESSAGE_TOO_LARGE";
  readonly size: number;
  readonly limit: number;
  constructor(what: string, size: number, limit: number, options?: MultirankErrorOptions) {
    super(MessageTooLargeError.brand, `${what} is ${size} bytes, over the limit of ${limit} bytes (maxMessageBytes)`, options);
    this.size = size;
    this.limit = limit;
  }
}

/** The control channel between the runner and its ranks (a unix socket or ZeroMQ) failed: bind, connect, send. */
export class TransportError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_TRANSPORT";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(TransportError.brand, message, options);
  }
}

/** The runner is not in a state that allows the call (not started, stopped, dead). */
export class StateError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_STATE";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(StateError.brand, message, options);
  }
}

/**
 * Worker code threw on a rank. `remoteName`, `message` and `remoteStack` are the
 * original error's; `rank` and `phase` say where it happened.
 */
export class RankError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_RANK";
  /** The original error's class name on the rank (`TypeError`, ...). */
  readonly remoteName: string;
  /** The original error's `code`, if it had one. */
  readonly remoteCode?: string;
  /** The original stack trace, as the rank printed it. */
  readonly remoteStack?: string;

  constructor(serialized: SerializedError, rank: number, phase: RankPhase, options: { cause?: unknown } = {}) {
    super(RankError.brand, `rank ${rank} failed in ${phase}: ${serialized.name}: ${serialized.message}`, {
      rank,
      phase,
      cause: options.cause ?? (serialized.cause ? rebuildError(serialized.cause) : undefined),
    });
    this.remoteName = serialized.name;
    if (serialized.code !== undefined) this.remoteCode = serialized.code;
    if (serialized.stack !== undefined) this.remoteStack = serialized.stack;
    // Keep the runner's own frames but show the rank's first: that is where the bug is.
    if (serialized.stack) this.stack = `${this.name}: ${this.message}\n--- on rank ${rank} ---\n${serialized.stack}`;
  }
}

/** A rank process exited or was killed. */
export class RankExitError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_RANK_EXIT";
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines the rank wrote to stderr. */
  readonly stderrTail: string;
  constructor(rank: number, exitCode: number | null, signal: NodeJS.Signals | null, stderrTail: string, options: { cause?: unknown } = {}) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
    const tail = stderrTail ? `\nlast stderr lines of rank ${rank}:\n${stderrTail}` : "";
    super(RankExitError.brand, `rank ${rank} ${how}${tail}`, { rank, phase: "process", cause: options.cause });
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderrTail = stderrTail;
  }
}

/**
 * A rank went over its memory limit (the `memory` option of an app or a remote
 * function; the runner's `memoryLimitMiB`) and died of it: V8 refused to grow
 * the heap past `--max-old-space-size` (`via: "heap"`), or the kernel killed
 * the rank in its memory-limited cgroup (`via: "cgroup"`). The call in flight
 * fails with it and the runner stops the group, as after any crash.
 */
export class MemoryLimitError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_MEMORY_LIMIT";
  /** The rank's limit in MiB. */
  readonly limitMiB: number;
  /** Which limit caught it: V8's heap limit or the cgroup's `memory.max`. */
  readonly via: "heap" | "cgroup";
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines the rank wrote to stderr. */
  readonly stderrTail: string;
  constructor(rank: number, limitMiB: number, via: "heap" | "cgroup", exit: { exitCode: number | null; signal: NodeJS.Signals | null; stderrTail: string }, options: { cause?: unknown } = {}) {
    const how = via === "heap" ? "V8's heap limit (JavaScript heap out of memory)" : "its cgroup's memory limit (killed by the kernel's OOM killer)";
    super(MemoryLimitError.brand, `rank ${rank} went over its memory limit of ${formatMiB(limitMiB)} and died: ${how}`, { rank, phase: "process", cause: options.cause });
    this.limitMiB = limitMiB;
    this.via = via;
    this.exitCode = exit.exitCode;
    this.signal = exit.signal;
    this.stderrTail = exit.stderrTail;
  }
}

function formatMiB(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/**
 * A rank's event loop stopped answering heartbeats for longer than the
 * runner's `heartbeatTimeout`: it is stuck (a synchronous loop, a deadlock in
 * native code). The runner stops the group, as after a crash.
 */
export class RankHungError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_RANK_HUNG";
  /** How long the rank had been silent when it was declared hung, ms. */
  readonly silentMs: number;
  /** The rank's host, for a rank that joined (attach mode); undefined for a spawned rank. */
  readonly host: string | undefined;
  /** `host`: where a joined rank runs; such a rank may also be dead or cut off, which the runner cannot tell apart. */
  constructor(rank: number, silentMs: number, timeoutMs: number, host?: string) {
    super(
      RankHungError.brand,
      host === undefined
        ? `rank ${rank} is hung: its event loop answered no heartbeat for ${(silentMs / 1000).toFixed(1)} s (heartbeatTimeout is ${timeoutMs / 1000} s); the group was stopped`
        : `rank ${rank} on host ${host} answered no heartbeat for ${(silentMs / 1000).toFixed(1)} s (heartbeatTimeout is ${timeoutMs / 1000} s): it died, hung, or its host is unreachable; the group was stopped`,
      { rank, phase: "process" },
    );
    this.silentMs = silentMs;
    this.host = host;
  }
}

/**
 * A remote function failed where it ran: carries the remote error's name,
 * message and stack, the rank it came from, and the function's name and host.
 * The rank's own error (a `RankError`, or `RankExitError` for a crash) is the `cause`.
 */
export class RemoteExecutionError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_REMOTE";
  /** The remote error's class name (`TypeError`, ...). */
  readonly remoteName: string;
  readonly remoteMessage: string;
  readonly remoteStack: string | undefined;
  /** The remote function's name. */
  readonly functionName: string;
  /** Where it ran: `local`, or the server's URL. */
  readonly host: string;
  constructor(fields: { functionName: string; host: string; remoteName: string; remoteMessage: string; remoteStack?: string | undefined; rank?: number | undefined; cause?: unknown }) {
    super(RemoteExecutionError.brand, `remote function ${fields.functionName} failed on ${fields.host}${fields.rank === undefined ? "" : ` (rank ${fields.rank})`}: ${fields.remoteName}: ${fields.remoteMessage}`, {
      ...(fields.rank === undefined ? {} : { rank: fields.rank }),
      cause: fields.cause,
    });
    this.remoteName = fields.remoteName;
    this.remoteMessage = fields.remoteMessage;
    this.remoteStack = fields.remoteStack;
    this.functionName = fields.functionName;
    this.host = fields.host;
    if (fields.remoteStack) this.stack = `${this.name}: ${this.message}\n--- remote ---\n${fields.remoteStack}`;
  }
}

/**
 * A multirank client and server of different versions: a function bundled
 * against one version does not run on another. The message names both.
 */
export class VersionMismatchError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_VERSION_MISMATCH";
  readonly clientVersion: string;
  readonly serverVersion: string;
  constructor(clientVersion: string, serverVersion: string, url: string) {
    super(VersionMismatchError.brand, `multirank version mismatch: this client is ${clientVersion}, the server at ${url} is ${serverVersion}; install the same version on both`);
    this.clientVersion = clientVersion;
    this.serverVersion = serverVersion;
  }
}

/**
 * A multirank server refused or failed a request. `code` is the server's own
 * error code (`MULTIRANK_ERR_INVALID_ARGUMENT`, `MULTIRANK_ERR_DEPENDENCY_INSTALL`...),
 * or `MULTIRANK_ERR_HOST` when it sent none; `instanceof` matches the server's
 * error class too (a server `ValidationError` is a `ValidationError` here).
 */
export class HostError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_HOST";
  /** HTTP status of the answer; 0 when the server could not be reached. */
  readonly status: number;
  /** The server's URL. */
  readonly url: string;
  constructor(fields: { url: string; status: number; message: string; code?: string | undefined; kinds?: readonly string[] | undefined; cause?: unknown }) {
    super(fields.code ?? HostError.brand, fields.message, fields.cause === undefined ? {} : { cause: fields.cause });
    this.status = fields.status;
    this.url = fields.url;
    // The server's error's brands (its `errorKinds`) make this error match its classes here too.
    for (const kind of fields.kinds ?? []) if (typeof kind === "string" && /^MULTIRANK_ERR(_[A-Z0-9]+)*$/.test(kind)) addBrand(this, kind);
  }
}

/**
 * The brands of a multirank error (the codes, or code prefixes, of its
 * classes: `["MULTIRANK_ERR_INVALID_ARGUMENT", "MULTIRANK_ERR"]`), most
 * derived first, for sending over the wire; a `HostError` built from them
 * matches the same classes. Empty for anything else.
 */
export function errorKinds(error: unknown): readonly string[] {
  if (typeof error !== "object" || error === null) return [];
  const kinds: string[] = [];
  for (const symbol of Object.getOwnPropertySymbols(error)) {
    const key = Symbol.keyFor(symbol);
    if (key?.startsWith(BRAND_PREFIX)) kinds.push(key.slice(BRAND_PREFIX.length));
  }
  return kinds;
}

/**
 * A deployment artifact (`multirank build`) that cannot be deployed: an entry
 * that escapes the archive's root, a link, an archive over the size limit, a
 * manifest missing a field or naming a file the archive lacks. The message
 * names the problem; `entry` names the archive entry or manifest field.
 */
export class ArtifactError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_ARTIFACT";
  readonly entry: string | undefined;
  constructor(message: string, entry?: string, options: MultirankErrorOptions = {}) {
    super(ArtifactError.brand, message, options);
    this.entry = entry;
  }
}

/** Several ranks failed at once (start-up, for example); `errors` holds each. */
export class RankGroupError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_RANKS_FAILED";
  readonly errors: readonly MultirankError[];
  constructor(message: string, errors: readonly MultirankError[], options?: MultirankErrorOptions) {
    super(RankGroupError.brand, `${message}:\n${errors.map((e) => `  - ${e.message.split("\n")[0]}`).join("\n")}`, {
      cause: errors[0],
      ...options,
    });
    this.errors = errors;
  }
}

/** A collective call did not match across ranks (different op, length or dtype). */
export class CollectiveMismatchError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_COLLECTIVE_MISMATCH";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(CollectiveMismatchError.brand, message, { phase: "collective", ...options });
  }
}

/** A peer in the process group died or stopped answering. */
export class PeerLostError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_PEER_LOST";
  constructor(message: string, options?: MultirankErrorOptions) {
    super(PeerLostError.brand, message, { phase: "collective", ...options });
  }
}

/** The native addon failed: not built, a driver library missing, a driver call failing. */
export class NativeError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_NATIVE";
  /** The driver's own status name (`CUDA_ERROR_NO_DEVICE`, `NVML_ERROR_NOT_FOUND`), if any. */
  readonly status?: string;
  constructor(message: string, options: MultirankErrorOptions & { status?: string } = {}) {
    super(NativeError.brand, message, options);
    if (options.status !== undefined) this.status = options.status;
  }
}

/**
 * A remote function's module imports a bare package that the function's
 * `dependencies` do not list. Raised when the module is bundled, so the
 * mistake shows where the function is defined, not as `ERR_MODULE_NOT_FOUND`
 * on a server later.
 */
export class UndeclaredDependencyError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_UNDECLARED_DEPENDENCY";
  /** The package the module imports (`lodash` for `lodash/fp`, `@scope/x` for `@scope/x/y`). */
  readonly packageName: string;
  /** The module that defines the remote functions (the bundle's entry). */
  readonly entry: string;
  /** The file that holds the import: the entry or one of its relative imports. */
  readonly importer: string;
  constructor(packageName: string, entry: string, importer: string, suggestion: string, options?: MultirankErrorOptions) {
    const where = importer && importer !== entry ? ` (from ${importer})` : "";
    super(
      UndeclaredDependencyError.brand,
      `module ${entry} imports "${packageName}"${where}, which the function's dependencies do not list; add it to dependencies (e.g. "${suggestion}")`,
      options,
    );
    this.packageName = packageName;
    this.entry = entry;
    this.importer = importer;
  }
}

/**
 * A remote function's module could not be bundled: a syntax error, a missing
 * relative import. `file`, `line` and `column` point at the first problem.
 */
export class BundleError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_BUNDLE";
  /** The module that was bundled. */
  readonly entry: string;
  /** The file of the first problem, when the bundler named one. */
  readonly file?: string;
  /** 1-based line of the first problem. */
  readonly line?: number;
  /** 1-based column of the first problem. */
  readonly column?: number;
  constructor(message: string, entry: string, location: { file?: string; line?: number; column?: number } = {}, options?: MultirankErrorOptions) {
    super(BundleError.brand, message, options);
    this.entry = entry;
    if (location.file !== undefined) this.file = location.file;
    if (location.line !== undefined) this.line = location.line;
    if (location.column !== undefined) this.column = location.column;
  }
}

/**
 * npm could not install a function's dependencies (a package or version that
 * does not exist, a registry that cannot be reached, an unreadable `file:`
 * tarball, a failing install script). The message names the failing spec when
 * npm's output says which, else every spec; `output` holds the last lines npm
 * printed, with credentials removed.
 */
export class DependencyInstallError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_DEPENDENCY_INSTALL";
  /** The specs the failure is about: the one npm named, or all of them. */
  readonly specs: readonly string[];
  /** The tail of npm's output (about 40 lines), credentials removed. */
  readonly output: string;
  constructor(message: string, specs: readonly string[], output: string, options?: MultirankErrorOptions) {
    super(DependencyInstallError.brand, output ? `${message}\nnpm output (last lines):\n${output}` : message, options);
    this.specs = Object.freeze([...specs]);
    this.output = output;
  }
}

/**
 * The llama.cpp engine (node-llama-cpp, installed on first use into the
 * cache, not with multirank) is not installed here and could not be
 * installed: no registry, a failed npm, or an install dir that
 * `MULTIRANK_LLAMA_ENGINE` names but that holds no engine. The message names
 * the command that installs it ahead of time; `cause` holds npm's failure.
 */
export class EngineMissingError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_ENGINE_MISSING";
  /** The command that installs the engine, e.g. `npx multirank engine install llama --gpu`. */
  readonly installCommand: string;
  constructor(message: string, installCommand: string, options?: MultirankErrorOptions) {
    super(EngineMissingError.brand, message, options);
    this.installCommand = installCommand;
  }
}

/** Every code in the catalogue, for documentation and exhaustiveness tests. */
export const ERROR_CODES = Object.freeze([
  "MULTIRANK_ERR_INVALID_ARGUMENT",
  "MULTIRANK_ERR_ABORTED",
  "MULTIRANK_ERR_TIMEOUT",
  "MULTIRANK_ERR_SERIALIZATION",
  "MULTIRANK_ERR_MESSAGE_TOO_LARGE",
  "MULTIRANK_ERR_TRANSPORT",
  "MULTIRANK_ERR_STATE",
  "MULTIRANK_ERR_RANK",
  "MULTIRANK_ERR_RANK_EXIT",
  "MULTIRANK_ERR_RANKS_FAILED",
  "MULTIRANK_ERR_COLLECTIVE_MISMATCH",
  "MULTIRANK_ERR_PEER_LOST",
  "MULTIRANK_ERR_NATIVE",
  "MULTIRANK_ERR_UNDECLARED_DEPENDENCY",
  "MULTIRANK_ERR_BUNDLE",
  "MULTIRANK_ERR_DEPENDENCY_INSTALL",
  "MULTIRANK_ERR_ENGINE_MISSING",
  "MULTIRANK_ERR_RANK_HUNG",
  "MULTIRANK_ERR_MEMORY_LIMIT",
  "MULTIRANK_ERR_REMOTE",
  "MULTIRANK_ERR_DATA_SYNC",
  "MULTIRANK_ERR_VERSION_MISMATCH",
  "MULTIRANK_ERR_HOST",
  "MULTIRANK_ERR_ARTIFACT",
] as const);

/** Turns any thrown value into the wire form, keeping name, code, stack and cause. */
export function serializeError(value: unknown, depth = 0): SerializedError {
  if (value instanceof Error) {
    const out: SerializedError = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (typeof code === "string") out.code = code;
    if (value.stack) out.stack = value.stack;
    if (value.cause !== undefined && depth < 4) out.cause = serializeError(value.cause, depth + 1);
    return out;
  }
  let message: string;
  try {
    message = typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  } catch {
    message = String(value);
  }
  return { name: "NonError", message: `non-Error value thrown: ${message}` };
}

/** Rebuilds a plain `Error` from its wire form (used for causes). */
export function rebuildError(serialized: SerializedError): Error {
  const error = new Error(serialized.message, serialized.cause ? { cause: rebuildError(serialized.cause) } : undefined);
  Object.defineProperty(error, "name", { value: serialized.name, configurable: true, writable: true });
  if (serialized.stack) error.stack = serialized.stack;
  if (serialized.code) (error as Error & { code?: string }).code = serialized.code;
  return error;
}
