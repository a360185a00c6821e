/** `createGateway({ queue })`: the Redis queue's options, checked once, with messages naming the field. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.js";
import { redactUrl, resolveQueueOptions, type QueueOptions } from "../../src/queue/queue-options.js";

function refusal(options: unknown): ValidationError {
  try {
    resolveQueueOptions(options as QueueOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error(`${JSON.stringify(options)} was accepted`);
}

describe("resolveQueueOptions", () => {
  it("applies the defaults", () => {
    expect(resolveQueueOptions({ redis: "redis://127.0.0.1:6379" })).toEqual({ url: "redis://127.0.0.1:6379", prefix: "multirank", stalledAfterMs: 15_000, maxRecoveries: 2 });
    expect(resolveQueueOptions({ redis: "rediss://h:1/2", prefix: "fleet-a", stalledAfter: 2.5, maxRecoveries: 0 })).toEqual({
      url: "rediss://h:1/2",
      prefix: "fleet-a",
      stalledAfterMs: 2500,
      maxRecoveries: 0,
    });
  });

  it("refuses a URL that is not redis:// or rediss://, naming the field", () => {
    for (const redis of ["http://x", "redis:/x", "", "127.0.0.1:6379", 6379, undefined]) {
      const error = refusal({ redis });
      expect(error.code).toBe("MULTIRANK_ERR_INVALID_ARGUMENT");
      expect(error.message).toContain("options.queue.redis");
    }
  });

  it("hides a password in the URL it quotes", () => {
    const error = refusal({ redis: "redis://user:hunter2@[bad" });
    expect(error.message).toContain("options.queue.redis");
    expect(error.message).not.toContain("hunter2");
    expect(redactUrl("redis://:pw@h:1")).toBe("redis://:***@h:1");
    expect(redactUrl("rediss://pw@h:1/0")).toBe("rediss://***@h:1/0");
    expect(redactUrl("redis://h:1")).toBe("redis://h:1");
  });

  it("refuses an unknown key, suggesting the one meant", () => {
    const error = refusal({ redis: "redis://h:1", stalledafter: 5 });
    expect(error.message).toContain("options.queue");
    expect(error.message).toContain("stalledafter");
    expect(error.message).toContain("stalledAfter");
  });

  it("refuses stalledAfter 0, under a second or not a number; a bad prefix; a bad maxRecoveries", () => {
    for (const stalledAfter of [0, 0.5, -1, "15", Number.NaN]) expect(refusal({ redis: "redis://h:1", stalledAfter }).message).toContain("options.queue.stalledAfter");
    for (const prefix of ["", "a b", "x".repeat(65), 3]) expect(refusal({ redis: "redis://h:1", prefix }).message).toContain("options.queue.prefix");
    for (const maxRecoveries of [-1, 1.5, "2"]) expect(refusal({ redis: "redis://h:1", maxRecoveries }).message).toContain("options.queue.maxRecoveries");
  });

  it("refuses a queue option that is not an object", () => {
    for (const options of [null, "redis://h:1", 3]) expect(refusal(options).message).toContain("options.queue");
  });
});
