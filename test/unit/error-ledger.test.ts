/**
 * The runner's error ledger: each record a rank appends to its error file is
 * gathered once, the ranks' errors before the runner's own; each session
 * keeps its ranks' fatal errors apart, and a released session's files are
 * read a last time.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RankError, TimeoutError } from "../../src/errors.js";
import { ErrorLedger } from "../../src/runner/error-ledger.js";
import { appendErrorRecord } from "../../src/transport/error-file.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function runDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "multirank-ledger-test-"));
  dirs.push(dir);
  return dir;
}

function record(rank: number, message: string): Parameters<typeof appendErrorRecord>[1] {
  return { rank, phase: "call", error: { name: "Error", message }, time: Date.now() };
}

describe("error ledger", () => {
  it("gathers each rank record once, the ranks' before the runner's own, and clears", () => {
    const ledger = new ErrorLedger();
    const session = ledger.openSession(runDir());
    const file0 = session.fileFor(0);
    const file1 = session.fileFor(1);
    expect(file0).toMatch(/rank-0\.errors\.jsonl$/);
    appendErrorRecord(file0, record(0, "first"));
    session.harvest();
    const timeout = new TimeoutError("slow", 1000);
    ledger.record(timeout);
    expect(ledger.lastRecorded).toBe(timeout);
    appendErrorRecord(file1, record(1, "second"));
    session.harvest();
    session.harvest(); // nothing new: nothing twice
    const errors = ledger.gatherErrors();
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining("first"), expect.stringContaining("second"), "slow"]);
    expect(errors[1]).toBeInstanceOf(RankError);
    expect((errors[1] as RankError).rank).toBe(1);
    expect(ledger.gatherErrors()).toEqual([]);
  });

  it("keeps each rank's fatal error per session, and release reads the files a last time", () => {
    const ledger = new ErrorLedger();
    const first = ledger.openSession(runDir());
    const second = ledger.openSession(runDir());
    const fatal = new RankError({ name: "Error", message: "boom" }, 0, "process");
    first.setFatal(0, fatal);
    expect(first.fatal(0)).toBe(fatal);
    expect(second.fatal(0)).toBeUndefined();
    const file = first.fileFor(0);
    appendErrorRecord(file, record(0, "late"));
    first.release();
    expect(ledger.gatherErrors()).toHaveLength(1);
  });
});
