import { createHmac, timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";

/** Bytes of every proof (HMAC-SHA256). */
export const PROOF_BYTES = 32;

/**
 * Proofs that a message or a connection comes from a process that holds the
 * group's secret: HMAC-SHA256 keyed by the secret over labelled,
 * length-prefixed parts (so no two different part lists prove each other).
 * Without a secret the key is empty: anyone can make the proofs, and the
 * group is as open as a torchrun rendezvous (the caller warns).
 *
 * The secret lives only in a private field: it never reaches a log, an
 * error message or the wire.
 */
export class GroupAuth {
  readonly #key: Buffer;
  /** Whether a secret was given (else the proofs prove nothing). */
  readonly keyed: boolean;

  constructor(secret: string | undefined) {
    this.keyed = secret !== undefined && secret.length > 0;
    this.#key = Buffer.from(secret ?? "", "utf8");
  }

  /** The proof over `parts`. */
  prove(...parts: (string | Uint8Array)[]): Buffer {
    const hmac = createHmac("sha256", this.#key);
    const length = Buffer.alloc(4);
    for (const part of parts) {
      const bytes = typeof part === "string" ? Buffer.from(part, "utf8") : part;
      length.writeUInt32BE(bytes.byteLength);
      hmac.update(length);
      hmac.update(bytes);
    }
    return hmac.digest();
  }

  /** Whether `proof` is the proof over `parts` (compared in constant time). */
  verify(proof: Uint8Array | undefined, ...parts: (string | Uint8Array)[]): boolean {
    if (!proof || proof.byteLength !== PROOF_BYTES) return false;
    return timingSafeEqual(proof, this.prove(...parts));
  }
}

/** Distinct peers a {@link RefusalLog} remembers; later ones are only counted. */
const MAX_REMEMBERED_PEERS = 100;

/**
 * Logs peers refused for lacking the group's secret: each peer once (the
 * first hundred), then one line per thousand refusals, so a flood cannot
 * flood the log. The count goes into timeout messages, so a rendezvous that
 * never completes says an impostor was there.
 */
export class RefusalLog {
  readonly #log: Logger;
  readonly #peers = new Set<string>();
  #count = 0;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Records one refusal of `peer` (an identity or address, never a secret) for `why`. */
  refuse(peer: string, why: string): void {
    this.#count++;
    const first = !this.#peers.has(peer) && this.#peers.size < MAX_REMEMBERED_PEERS;
    if (first) this.#peers.add(peer);
    if (first || this.#count % 1000 === 0) this.#log.warn({ peer, refused: this.#count }, `refused a peer without the group secret: ${why}`);
  }

  /** Refusals so far. */
  get count(): number {
    return this.#count;
  }

  /** `"; refused N messages or connections from peers without the group secret"`, or "" when none. */
  summary(): string {
    return this.#count === 0 ? "" : `; refused ${this.#count} messages or connections from peers without the group secret`;
  }
}
