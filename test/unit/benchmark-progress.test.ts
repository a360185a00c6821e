import { describe, expect, it } from "vitest";
import type { BenchmarkProgress } from "../../src/benchmark/options.js";
import { ProgressBar, formatProgressLine } from "../../src/benchmark/progress-bar.js";

const at = (completed: number, total = 200, phase: BenchmarkProgress["phase"] = "measure"): BenchmarkProgress => ({
  phase,
  worldSize: 2,
  worldSizeIndex: 1,
  worldSizeCount: 3,
  completed,
  total,
});

describe("formatProgressLine", () => {
  it("shows the world size, the phase, a bar and the count, in `width` columns", () => {
    expect(formatProgressLine(at(50), 60)).toHaveLength(60);
    expect(formatProgressLine(at(50), 60)).toBe("world size 2 (2/3) measure [#####..................]  50/200");
    expect(formatProgressLine(at(200), 60)).toBe("world size 2 (2/3) measure [#######################] 200/200");
    expect(formatProgressLine(at(0), 200)).toBe(`world size 2 (2/3) measure [${".".repeat(40)}]   0/200`);
  });

  it("shows phases without requests as text alone, and drops the bar when narrow", () => {
    expect(formatProgressLine(at(0, 0, "start"))).toBe("world size 2 (2/3) start");
    expect(formatProgressLine(at(5, 10), 30)).toBe("world size 2 (2/3) measure  5/");
  });
});

describe("ProgressBar", () => {
  const sink = (isTTY: boolean) => {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 61, write: (chunk: string) => writes.push(chunk) } };
  };

  it("writes nothing when the stream is not a TTY", () => {
    const { writes, stream } = sink(false);
    const bar = new ProgressBar(stream);
    bar.update(at(1));
    bar.clear();
    expect(bar.enabled).toBe(false);
    expect(writes).toEqual([]);
  });

  it("redraws in place on a TTY, throttled within a phase, and clears the line", () => {
    const { writes, stream } = sink(true);
    const bar = new ProgressBar(stream, 60_000);
    bar.update(at(1));
    bar.update(at(2)); // same phase, too soon: skipped
    bar.update(at(200)); // the phase's last update always draws
    bar.update(at(0, 0, "stop")); // a new phase always draws
    bar.clear();
    bar.clear();
    expect(writes).toEqual([
      "\rworld size 2 (2/3) measure [.......................]   1/200\x1b[K",
      "\rworld size 2 (2/3) measure [#######################] 200/200\x1b[K",
      "\rworld size 2 (2/3) stop\x1b[K",
      "\r\x1b[K",
    ]);
  });

  it("assumes 80 columns when the terminal reports none", () => {
    const writes: string[] = [];
    new ProgressBar({ isTTY: true, columns: 0, write: (chunk: string) => writes.push(chunk) }).update(at(100));
    expect(writes).toEqual([`\r${formatProgressLine(at(100), 79)}\x1b[K`]);
    expect(formatProgressLine(at(100), 79)).toBe(`world size 2 (2/3) measure [${"#".repeat(20)}${".".repeat(20)}] 100/200`);
  });
});
