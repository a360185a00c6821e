import type * as zmq from "zeromq";
import { zeromq } from "./zeromq.js";
import type { Logger } from "pino";
import { deferred } from "../util/deferred.js";

/** Where libzmq asks a context's ZAP handler (ZMQ RFC 27) to authenticate a connection. */
const ZAP_ENDPOINT = "inproc://zeromq.zap.01";

const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/** Z85 text of `bytes` (a multiple of 4 long), as `curveKeyPair()` writes keys. */
export function z85Encode(bytes: Uint8Array): string {
  let out = "";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i + 4 <= bytes.byteLength; i += 4) {
    let value = view.getUint32(i);
    let chunk = "";
    for (let j = 0; j < 5; j++) {
      chunk = Z85[value % 85] + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}

/**
 * A ZAP handler for one ZeroMQ context: CURVE connections are let in only with
 * a client key given to {@link allow}. A CURVE server alone admits any client
 * that knows the server's public key; with this, knowing it is not enough.
 *
 * The handler serves every socket of its context, so each owner (a runner's
 * control socket, a process group's data sockets) makes its own context: two
 * runners in one process must not share one list of keys.
 *
 * Requests that come before {@link allow} wait for it (a peer may connect
 * before this side has learnt its key); {@link close} denies them.
 */
export class ZapHandler {
  readonly #socket: zmq.Reply;
  readonly #keys = new Set<string>();
  #any = false;
  readonly #known = deferred<void>();
  readonly #onDenied: (address: string, why: string) => void;
  #closed = false;

  private constructor(socket: zmq.Reply, onDenied: (address: string, why: string) => void) {
    this.#socket = socket;
    this.#onDenied = onDenied;
  }

  /**
   * Binds the handler of `context`; bind it before any CURVE server of that
   * context binds, or the first connections go unchecked.
   * `onDenied(address, why)` hears of every refused connection (the caller rate-limits its log).
   */
  static async bind(context: zmq.Context, log: Logger, onDenied: (address: string, why: string) => void): Promise<ZapHandler> {
    const socket = new (zeromq().Reply)({ context, linger: 0 });
    await socket.bind(ZAP_ENDPOINT);
    const handler = new ZapHandler(socket, onDenied);
    void handler.#serve(log);
    return handler;
  }

  /** Lets clients with these Z85 public keys in (keys add up over calls). */
  allow(publicKeys: Iterable<string>): void {
    for (const key of publicKeys) this.#keys.add(key);
    this.#known.resolve();
  }

  /**
   * Lets any CURVE client in: for ranks that made their own keys (attach
   * mode), which prove themselves in their first message instead. CURVE
   * still encrypts, and a peer must still know the server's public key.
   */
  allowAny(): void {
    this.#any = true;
    this.#known.resolve();
  }

  /** Stops answering; pending and later handshakes fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#known.resolve();
    this.#socket.close();
  }

  async #serve(log: Logger): Promise<void> {
    try {
      // Request frames (RFC 27): version, request id, domain, address, identity, mechanism, credentials.
      for await (const [version, requestId, , address, , mechanism, key] of this.#socket) {
        await this.#known.promise;
        if (this.#closed) return;
        const curve = mechanism?.toString() === "CURVE";
        const ok = curve && key?.byteLength === 32 && (this.#any || this.#keys.has(z85Encode(key)));
        if (!ok) this.#onDenied(address?.toString() ?? "", curve ? "a client key this side did not issue" : `the ${mechanism?.toString() || "NULL"} mechanism`);
        await this.#socket.send([version ?? "1.0", requestId ?? "", ok ? "200" : "400", ok ? "OK" : "not allowed", "", ""]);
      }
    } catch (error) {
      if (!this.#closed) log.error({ err: error }, "the ZAP handler stopped; new connections will fail their handshake");
    }
  }
}

/**
 * Reports peers that fail a CURVE server's handshake (no CURVE, or not
 * knowing the server key): libzmq drops them before the ZAP handler hears of
 * them. The event names the local endpoint, not the peer.
 */
export function watchFailedHandshakes(socket: zmq.Socket, onDenied: (address: string, why: string) => void): void {
  socket.events.on("handshake:error:protocol", (event) => onDenied(event.address, "a failed CURVE handshake"));
  socket.events.on("handshake:error:other", (event) => onDenied(event.address, "a failed CURVE handshake"));
}
