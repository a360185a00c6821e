import type { GroupRendezvous } from "../transport/messages.js";
import { joinGroupSecret } from "../transport/join-info.js";
import { deferred, type Deferred } from "../util/deferred.js";
import { checkJoinHello, type AdmittedRank, type RefusedHello } from "./join-check.js";

/** What the runner knows of a rank that joined: where it runs. */
export interface JoinedRank {
  rank: number;
  host: string;
  pid: number;
}

/**
 * The ranks of an attach-mode session (`launcher: "external"`): who joined,
 * from which host, where rank 0 said the process group meets, and which
 * ranks finished their teardown. The session routes; this keeps the account.
 */
export class RankJoins {
  readonly #worldSize: number;
  readonly #secret: string;
  readonly #joined = new Map<number, JoinedRank>();
  readonly #tornDown = new Set<number>();
  #allTornDown: Deferred<void> | undefined;
  #group: { masterAddr: string; masterPort: number } | undefined;

  /** `secret`: the run's secret (hex), from the join string. */
  constructor(worldSize: number, secret: string) {
    this.#worldSize = worldSize;
    this.#secret = secret;
  }

  /** Checks a hello (see {@link checkJoinHello}); an admitted rank counts as joined from now on. */
  admit(hello: unknown): AdmittedRank | RefusedHello {
    const verdict = checkJoinHello(hello, { worldSize: this.#worldSize, secret: this.#secret, joined: new Set(this.#joined.keys()) });
    if (!verdict.ok) return verdict;
    this.#joined.set(verdict.rank, { rank: verdict.rank, host: verdict.host, pid: verdict.pid });
    if (verdict.group) this.#group = verdict.group;
    return verdict;
  }

  /** True once every rank joined. */
  get complete(): boolean {
    return this.#joined.size === this.#worldSize;
  }

  /** Rank `rank`'s host and pid, once it joined. */
  get(rank: number): JoinedRank | undefined {
    return this.#joined.get(rank);
  }

  /** Ranks that have not joined, ascending. */
  missing(): number[] {
    return [...Array(this.#worldSize).keys()].filter((rank) => !this.#joined.has(rank));
  }

  /** Where the group meets (rank 0's report) and its secret, derived from the run's; undefined until rank 0 joined. */
  rendezvous(): GroupRendezvous | undefined {
    return this.#group && { ...this.#group, secret: joinGroupSecret(this.#secret) };
  }

  /** `rank` said `teardown-done`: it is about to exit. */
  tornDown(rank: number): void {
    this.#tornDown.add(rank);
    if (this.#allTornDown && [...this.#joined.keys()].every((r) => this.#tornDown.has(r))) this.#allTornDown.resolve();
  }

  /** Resolves once every joined rank finished its teardown. */
  /** `rank` went silent (killed, cut off): nothing more will come from it, a teardown reply included. */
  lost(rank: number): void {
    this.tornDown(rank);
  }

  allTornDown(): Promise<void> {
    if ([...this.#joined.keys()].every((r) => this.#tornDown.has(r))) return Promise.resolve();
    this.#allTornDown ??= deferred<void>();
    return this.#allTornDown.promise;
  }
}
