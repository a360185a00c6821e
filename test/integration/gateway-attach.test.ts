/**
 * `multirank serve` with an app in attach mode (`launcher: "external"`): the
 * gateway's one runner for the app listens on 127.0.0.1 and writes its join
 * file; `/healthz` says it waits for ranks; the test plays the launcher,
 * starting two `multirank rank` processes (torchrun's variables) that read the
 * join file; a fal request is answered across them; closing the gateway ends
 * the ranks with exit code 0. A rank that dies fails the runner, and the
 * gateway waits for the launcher to start ranks again with the same join file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, post, startGateway } from "../fixtures/gateway/harness.js";
import { waitFor } from "../helpers/processes.js";
import { killLaunchedRanks, launchRank as launchJoinedRank, type Launched } from "../helpers/joined-ranks.js";

const WORKER = "test/fixtures/workers/attach-sum.ts";
const dirs: string[] = [];

cleanUpGateways("each");
// Registered after the harness's cleanup, so it runs first: the harness then finds no child left.
afterEach(async () => {
  await killLaunchedRanks();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Starts one `multirank rank` as torchrun would, reading the join string from the app's join file. */
function launchRank(joinFile: string, rank: number, worldSize: number): Launched {
  return launchJoinedRank(WORKER, rank, worldSize, { MULTIRANK_JOIN_FILE: joinFile });
}

async function health(url: string): Promise<any> {
  return (await fetch(`${url}/healthz`)).json();
}

/** Polls /healthz until the app's `ranks` match. */
async function waitForRanks(url: string, name: string, expected: { state: string; joined?: number }, timeoutMs = 60_000): Promise<any> {
  let last: any;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    last = (await health(url)).apps[name]?.ranks;
    if (last?.state === expected.state && (expected.joined === undefined || last.joined === expected.joined)) return last;
    if (Date.now() > deadline) throw new Error(`/healthz never showed ${JSON.stringify(expected)} for ${name}; last ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), "gateway-attach-"));
  dirs.push(dir);
  return dir;
}

describe("multirank serve with an app in attach mode", () => {
  it("waits for the launcher's ranks, answers a fal request across them, and ends them with exit code 0 when it closes", async () => {
    const joinFile = join(scratch(), "join");
    const { gateway, url } = await startGateway({
      apps: [defineApp({ name: "test/attached", worker: WORKER, worldSize: 2, launcher: "external", workerAddr: "127.0.0.1", workerPort: 0, joinFile })],
    });
    void gateway.warm();
    expect(await waitForRanks(url, "test/attached", { state: "waiting", joined: 0 })).toEqual({ state: "waiting", joined: 0, worldSize: 2 });
    expect(await waitFor(() => existsSync(joinFile), 30_000)).toBe(true);
    const apps = (await (await fetch(`${url}/apps`)).json()) as { apps: Array<{ name: string; launcher?: string }> };
    expect(apps.apps.find((app) => app.name === "test/attached")?.launcher).toBe("external");
    const launched = [launchRank(joinFile, 0, 2), launchRank(joinFile, 1, 2)];
    // allReduce of (value + rank) over 2 ranks: 2 * 1 + (0 + 1).
    const response = await post(`${url}/fal/run/test/attached`, { value: 1 });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({ sum: [3], worldSize: 2, pid: launched[0]!.child.pid });
    expect(await waitForRanks(url, "test/attached", { state: "ready" })).toEqual({ state: "ready", joined: 2, worldSize: 2 });
    await gateway.close();
    expect(await Promise.all(launched.map((r) => r.exited))).toEqual([0, 0]);
  }, 120_000);

  it("after a rank dies it waits for the launcher to start ranks again with the same join file", async () => {
    const joinFile = join(scratch(), "join");
    const { gateway, url } = await startGateway({
      apps: [defineApp({ name: "test/attached", worker: WORKER, worldSize: 2, launcher: "external", workerPort: 0, joinFile, heartbeatTimeout: 2 })],
    });
    void gateway.warm();
    expect(await waitFor(() => existsSync(joinFile), 30_000)).toBe(true);
    const joinString = readFileSync(joinFile, "utf8");
    const first = [launchRank(joinFile, 0, 2), launchRank(joinFile, 1, 2)];
    expect((await post(`${url}/fal/run/test/attached`, { value: 1 })).body).toMatchObject({ sum: [3] });
    first[1]!.child.kill("SIGKILL");
    expect(await first[1]!.exited).toBeNull(); // SIGKILLed
    // The group fails; the survivor ends too (its process group broke, or the runner told it to tear down), and the runner waits again.
    expect(await first[0]!.exited).not.toBeNull();
    await waitForRanks(url, "test/attached", { state: "waiting", joined: 0 });
    expect(readFileSync(joinFile, "utf8")).toBe(joinString);
    const second = [launchRank(joinFile, 0, 2), launchRank(joinFile, 1, 2)];
    const response = await post(`${url}/fal/run/test/attached`, { value: 2 });
    expect(response.body).toMatchObject({ sum: [5], pid: second[0]!.child.pid });
    await gateway.close();
    expect(await Promise.all(second.map((r) => r.exited))).toEqual([0, 0]);
  }, 120_000);
});
