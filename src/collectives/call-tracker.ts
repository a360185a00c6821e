import { AbortError, CollectiveMismatchError, PeerLostError, TimeoutError } from "../errors.js";
import type { CollectiveCall } from "./backend.js";
import { EpochClock } from "./epochs.js";
import type { Header } from "./wire.js";

/** What an abort message (`x`) carries: the failed call's error, as its rank saw it. */
export type AbortRecord = NonNullable<Header["e"]> & { timeoutMs?: number };

/** The collectives of one epoch on this rank, and what peers sent for those not begun yet. */
interface EpochCalls {
  readonly running: Map<number, CollectiveCall>;
  /** Aborts that peers sent for collectives this rank has not started yet. */
  readonly earlyAborts: Map<number, Error>;
  /** Per collective not begun here yet: the distinct signatures peers sent for it. */
  readonly earlySignatures: Map<number, { src: number; signature: string | undefined }[]>;
  /** Collectives below this sequence number are over here. */
  finishedBelow: number;
}

/** Rebuilds the error a peer reported when it abandoned a collective. */
function errorFromAbort(e: AbortRecord): Error {
  switch (e.code) {
    case "MULTIRANK_ERR_TIMEOUT":
      return new TimeoutError(e.message, e.timeoutMs ?? 0, { rank: e.rank });
    case "MULTIRANK_ERR_ABORTED":
      return new AbortError(e.message, { rank: e.rank });
    case "MULTIRANK_ERR_COLLECTIVE_MISMATCH":
      return new CollectiveMismatchError(e.message, { rank: e.rank });
    default:
      return new PeerLostError(e.message, { rank: e.rank });
  }
}

/**
 * The bookkeeping of one rank's collective calls in flight, per epoch: which
 * are running, which have finished, and what peers said about the ones this
 * rank has not begun yet (a faster peer's abort or its different signature),
 * so that the call ends as soon as it begins. Moves no bytes: the backend
 * feeds it the peers' messages and asks it what a call's fate is.
 */
export class CallTracker {
  readonly #rank: number;
  readonly #clock = new EpochClock();
  /** Per epoch still live here (see {@link EpochClock}): its collectives. */
  readonly #epochs = new Map<number, EpochCalls>();
  /** Errors that came from peers: they are not echoed back. */
  readonly #remoteErrors = new WeakSet<Error>();

  constructor(rank: number) {
    this.#rank = rank;
  }

  /** Whether messages of `epoch` may still be read here (see {@link EpochClock.live}). */
  live(epoch: number): boolean {
    return this.#clock.live(epoch);
  }

  /** Whether `error` was reported by a peer (so it need not be told back to the peers). */
  fromPeer(error: Error): boolean {
    return this.#remoteErrors.has(error);
  }

  /** Registers `call` as running; ends it at once if a peer already abandoned it or made a different call. */
  begin(call: CollectiveCall): void {
    const calls = this.#callsOf(call.epoch);
    calls.running.set(call.seq, call);
    const early = calls.earlyAborts.get(call.seq);
    const differing = calls.earlySignatures.get(call.seq)?.find((s) => s.signature !== call.signature);
    if (early) call.abort(early);
    else if (differing) call.abort(this.mismatch(call, differing.src, differing.signature));
  }

  /**
   * `call` is over here: forgets it and what peers sent about it and the
   * calls before it. Returns false when its epoch was over already (and
   * everything it left went with it).
   */
  finish(call: CollectiveCall): boolean {
    const { epoch, seq } = call;
    const calls = this.#epochs.get(epoch);
    if (!calls) return false;
    calls.running.delete(seq);
    calls.finishedBelow = Math.max(calls.finishedBelow, seq + 1);
    for (const s of calls.earlyAborts.keys()) if (s <= seq) calls.earlyAborts.delete(s);
    for (const s of calls.earlySignatures.keys()) if (s <= seq) calls.earlySignatures.delete(s);
    return true;
  }

  /** Epoch `epoch` starts here; forgets the epochs that are over now. */
  beginEpoch(epoch: number): void {
    this.#clock.begin(epoch);
    this.#forgetOverEpochs();
  }

  /** Epoch `epoch` is over here; forgets it. */
  endEpoch(epoch: number): void {
    this.#clock.end(epoch);
    this.#forgetOverEpochs();
  }

  /**
   * A message of collective `seq` ends the call at once when this rank made a
   * different call there, even if it would never read that peer's messages: a
   * rank that only waits (a broadcast's receiver) would otherwise wait out its
   * timeout. Signatures of collectives not begun here yet are checked at begin.
   */
  checkSignature(epoch: number, seq: number, src: number, signature: string | undefined): void {
    const calls = this.#callsOf(epoch);
    if (seq < calls.finishedBelow) return;
    const call = calls.running.get(seq);
    if (call) {
      if (signature !== call.signature) call.abort(this.mismatch(call, src, signature));
    } else {
      // One signature per distinct call seen is enough: begin() needs any that differs from its own.
      const seen = calls.earlySignatures.get(seq);
      if (!seen) calls.earlySignatures.set(seq, [{ src, signature }]);
      else if (!seen.some((s) => s.signature === signature)) seen.push({ src, signature });
    }
  }

  /**
   * A peer abandoned collective (`epoch`, `seq`) with `e`: the call ends with
   * the same error, now if it runs here, else as soon as it begins.
   */
  peerAbandoned(epoch: number, seq: number, e: AbortRecord): void {
    if (!this.#clock.live(epoch)) return;
    const calls = this.#callsOf(epoch);
    if (seq < calls.finishedBelow) return;
    const error = errorFromAbort(e);
    this.#remoteErrors.add(error);
    const call = calls.running.get(seq);
    if (call) call.abort(error);
    else calls.earlyAborts.set(seq, error);
  }

  /** The error for `call` when peer `src` made call `theirs` at its place. */
  mismatch(call: CollectiveCall, src: number, theirs: string | undefined): CollectiveMismatchError {
    return new CollectiveMismatchError(`collective #${call.seq} does not match across ranks: rank ${this.#rank} called ${call.signature} but rank ${src} called ${theirs}`, { rank: src });
  }

  /** What the abort message of `call` failing here with `error` carries. */
  abortRecord(error: Error): AbortRecord {
    return { code: (error as { code?: string }).code ?? "MULTIRANK_ERR_PEER_LOST", message: error.message, rank: this.#rank, timeoutMs: (error as { timeoutMs?: number }).timeoutMs };
  }

  #callsOf(epoch: number): EpochCalls {
    let calls = this.#epochs.get(epoch);
    if (!calls) this.#epochs.set(epoch, (calls = { running: new Map(), earlyAborts: new Map(), earlySignatures: new Map(), finishedBelow: 0 }));
    return calls;
  }

  /** Drops what peers sent for epochs that are over here (see {@link EpochClock}). */
  #forgetOverEpochs(): void {
    for (const epoch of this.#epochs.keys()) if (!this.#clock.live(epoch)) this.#epochs.delete(epoch);
  }
}
