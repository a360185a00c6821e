/**
 * The runner's control channel is a unix stream socket by default on one
 * host and ZeroMQ otherwise; the rest of the suite runs the default. This
 * file runs the core request paths over each of them.
 */
import { describe, expect, it } from "vitest";
import { RankError } from "../../src/index.js";
import { childPids } from "../helpers/processes.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

describe.each([
  ["auto", /^unix:\//],
  ["ipc", /^ipc:\/\//],
  ["tcp", /^tcp:\/\/127\.0\.0\.1:\d+$/],
] as const)("control transport %s", (transport, endpoint) => {
  it("invokes, streams, cancels, carries binary both ways, reports rank errors and stops clean", async () => {
    const runner = makeRunner({ worker: fixture("probe"), worldSize: 2, transport });
    await runner.start({ model: "m" });
    expect(runner.endpoint).toMatch(endpoint);

    const me = await runner.invoke<{ rank: number; setupArgs: unknown }>({ op: "whoami" });
    expect(me).toMatchObject({ rank: 0, setupArgs: { model: "m" } });

    const items: unknown[] = [];
    for await (const item of runner.stream({ op: "stream", count: 300 })) items.push(item);
    expect(items).toHaveLength(301);
    expect(items.at(-1)).toEqual({ count: 300 });

    // 2 MiB: through shared memory on one host, inline over tcp; 300 KiB results come back inline.
    const big = Buffer.alloc(2 * 1024 * 1024, 3);
    expect(await runner.invoke({ op: "inspect", value: big })).toMatchObject({ kind: "Buffer", byteLength: big.length, rank: 0 });
    const bytes = await runner.invoke<{ data: Buffer }>({ op: "bytes", size: 300 * 1024 });
    expect(Buffer.isBuffer(bytes.data) && bytes.data.length === 300 * 1024 && bytes.data.every((b) => b === 7)).toBe(true);

    const controller = new AbortController();
    const slow = runner.invoke({ op: "sleep", ms: 10_000 }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(slow).rejects.toMatchObject({ code: "MULTIRANK_ERR_ABORTED" });

    const error = await runner.invoke({ op: "throw", ranks: [1] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RankError);
    expect(error).toMatchObject({ rank: 1, phase: "call" });

    // Pipelined callers all get their own answers.
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => runner.invoke({ op: "echo", value: i })));
    expect(answers).toEqual(Array.from({ length: 50 }, (_, i) => i));

    await runner.stop();
    expect(childPids()).toEqual([]);
  });
});
