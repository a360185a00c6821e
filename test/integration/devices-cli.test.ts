// `multirank devices` against the fake driver. The driver is opened once per
// process, so the env is set before anything in this file touches the addon
// (vitest runs each file in its own process).
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDevicesCommand } from "../../src/cli/devices.js";
import { buildFakeDriver, type FakeDriver } from "../fixtures/fake-driver/build.js";
import { requireBuiltAddon } from "../fixtures/devices/spawn-probe.js";

let fake: FakeDriver;

beforeAll(() => {
  requireBuiltAddon();
  fake = buildFakeDriver();
  process.env.MULTIRANK_FAKE_DRIVER = fake.path;
  process.env.FAKE_CUDA_DEVICE_CPUS = "0";
  delete process.env.CUDA_VISIBLE_DEVICES;
});

afterAll(() => fake?.remove());

async function run(argv: string[]): Promise<{ code: number; text: string }> {
  const out = new PassThrough();
  let text = "";
  out.on("data", (c: Buffer) => (text += c));
  const code = await runDevicesCommand(argv, out);
  return { code, text };
}

describe("multirank devices", () => {
  it("prints a table of the devices", async () => {
    const { code, text } = await run([]);
    expect(code).toBe(0);
    const lines = text.trim().split("\n");
    expect(lines[0]).toBe(`CUDA: driver 12.4, 4 device(s), via ${fake.path}`);
    expect(lines[1]).toMatch(/^INDEX\s+NAME\s+UUID\s+PCI BUS ID\s+MEMORY\s+CC\s+LOCAL CPUS$/);
    expect(lines[2]).toMatch(/^0\s+Fake Tesla F100 #0\s+GPU-fa4e0000-0000-4000-8000-000000000000\s+0000:1a:00\.0\s+80\.0 GiB\s+9\.0\s+0 \(nvml\)$/);
    expect(lines).toHaveLength(7);
  });

  it("prints JSON for scripts", async () => {
    const { code, text } = await run(["--json"]);
    expect(code).toBe(0);
    const parsed = JSON.parse(text) as { cuda: { available: boolean }; devices: Array<{ uuid: string }>; allowedCpus: number[] };
    expect(parsed.cuda.available).toBe(true);
    expect(parsed.devices.map((d) => d.uuid.slice(-1))).toEqual(["0", "1", "2", "3"]);
    expect(parsed.allowedCpus.length).toBeGreaterThan(0);
  });

  it("rejects unknown arguments with exit code 2 and usage", async () => {
    const { code, text } = await run(["--jsno"]);
    expect(code).toBe(2);
    expect(text).toContain("Usage: multirank devices");
  });
});
