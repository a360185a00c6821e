import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ArtifactError } from "../../src/errors.js";
import { readTarGz, writeTarGz } from "../../src/deploy/tar.js";

describe("deployment archives", () => {
  it("round-trips files, long paths included, and writes the same bytes for the same files in any order", () => {
    const long = `${"d".repeat(90)}/${"e".repeat(60)}/file.txt`;
    const files = [
      { path: "b.txt", data: Buffer.from("bee") },
      { path: long, data: Buffer.alloc(1000, 7) },
      { path: "a/empty", data: Buffer.alloc(0) },
    ];
    const archive = writeTarGz(files);
    expect(writeTarGz([...files].reverse()).equals(archive)).toBe(true);
    const read = readTarGz(archive);
    expect([...read.keys()].sort()).toEqual(["a/empty", "b.txt", long].sort());
    expect(read.get(long)!.equals(Buffer.alloc(1000, 7))).toBe(true);
  });

  it("refuses paths that escape, and archives past the size limit", () => {
    expect(() => writeTarGz([{ path: "../x", data: Buffer.alloc(1) }])).toThrow(ArtifactError);
    expect(() => writeTarGz([{ path: "/etc/x", data: Buffer.alloc(1) }])).toThrow(/escapes/);
    const big = writeTarGz([{ path: "big", data: Buffer.alloc(100_000) }]);
    expect(() => readTarGz(big, { maxBytes: 10_000 })).toThrow(/over 10000 bytes/);
    expect(() => readTarGz(gzipSync(Buffer.from("garbage")))).toThrow(ArtifactError);
  });
});
