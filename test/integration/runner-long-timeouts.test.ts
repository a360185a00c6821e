/**
 * Runner timeouts above a native timer's 24.8 days are honoured (not clamped,
 * not fired at once) and those above MAX_DURATION_SECONDS are refused with a
 * ValidationError naming the option, before anything is spawned or sent.
 */
import { describe, expect, it } from "vitest";
import { MAX_DURATION_SECONDS } from "../../src/util/timers.js";
import { cleanUpRunners, fixture, makeRunner } from "../helpers/runners.js";

cleanUpRunners();

const LONG = 2.2e6; // seconds: 2.2e9 ms, above 2^31-1 ms
const TOO_LONG = MAX_DURATION_SECONDS + 1;
const invalid = (field: string) => ({ code: "MULTIRANK_ERR_INVALID_ARGUMENT", message: expect.stringContaining(field) });

describe("runner timeouts above 24.8 days", () => {
  it("options, start, invoke and stream take them and run normally; above 365 days each is refused, naming the option", async () => {
    expect(() => makeRunner({ worker: fixture("probe"), timeout: TOO_LONG })).toThrow(/options\.timeout must be at most/);
    expect(() => makeRunner({ worker: fixture("probe"), keepaliveInterval: TOO_LONG })).toThrow(/options\.keepaliveInterval must be at most/);
    const refused = makeRunner({ worker: fixture("probe"), worldSize: 1 });
    await expect(refused.start({ timeout: TOO_LONG })).rejects.toMatchObject(invalid("start options.timeout"));
    expect(refused.state).toBe("idle");

    const runner = makeRunner({ worker: fixture("probe"), worldSize: 1, timeout: LONG, keepaliveInterval: LONG });
    await runner.start({ timeout: LONG });
    expect(await runner.invoke({ op: "sleep", ms: 30 }, { timeout: LONG })).toMatchObject({ slept: 30 });
    const items: unknown[] = [];
    for await (const item of runner.stream({ op: "stream", count: 2, delayMs: 20 }, { timeout: LONG, streamingTimeout: LONG })) items.push(item);
    expect(items).toEqual([{ i: 0, rank: 0 }, { i: 1, rank: 0 }, { count: 2 }]);

    await expect(runner.invoke({ op: "echo", value: 1 }, { timeout: TOO_LONG })).rejects.toMatchObject(invalid("options.timeout"));
    await expect(runner.stream({ op: "echo", value: 1 }, { streamingTimeout: TOO_LONG }).next()).rejects.toMatchObject(invalid("options.streamingTimeout"));
    await expect(runner.stream({ op: "echo", value: 1 }, { timeout: TOO_LONG }).next()).rejects.toMatchObject(invalid("options.timeout"));
    expect(await runner.invoke({ op: "echo", value: 2 })).toBe(2);
  });
});
