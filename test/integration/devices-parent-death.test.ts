// prctl(PR_SET_PDEATHSIG): a rank that armed it dies when its parent is
// SIGKILLed, with no death pipe or cleanup code involved.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { isRunning, killAll, probeEnv, requireBuiltAddon, runProbe, track } from "../fixtures/devices/spawn-probe.js";

const parentScript = fileURLToPath(new URL("../fixtures/devices/pdeath-parent.mjs", import.meta.url));
const orphans: number[] = [];

beforeAll(() => requireBuiltAddon());
afterEach(() => {
  killAll();
  for (const pid of orphans.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone: the point of the test
    }
  }
});

async function waitUntilGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isRunning(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !isRunning(pid);
}

describe("parent-death signal", () => {
  it("kills the child within a second of its parent being SIGKILLed", async () => {
    const parent = track(spawn(process.execPath, [parentScript], { env: probeEnv({}), stdio: ["ignore", "pipe", "inherit"] }));
    const lines = createInterface({ input: parent.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once("line", resolve);
      parent.once("exit", () => reject(new Error("parent exited before the child reported")));
    });
    const report = JSON.parse(first) as { ok: true; value: { pid: number; armed: string } };
    expect(report.value.armed).toBe("SIGKILL");
    const childPid = report.value.pid;
    orphans.push(childPid);
    expect(isRunning(childPid)).toBe(true);

    parent.kill("SIGKILL");
    expect(await waitUntilGone(childPid, 1000)).toBe(true);
  });

  it("a child whose parent is already gone when it arms the signal kills itself", async () => {
    // MULTIRANK_PARENT_PID names a pid that is not our parent: the race check fires.
    // The probe's own kill is what ends it; the bound (after which it is killed,
    // which would pass for the wrong reason) must outlast a slow tsx start.
    const result = runProbe("pdeath", probeEnv({ MULTIRANK_PARENT_PID: "1" }), undefined, 60_000);
    await expect(result).rejects.toThrow(/exited SIGKILL without a result/);
  });
});
