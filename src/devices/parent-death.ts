/** The parent-death signal, so a rank never outlives the runner that spawned it. */
import { constants } from "node:os";
import { ValidationError } from "../errors.js";
import { callNative } from "./addon.js";

/** Options for {@link setParentDeathSignal}. */
export interface ParentDeathSignalOptions {
  /**
   * The pid the parent is expected to have. After arming the signal the rank
   * checks that its parent is still this process; if not, the parent died
   * before the signal was armed and the rank signals itself at once.
   * @default Number(process.env.MULTIRANK_PARENT_PID), which
   *   {@link childEnvForPlan} sets; no check when that is unset.
   */
  parentPid?: number;
}

/**
 * Asks the kernel (`prctl(PR_SET_PDEATHSIG)`) to send `signal` to this process
 * when its parent dies, even by SIGKILL. Call it first thing in a rank.
 * Linux only; elsewhere it throws NativeError status `"ENOSYS"`.
 *
 * @param signal defaults to `"SIGKILL"`, which no handler can delay.
 * @throws {ValidationError} for an unknown signal name.
 * @throws {NativeError} when prctl fails or the addon is not built.
 * @example setParentDeathSignal(); // rank dies with the runner
 */
export function setParentDeathSignal(signal: NodeJS.Signals = "SIGKILL", options: ParentDeathSignalOptions = {}): void {
  const signo = (constants.signals as Record<string, number | undefined>)[signal];
  if (typeof signo !== "number") throw new ValidationError(`signal must be a signal name such as "SIGKILL", got ${String(signal)}`);
  const fromEnv = Number(process.env.MULTIRANK_PARENT_PID);
  const parentPid = options.parentPid ?? (Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 0);
  if (!Number.isInteger(parentPid) || parentPid < 0) {
    throw new ValidationError(`options.parentPid must be a positive integer, got ${String(options.parentPid)}`);
  }
  const parentAlive = callNative((addon) => addon.setParentDeathSignal(signo, parentPid));
  // prctl cannot fire for a parent that is already gone: do what it would have done.
  if (!parentAlive) process.kill(process.pid, signal);
}

/**
 * The signal currently armed by {@link setParentDeathSignal}, or `undefined`.
 * @throws {NativeError} when the addon is not built.
 */
export function getParentDeathSignal(): NodeJS.Signals | undefined {
  const signo = callNative((addon) => addon.getParentDeathSignal());
  if (signo === 0) return undefined;
  const entry = Object.entries(constants.signals).find(([, value]) => value === signo);
  return entry ? (entry[0] as NodeJS.Signals) : undefined;
}
