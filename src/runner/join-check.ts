import { timingSafeEqual } from "node:crypto";
import { joinToken } from "../transport/join-info.js";

/** A joining rank's hello, once checked: who it is and where it runs. */
export interface AdmittedRank {
  ok: true;
  rank: number;
  host: string;
  pid: number;
  /** Rank 0's report of where the process group should meet. */
  group: { masterAddr: string; masterPort: number } | undefined;
}

/** Why a hello was refused: sent back to the rank and logged (never holding the secret). */
export interface RefusedHello {
  ok: false;
  reason: string;
}

/** What a hello is checked against. */
export interface JoinRules {
  worldSize: number;
  /** The run's secret, hex: tokens are {@link joinToken} of it. */
  secret: string;
  /** Ranks already joined: a second hello for one of them is refused. */
  joined: ReadonlySet<number>;
}

/**
 * Judges the hello of a rank that joins a runner in attach mode. The rank
 * made its own CURVE keys, so the handshake let it in without knowing it: its
 * token (HMAC-SHA256 of `join:<rank>` under the run's secret, compared in
 * constant time) is what proves it belongs to this run. A wrong world size, a
 * rank outside the world or one already joined is refused too, so a stray
 * process of another job cannot take a real rank's place.
 */
export function checkJoinHello(hello: unknown, rules: JoinRules): AdmittedRank | RefusedHello {
  const refuse = (reason: string): RefusedHello => ({ ok: false, reason });
  if (typeof hello !== "object" || hello === null) return refuse("the hello is not an object");
  const h = hello as Record<string, unknown>;
  const { rank, worldSize, token, host, pid } = h;
  if (typeof rank !== "number" || !Number.isInteger(rank) || rank < 0) return refuse("the hello has no valid rank");
  if (typeof worldSize !== "number" || !Number.isInteger(worldSize)) return refuse(`rank ${rank}'s hello has no world size`);
  if (worldSize !== rules.worldSize) return refuse(`rank ${rank} says the world size is ${worldSize}, but the runner's is ${rules.worldSize}`);
  if (rank >= rules.worldSize) return refuse(`rank ${rank} is outside a world of size ${rules.worldSize}`);
  if (typeof token !== "string" || !tokenMatches(token, joinToken(rules.secret, rank))) return refuse(`rank ${rank}'s hello has a wrong token (not this run's join string)`);
  if (rules.joined.has(rank)) return refuse(`rank ${rank} has already joined`);
  const hostName = typeof host === "string" && host.length > 0 ? host.slice(0, 255) : "unknown host";
  const processId = typeof pid === "number" && Number.isInteger(pid) ? pid : -1;
  let group: AdmittedRank["group"];
  const reported = h.group as { masterAddr?: unknown; masterPort?: unknown } | undefined;
  if (rank === 0) {
    const { masterAddr, masterPort } = reported ?? {};
    if (typeof masterAddr !== "string" || masterAddr === "" || typeof masterPort !== "number" || !Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) {
      return refuse("rank 0's hello does not say where the process group meets (group.masterAddr and group.masterPort)");
    }
    group = { masterAddr, masterPort };
  }
  return { ok: true, rank, host: hostName, pid: processId, group };
}

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
