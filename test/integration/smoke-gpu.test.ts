// `npm run smoke:gpu` (scripts/smoke-gpu/main.ts) end to end against the fake
// driver: 4 fake GPUs, one rank each, every check in one table; a wrong kernel
// result fails the run; no driver is not a failure.
import { spawn, type ChildProcess } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";
import { probeEnv, requireBuiltAddon } from "../fixtures/devices/spawn-probe.js";
import { isRunning, waitFor } from "../helpers/processes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCRIPT = join(ROOT, "scripts", "smoke-gpu", "main.ts");

let fake: FakeDriver;
const live = new Set<ChildProcess>();
const rankPids: number[] = [];

beforeAll(() => {
  requireBuiltAddon();
  fake = buildFakeDriver();
});
afterAll(() => fake?.remove());
afterEach(async () => {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
  // The ranks are the script's children, not ours: check the pids its table printed.
  const gone = await waitFor(() => rankPids.every((pid) => !isRunning(pid)), 15_000);
  expect(gone, `rank processes left behind: ${rankPids.filter(isRunning).join(", ")}`).toBe(true);
  rankPids.length = 0;
});

interface Row {
  check: string;
  target: string;
  status: string;
  detail: string;
}

/** Runs the smoke script to completion; returns its exit code and its table's rows. */
function smoke(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; rows: Row[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", SCRIPT], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c));
    child.stderr.on("data", (c: Buffer) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => {
      live.delete(child);
      const lines = stdout.trimEnd().split("\n");
      const rows = lines.slice(1, -1).map((line) => {
        const [check = "", target = "", status = "", ...detail] = line.split(/ {2,}/);
        return { check, target, status, detail: detail.join("  ") };
      });
      for (const row of rows) {
        const pid = /pid (\d+)/.exec(row.detail)?.[1];
        if (pid) rankPids.push(Number(pid));
      }
      resolve({ code, stdout, stderr, rows });
    });
  });
}

const uuid = (i: number): string => `GPU-fa4e0000-0000-4000-8000-00000000000${i}`;
const fakeEnv = (extra: Record<string, string> = {}) => probeEnv({ MULTIRANK_FAKE_DRIVER: fake.path, FAKE_CUDA_DEVICE_COUNT: "4", FAKE_CUDA_DEVICE_CPUS: "0;0;1;1", ...extra });

describe("npm run smoke:gpu", () => {
  it("on 4 fake GPUs: every rank on its own planned device, pinned near it, adding correctly; exits 0", async () => {
    const { code, stdout, stderr, rows } = await smoke(fakeEnv());
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout.split("\n")[0]).toMatch(/^CHECK\s+TARGET\s+STATUS\s+DETAIL$/);
    expect(rows.find((r) => r.check === "driver")).toMatchObject({ status: "ok" });
    expect(rows.filter((r) => r.check === "discovery").map((r) => r.target)).toEqual(["gpu 0", "gpu 1", "gpu 2", "gpu 3"]);
    const contexts = rows.filter((r) => r.check === "device context");
    expect(contexts.map((r) => [r.target, r.status])).toEqual([0, 1, 2, 3].map((i) => [`rank ${i}`, "ok"]));
    contexts.forEach((row, i) => expect(row.detail).toContain(`${uuid(i)} (ordinal ${i}), as planned`));
    const kernels = rows.filter((r) => r.check === "vector add");
    expect(kernels.map((r) => r.status)).toEqual(["ok", "ok", "ok", "ok"]);
    kernels.forEach((row, i) => expect(row.detail).toContain(`on ${uuid(i)}`));
    expect(rows.filter((r) => r.check === "cpu affinity").map((r) => r.status)).toEqual(["ok", "ok", "ok", "ok"]);
    // What the fake cannot prove is listed, not passed over; so is the LLM app's place.
    expect(rows.find((r) => r.check === "PTX JIT and device execution")).toMatchObject({ status: "skipped" });
    expect(rows.find((r) => r.check === "LLM app on GPU vs CPU tokens/s")).toMatchObject({ status: "skipped" });
    expect(rows.some((r) => r.status === "FAILED")).toBe(false);
    expect(rankPids).toHaveLength(4);
  });

  it("a wrong kernel result fails the vector add rows and the run", async () => {
    const { code, stdout, rows } = await smoke(fakeEnv({ FAKE_CUDA_KERNEL_WRONG: "1" }));
    expect(code).toBe(1);
    const kernels = rows.filter((r) => r.check === "vector add");
    expect(kernels.map((r) => r.status)).toEqual(["FAILED", "FAILED", "FAILED", "FAILED"]);
    expect(kernels[0]!.detail).toMatch(/^wrong result: max error 1,/);
    expect(stdout.trimEnd().split("\n").at(-1)).toMatch(/^\d+ ok, 4 failed, \d+ skipped$/);
  });

  it("a failing driver call fails its rank's row, naming the call", async () => {
    const { code, rows } = await smoke(fakeEnv({ FAKE_CUDA_FAIL_CALL: "cuLaunchKernel" }));
    expect(code).toBe(1);
    const kernel = rows.find((r) => r.check === "vector add" && r.target === "rank 2");
    expect(kernel).toMatchObject({ status: "FAILED", detail: `cuLaunchKernel failed on device 2 (${uuid(2)}): CUDA_ERROR_LAUNCH_FAILED` });
  });

  it("without a driver: says so and exits 0", async () => {
    const { code, stdout, rows } = await smoke(probeEnv({ MULTIRANK_FAKE_DRIVER: join(tmpdir(), "multirank-no-such-driver.so") }));
    expect(code, stdout).toBe(0);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ check: "driver", status: "skipped" });
    expect(rows[0]!.detail).toMatch(/^no CUDA driver on this machine/);
  });
});
