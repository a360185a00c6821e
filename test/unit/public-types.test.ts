import { describe, expectTypeOf, it } from "vitest";
import {
  callSignal,
  DistributedRunner,
  DistributedWorker,
  type CallContext,
  type CallOptions,
  type DistributedRunnerOptions,
  type MultirankError,
  type ProcessGroup,
  type RunnerState,
  type WorkerDevice,
} from "../../src/index.js";

describe("public API types", () => {
  it("runner methods have the documented shapes", () => {
    expectTypeOf<DistributedRunnerOptions["worker"]>().toEqualTypeOf<string | URL>();
    expectTypeOf(DistributedRunner.prototype.invoke<{ text: string }>).returns.toEqualTypeOf<Promise<{ text: string }>>();
    expectTypeOf(DistributedRunner.prototype.gatherErrors).returns.toEqualTypeOf<MultirankError[]>();
    expectTypeOf(DistributedRunner.prototype.isAlive).returns.toEqualTypeOf<boolean>();
    expectTypeOf<DistributedRunner["state"]>().toEqualTypeOf<RunnerState>();
    expectTypeOf<DistributedRunner["devices"]>().toEqualTypeOf<readonly WorkerDevice[]>();
    // Checked by the compiler (npm run typecheck); never called.
    const shapes = (runner: DistributedRunner): void => {
      // asTextEvents narrows the stream to ready-to-send Buffers.
      expectTypeOf(runner.stream({}, { asTextEvents: true })).toEqualTypeOf<AsyncGenerator<Buffer, void, undefined>>();
      expectTypeOf(runner.stream<{ token: string }>({})).toEqualTypeOf<AsyncGenerator<{ token: string }, void, undefined>>();
      expectTypeOf(runner[Symbol.asyncDispose]).returns.toEqualTypeOf<Promise<void>>();
    };
    expectTypeOf(shapes).toBeFunction();
  });

  it("a worker subclass gets typed input, output, context and group", () => {
    class Typed extends DistributedWorker<{ n: number }, { doubled: number }> {
      override call(input: { n: number }, ctx: CallContext): { doubled: number } {
        expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
        expectTypeOf(ctx.requestId).toEqualTypeOf<number>();
        return { doubled: input.n * 2 };
      }
    }
    expectTypeOf<Typed["group"]>().toEqualTypeOf<ProcessGroup>();
    expectTypeOf<Typed["rank"]>().toEqualTypeOf<number>();
    expectTypeOf<Typed["device"]>().toEqualTypeOf<WorkerDevice>();
    expectTypeOf<ProcessGroup["allReduce"]>().parameter(0).toEqualTypeOf<Float32Array | Float64Array | Int32Array>();
  });

  it("functions: callSignal, and the host's optional onStart", () => {
    expectTypeOf(callSignal).returns.toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<CallOptions["onStart"]>().toEqualTypeOf<(() => void) | undefined>();
  });
});
