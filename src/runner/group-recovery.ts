import { GROUP_BROKEN_EXIT_CODE } from "../transport/messages.js";
import type { RankExit } from "./rank-process.js";

/**
 * Whether the runner should restart the ranks itself after `exit`: the rank
 * left because its process group broke for good (it exits with
 * {@link GROUP_BROKEN_EXIT_CODE} after a `fatal` saying why), and no other rank
 * of the session died another way first. A rank that crashes breaks its
 * peers' groups too, and then the crash is the story: the runner fails and
 * stays failed, as for any crash, rather than restart into the same crash.
 *
 * @param others how the session's other ranks have exited so far (undefined: still running)
 */
export function restartsAfter(exit: RankExit, others: readonly (RankExit | undefined)[]): boolean {
  if (exit.code !== GROUP_BROKEN_EXIT_CODE) return false;
  return others.every((other) => other === undefined || other.code === GROUP_BROKEN_EXIT_CODE);
}
