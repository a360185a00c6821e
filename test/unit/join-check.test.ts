import { describe, expect, it } from "vitest";
import { checkJoinHello } from "../../src/runner/join-check.js";
import { joinGroupSecret, joinToken } from "../../src/transport/join-info.js";

const secret = "cd".repeat(32);
const rules = { worldSize: 4, secret, joined: new Set<number>([2]) };
const hello = (rank: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  t: "hello",
  rank,
  worldSize: 4,
  host: "node-7",
  pid: 1234,
  token: joinToken(secret, rank),
  ...(rank === 0 ? { group: { masterAddr: "10.0.0.7", masterPort: 29500 } } : {}),
  ...extra,
});

describe("a joining rank's hello", () => {
  it("is admitted with the run's token, naming its host; rank 0 says where the group meets", () => {
    expect(checkJoinHello(hello(1), rules)).toEqual({ ok: true, rank: 1, host: "node-7", pid: 1234, group: undefined });
    expect(checkJoinHello(hello(0), rules)).toMatchObject({ ok: true, rank: 0, group: { masterAddr: "10.0.0.7", masterPort: 29500 } });
  });

  it("is refused with another run's secret, or another rank's token", () => {
    expect(checkJoinHello(hello(1, { token: joinToken("ef".repeat(32), 1) }), rules)).toEqual({ ok: false, reason: expect.stringMatching(/rank 1's hello has a wrong token/) });
    expect(checkJoinHello(hello(1, { token: joinToken(secret, 3) }), rules)).toMatchObject({ ok: false, reason: expect.stringMatching(/wrong token/) });
    expect(checkJoinHello(hello(1, { token: "short" }), rules)).toMatchObject({ ok: false });
    expect(checkJoinHello(hello(1, { token: 42 }), rules)).toMatchObject({ ok: false });
  });

  it("is refused for a wrong world size, naming both numbers", () => {
    expect(checkJoinHello(hello(1, { worldSize: 3 }), rules)).toEqual({ ok: false, reason: "rank 1 says the world size is 3, but the runner's is 4" });
    expect(checkJoinHello(hello(1, { worldSize: undefined }), rules)).toMatchObject({ ok: false });
  });

  it("is refused for a rank outside the world or already joined", () => {
    expect(checkJoinHello(hello(4, { token: joinToken(secret, 4) }), rules)).toMatchObject({ ok: false, reason: "rank 4 is outside a world of size 4" });
    expect(checkJoinHello(hello(2), rules)).toMatchObject({ ok: false, reason: "rank 2 has already joined" });
    expect(checkJoinHello(hello(-1), rules)).toMatchObject({ ok: false });
    expect(checkJoinHello(null, rules)).toMatchObject({ ok: false });
  });

  it("from rank 0 must say where the group meets", () => {
    expect(checkJoinHello(hello(0, { group: undefined }), rules)).toMatchObject({ ok: false, reason: expect.stringMatching(/rank 0's hello does not say where the process group meets/) });
    expect(checkJoinHello(hello(0, { group: { masterAddr: "10.0.0.7", masterPort: 0 } }), rules)).toMatchObject({ ok: false });
  });

  it("never puts the secret in a reason", () => {
    const verdict = checkJoinHello(hello(1, { token: "x" }), rules);
    expect(JSON.stringify(verdict)).not.toContain(secret);
  });
});

describe("join tokens", () => {
  it("differ per rank and from the group's secret, which is derived from the run's", () => {
    expect(joinToken(secret, 0)).toMatch(/^[0-9a-f]{64}$/);
    expect(joinToken(secret, 0)).not.toBe(joinToken(secret, 1));
    expect(joinGroupSecret(secret)).not.toBe(secret);
    expect(joinGroupSecret(secret)).toBe(joinGroupSecret(secret));
  });
});
