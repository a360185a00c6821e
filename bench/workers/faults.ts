import { DistributedWorker, type CallContext } from "multirank";

/** What the reliability benchmark asks for: wait (async), or block one rank's event loop. */
export type FaultsInput = { op: "wait"; ms: number } | { op: "spin"; rank: number; ms: number } | { op: "echo" };

/** Reports through `ctx.progress` / `ctx.log` when it is in place, so the benchmark times from that moment. */
export default class Faults extends DistributedWorker<FaultsInput, unknown> {
  override async call(input: FaultsInput, ctx: CallContext): Promise<unknown> {
    if (input.op === "echo") return "ok";
    if (input.op === "wait") {
      ctx.progress("waiting");
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, input.ms);
        ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(ctx.signal.reason)), { once: true });
      });
      return "waited";
    }
    if (this.rank === input.rank) {
      ctx.log.info("spinning");
      await new Promise((resolve) => setImmediate(resolve));
      const end = Date.now() + input.ms;
      while (Date.now() < end) {
        /* a hung event loop */
      }
    }
    return "spun";
  }
}
