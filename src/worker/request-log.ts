import { pino, type DestinationStream, type Logger } from "pino";

/** Marks a request's logger (and, through pino's prototype chain, its children) with the request's id. */
const kRequestId = Symbol("multirank.requestId");

/** One record written through a request's logger, for the request's caller. */
export interface RequestLogRecord {
  requestId: number;
  level: number;
  msg: string;
  time: number;
}

/**
 * The logger of request `id` (`ctx.log`): a child of `parent` with
 * `requestId` bound, so its lines on the rank's stdout say which request they
 * belong to, and marked so that a {@link RequestLogStream} under `parent`
 * picks its records out without reading the line.
 */
export function requestLogger(parent: Logger, id: number): Logger {
  const child = parent.child({ requestId: id });
  Object.defineProperty(child, kRequestId, { value: id });
  return child;
}

/**
 * A pino destination that reads each record's values rather than its JSON
 * line: pino hands a stream that asks for metadata (directly or through
 * `pino.multistream`) the level, message, merging object and logger of the
 * record it is about to write. Records of a {@link requestLogger}, or with a
 * numeric `requestId` in their merging object, go to `forward`; the line
 * itself is ignored, so nothing is parsed back.
 *
 * @example
 * const logger = pino(pino.multistream([
 *   { level: "info", stream: pino.destination(1) },
 *   { level: "info", stream: new RequestLogStream((record) => send(record)) },
 * ]));
 */
export class RequestLogStream implements DestinationStream {
  // pino fills the fields below before each write() when this is true.
  readonly [pino.symbols.needsMetadataGsym] = true as const;
  lastLevel = 0;
  lastMsg: unknown = undefined;
  lastObj: object | undefined = undefined;
  lastTime = "";
  lastLogger: Logger | undefined = undefined;
  readonly #forward: (record: RequestLogRecord) => void;

  constructor(forward: (record: RequestLogRecord) => void) {
    this.#forward = forward;
  }

  write(_line: string): void {
    const obj = this.lastObj as { requestId?: unknown; msg?: unknown } | undefined;
    // A requestId in the merging object wins, as it does in the line (it comes after the bindings).
    const requestId = typeof obj?.requestId === "number" ? obj.requestId : (this.lastLogger as { [kRequestId]?: number } | undefined)?.[kRequestId];
    if (requestId === undefined) return;
    // The message argument, or else a `msg` in the merging object: the one the line shows.
    const msg = this.lastMsg ?? obj?.msg;
    const time = Number(this.lastTime);
    this.#forward({ requestId, level: this.lastLevel, msg: msg === undefined || msg === null ? "" : String(msg), time: Number.isFinite(time) && this.lastTime !== "" ? time : Date.now() });
  }
}
