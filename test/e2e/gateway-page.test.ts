/// <reference lib="dom" />
/**
 * The page at `/` in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): run the image app and check frames were drawn.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, exampleWorker, startGateway } from "../fixtures/gateway/harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

cleanUpGateways();

let context: BrowserContext | undefined;
let profile: string | undefined;
afterEach(async () => {
  await context?.close().catch(() => {});
  context = undefined;
  if (profile) rmSync(profile, { recursive: true, force: true });
  profile = undefined;
});

// Skipped only outside CI when Chromium is not installed; CI installs it and must run this.
if (!existsSync(CHROMIUM) && !process.env.CI) {
  process.stderr.write(`skipping the Chromium page test: ${CHROMIUM} is missing (apt-get install chromium)\n`);
}
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)("the web page in Chromium", () => {
  it("runs the image app and draws the streamed JPEG frames; the text app shows tokens", async () => {
    const { url } = await startGateway({
      apps: [
        defineApp({ name: "demo/image", worker: exampleWorker("image-stream"), worldSize: 2, exampleInput: { steps: 4, size: 96, seed: 1 } }),
        defineApp({ name: "demo/text", worker: exampleWorker("text-stream"), worldSize: 1, exampleInput: { prompt: "hi", maxTokens: 6, delayMs: 10 } }),
      ],
    });
    profile = mkdtempSync(join(tmpdir(), "gateway-chromium-"));
    // Bounds for a busy machine (Chromium's launch, a cold start of two ranks), not expectations.
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000 });
    const page = await context.newPage();
    await page.goto(`${url}/?app=demo/image`);
    await page.waitForFunction(() => (document.getElementById("input") as HTMLTextAreaElement).value.includes("steps"));
    await page.click("#run");
    await page.waitForFunction(() => document.body.dataset.done !== undefined, undefined, { timeout: 60_000 });
    expect(await page.evaluate(() => document.body.dataset.done)).toBe("true");
    const frames = Number(await page.getAttribute("#canvas", "data-frames"));
    expect(frames).toBe(4); // 3 streamed frames + the final image
    const drawn = await page.evaluate(() => {
      const canvas = document.getElementById("canvas") as HTMLCanvasElement;
      const pixels = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
      let lit = 0;
      for (let i = 0; i < pixels.length; i += 4) if (pixels[i]! + pixels[i + 1]! + pixels[i + 2]! > 30) lit++;
      return { width: canvas.width, height: canvas.height, lit };
    });
    expect(drawn).toMatchObject({ width: 96, height: 96 });
    expect(drawn.lit).toBeGreaterThan(500);

    await page.selectOption("#app", "demo/text");
    await page.evaluate(() => delete document.body.dataset.done);
    await page.click("#run");
    await page.waitForFunction(() => document.body.dataset.done !== undefined, undefined, { timeout: 60_000 });
    expect((await page.textContent("#text"))!.split(" ")).toHaveLength(6);
  }, 240_000);
});
