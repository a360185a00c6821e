import { curveKeyPair } from "zeromq";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.js";
import { decodeJoinInfo, encodeJoinInfo, type JoinInfo } from "../../src/transport/join-info.js";

const info: JoinInfo = { endpoint: "tcp://10.0.0.1:5555", serverKey: curveKeyPair().publicKey, secret: "ab".repeat(32), worldSize: 4 };

describe("join strings", () => {
  it("round-trip as one opaque string", () => {
    const text = encodeJoinInfo(info);
    expect(text).toMatch(/^mrj1\.[A-Za-z0-9_-]+$/);
    expect(decodeJoinInfo(`${text}\n`)).toEqual(info);
  });

  it("refuse what is not one, without echoing the text (it may hold a secret)", () => {
    expect(() => decodeJoinInfo("nonsense-secret", "MULTIRANK_JOIN")).toThrow(ValidationError);
    try {
      decodeJoinInfo("nonsense-secret", "MULTIRANK_JOIN");
    } catch (error) {
      expect((error as Error).message).toMatch(/^MULTIRANK_JOIN is not a multirank join string/);
      expect((error as Error).message).not.toContain("nonsense-secret");
    }
  });

  it("refuse a damaged one, naming the field", () => {
    const damaged = (fields: unknown[]): string => `mrj1.${Buffer.from(JSON.stringify(fields)).toString("base64url")}`;
    expect(() => decodeJoinInfo(damaged(["ipc:///x", info.serverKey, info.secret, 4]))).toThrow(/endpoint is not tcp/);
    expect(() => decodeJoinInfo(damaged([info.endpoint, "short", info.secret, 4]))).toThrow(/server key/);
    expect(() => decodeJoinInfo(damaged([info.endpoint, info.serverKey, "zz", 4]))).toThrow(/secret is not hex/);
    expect(() => decodeJoinInfo(damaged([info.endpoint, info.serverKey, info.secret, 0]))).toThrow(/world size/);
    expect(() => decodeJoinInfo("mrj1.%%%")).toThrow(/damaged/);
  });
});
