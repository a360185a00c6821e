/// <reference lib="dom" />
/**
 * The page at `/` in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): runs, failures shown with their type and detail, output
 * cleared per run, the input sized to its content, the key field only where
 * keys are checked, the favicon, the live apps table and recent requests, and
 * apps that come and go at runtime. Screenshots of each step are kept in
 * test/e2e/screenshots/ (gitignored) for a human to look at.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { defineApp } from "../../src/gateway/index.js";
import { cleanUpGateways, exampleWorker, gatewayWorker, startGateway } from "../fixtures/gateway/harness.js";
import { LLAMA_ENGINE, requireLlamaEngine } from "../helpers/llama-engine.js";
import { itNeeding } from "../helpers/needs-tool.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const SCREENSHOTS = fileURLToPath(new URL("./screenshots/", import.meta.url));
const KEY = "kid:page-secret-4711";
// Bounds for a busy machine (Chromium's launch, cold starts of ranks, the page's 1.5 s and 5 s polls), not expectations.
const SLOW = { timeout: 60_000 };

cleanUpGateways();

let context: BrowserContext | undefined;
const temporary: string[] = [];
afterEach(async () => {
  await context?.close().catch(() => {});
  context = undefined;
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});
afterAll(() => {
  if (existsSync(SCREENSHOTS)) process.stderr.write(`page screenshots kept in ${SCREENSHOTS}\n`);
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** A Chromium page that records 404s and uncaught page errors, so a test can assert there were none. */
async function openPage(url: string): Promise<{ page: Page; notFound: string[]; pageErrors: string[] }> {
  context = await chromium.launchPersistentContext(tempDir("gateway-chromium-"), { executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000, viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const notFound: string[] = [];
  const pageErrors: string[] = [];
  page.on("response", (response) => {
    if (response.status() === 404) notFound.push(response.url());
  });
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(url);
  return { page, notFound, pageErrors };
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Selects the app (which shows its example input), optionally types an input, presses Run, waits for the end. */
async function runApp(page: Page, app: string, input?: unknown): Promise<string | undefined> {
  await page.selectOption("#app", app);
  if (input !== undefined) await page.fill("#input", JSON.stringify(input));
  await page.evaluate(() => delete document.body.dataset.done);
  await page.click("#run");
  await page.waitForFunction(() => document.body.dataset.done !== undefined, undefined, SLOW);
  return page.evaluate(() => document.body.dataset.done);
}

/** Waits until the newest row of recent requests has `status` (the page refreshes the tables when a run ends). */
async function newestRequest(page: Page, status: string): Promise<void> {
  await page.waitForFunction((wanted) => document.querySelector<HTMLTableRowElement>("#requests tbody tr")?.dataset.status === wanted, status, SLOW);
}

const shownError = (page: Page): Promise<{ hidden: boolean; type: string; http: string; detail: string; status: string }> =>
  page.evaluate(() => ({
    hidden: document.getElementById("error")!.hidden,
    type: document.getElementById("error-type")!.textContent!,
    http: document.getElementById("error-http")!.textContent!,
    detail: document.getElementById("error-detail")!.textContent!,
    status: document.getElementById("status")!.textContent!,
  }));

/** The apps table's row of `app`: [queue, running, starting, idle, busy, stopping]. */
const appRow = (page: Page, app: string): Promise<number[] | undefined> =>
  page.evaluate((name) => {
    const row = Array.from(document.querySelectorAll<HTMLTableRowElement>("#apps tbody tr")).find((r) => r.dataset.app === name);
    return row ? Array.from(row.cells).slice(1).map((cell) => Number(cell.textContent)) : undefined;
  }, app);

// Skipped only outside CI when Chromium is not installed; CI installs it and must run this.
if (!existsSync(CHROMIUM) && !process.env.CI) {
  process.stderr.write(`skipping the Chromium page test: ${CHROMIUM} is missing (apt-get install chromium)\n`);
}
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)("the web page in Chromium", () => {
  it("runs apps, shows failures with type and detail, clears output per run, sizes the input, shows live health and recent requests, follows apps added and removed", async () => {
    const untilFile = join(tempDir("gateway-page-"), "release");
    const controlExample = { id: "from-the-page", mode: "ok", log: "hello from the worker", chunks: 0, ms: 0, progressMs: 0, marker: "unused" };
    const { gateway, url } = await startGateway({
      apps: [
        defineApp({ name: "demo/image", worker: exampleWorker("image-stream"), worldSize: 2, exampleInput: { steps: 4, size: 96, seed: 1 } }),
        defineApp({ name: "demo/text", worker: exampleWorker("text-stream"), worldSize: 1, exampleInput: { prompt: "hi", maxTokens: 6, delayMs: 10 } }),
        defineApp({ name: "demo/control", worker: gatewayWorker("control"), worldSize: 1, exampleInput: controlExample }),
      ],
    });
    const { page, notFound, pageErrors } = await openPage(`${url}/?app=demo/image`);
    await page.waitForFunction(() => (document.getElementById("input") as HTMLTextAreaElement).value.includes("steps"), undefined, SLOW);

    // No keys here: no key field. The favicon is inline, so nothing asks for /favicon.ico.
    expect(await page.isHidden("#key-box")).toBe(true);
    const icon = await page.evaluate(async () => {
      const href = document.querySelector<HTMLLinkElement>("link[rel=icon]")?.href ?? "";
      const image = new Image();
      image.src = href;
      await image.decode().catch(() => {});
      return { href: href.slice(0, 19), width: image.naturalWidth };
    });
    expect(icon).toEqual({ href: "data:image/svg+xml,", width: expect.any(Number) });
    expect(icon.width).toBeGreaterThan(0);

    // The image app: streamed JPEG frames drawn.
    expect(await runApp(page, "demo/image")).toBe("true");
    expect(Number(await page.getAttribute("#canvas", "data-frames"))).toBe(4); // 3 streamed frames + the final image
    const drawn = await page.evaluate(() => {
      const canvas = document.getElementById("canvas") as HTMLCanvasElement;
      const pixels = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
      let lit = 0;
      for (let i = 0; i < pixels.length; i += 4) if (pixels[i]! + pixels[i + 1]! + pixels[i + 2]! > 30) lit++;
      return { width: canvas.width, height: canvas.height, lit };
    });
    expect(drawn).toMatchObject({ width: 96, height: 96 });
    expect(drawn.lit).toBeGreaterThan(500);
    await newestRequest(page, "COMPLETED");
    await screenshot(page, "01-image-app");

    // The text app next: its tokens, and nothing left of the image.
    expect(await runApp(page, "demo/text")).toBe("true");
    expect((await page.textContent("#text"))!.split(" ")).toHaveLength(6);
    expect(await page.evaluate(() => {
      const canvas = document.getElementById("canvas") as HTMLCanvasElement;
      return { hidden: canvas.hidden, width: canvas.width, frames: canvas.dataset.frames };
    })).toEqual({ hidden: true, width: 0, frames: "0" });
    await newestRequest(page, "COMPLETED");
    await screenshot(page, "02-text-app-after-image");

    // The input box fits its example (8 lines) without a scrollbar.
    await page.selectOption("#app", "demo/control");
    const box = await page.evaluate(() => {
      const input = document.getElementById("input") as HTMLTextAreaElement;
      return { lines: input.value.split("\n").length, scrollHeight: input.scrollHeight, clientHeight: input.clientHeight };
    });
    expect(box.lines).toBe(Object.keys(controlExample).length + 2);
    expect(box.scrollHeight).toBeLessThanOrEqual(box.clientHeight);

    // A worker's error and a validation error: their type, HTTP status and detail, not "the request failed".
    expect(await runApp(page, "demo/control", { mode: "throw", id: "page-7" })).toBe("error");
    expect(await shownError(page)).toMatchObject({ hidden: false, type: "worker_error", http: "HTTP 500", detail: expect.stringContaining("boom page-7") });
    await newestRequest(page, "FAILED");
    await screenshot(page, "03-worker-error");
    expect(await runApp(page, "demo/control", { mode: "validation" })).toBe("error");
    expect(await shownError(page)).toMatchObject({ hidden: false, type: "validation_error", http: "HTTP 422", detail: expect.stringContaining("x must be positive") });
    await page.waitForFunction(() => document.querySelectorAll("#requests tbody tr").length === 2, undefined, SLOW);
    await screenshot(page, "04-validation-error");

    // Live: a request that runs until the test releases it shows as running on a busy runner, then completed with its log.
    await page.fill("#input", JSON.stringify({ untilFile, log: "hello from the worker" }));
    await page.click("#run");
    await page.waitForFunction(() => {
      const row = Array.from(document.querySelectorAll<HTMLTableRowElement>("#apps tbody tr")).find((r) => r.dataset.app === "demo/control");
      const first = document.querySelector<HTMLTableRowElement>("#requests tbody tr");
      return row?.cells[2]!.textContent === "1" && row.cells[5]!.textContent === "1" && first?.dataset.status === "IN_PROGRESS";
    }, undefined, SLOW);
    expect(await appRow(page, "demo/control")).toEqual([0, 1, 0, 0, 1, 0]);
    await screenshot(page, "05-running-live");
    writeFileSync(untilFile, "go");
    await page.waitForFunction(() => document.body.dataset.done !== undefined, undefined, SLOW);
    await newestRequest(page, "COMPLETED");
    await page.waitForFunction(() => document.querySelector<HTMLTableRowElement>("#apps tbody tr[data-app='demo/control']")?.cells[4]!.textContent === "1", undefined, SLOW);
    const requests = await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLTableRowElement>("#requests tbody tr")).map((row) => ({ status: row.dataset.status, text: row.cells[4]!.textContent })),
    );
    expect(requests.map((r) => r.status)).toEqual(["COMPLETED", "FAILED", "FAILED"]);
    expect(requests[0]!.text).toContain("hello from the worker");
    expect(requests[1]!.text).toMatch(/validation_error: .*x must be positive/);
    expect(requests[2]!.text).toMatch(/worker_error: .*boom page-7/);
    await page.click("#requests tbody tr:first-child summary");
    await screenshot(page, "06-completed-with-logs");

    // Apps added and removed at runtime (dev reloads, deployments, functions) show up in the list by themselves.
    await gateway.update({ apps: [defineApp({ name: "demo/late", worker: gatewayWorker("control"), worldSize: 1 })] });
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#app option")).some((o) => (o as HTMLOptionElement).value === "demo/late"), undefined, SLOW);
    await page.waitForFunction(() => document.querySelector("#apps tbody tr[data-app='demo/late']") !== null, undefined, SLOW);
    await screenshot(page, "07-app-added");
    await gateway.update({ apps: [] });
    await page.waitForFunction(() => !Array.from(document.querySelectorAll("#app option")).some((o) => (o as HTMLOptionElement).value === "demo/late"), undefined, SLOW);

    expect(notFound).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it("asks for a key only where the gateway checks keys, explains it, and shows 401s with their detail", async () => {
    const { url } = await startGateway({
      keys: [KEY],
      apps: [defineApp({ name: "demo/text", worker: exampleWorker("text-stream"), worldSize: 1, exampleInput: { prompt: "hi", maxTokens: 4, delayMs: 0 } })],
    });
    const { page, notFound, pageErrors } = await openPage(`${url}/`);
    await page.waitForFunction(() => !document.getElementById("key-box")!.hidden, undefined, SLOW);
    expect(await page.textContent("#key-why")).toContain("checks API keys");
    await page.waitForFunction(() => document.getElementById("requests-note")!.textContent!.includes("API key"), undefined, SLOW);

    expect(await runApp(page, "demo/text")).toBe("error");
    expect(await shownError(page)).toMatchObject({ type: "unauthorized", http: "HTTP 401", detail: expect.stringContaining("missing API key") });
    await page.fill("#key", "kid:wrong");
    expect(await runApp(page, "demo/text")).toBe("error");
    expect(await shownError(page)).toMatchObject({ type: "unauthorized", http: "HTTP 401", detail: expect.stringContaining("invalid API key") });
    await screenshot(page, "08-key-needed-401");

    await page.fill("#key", KEY);
    await page.dispatchEvent("#key", "change");
    expect(await runApp(page, "demo/text")).toBe("true");
    expect(await page.isHidden("#error")).toBe(true);
    expect((await page.textContent("#text"))!.split(" ")).toHaveLength(4);
    await newestRequest(page, "COMPLETED");
    await screenshot(page, "09-with-key");
    // The page never holds the gateway's keys; it only sends the one typed in.
    expect(await (await fetch(`${url}/`)).text()).not.toContain("page-secret");
    expect(notFound).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 300_000);

  // The LLM app needs the llama.cpp engine: without it locally this test says so and skips; CI installs it.
  itNeeding(
    LLAMA_ENGINE,
    "shows an LLM's tokens as they come, each appended as it is (spaces are the model's own)",
    async () => {
      requireLlamaEngine();
      const { url } = await startGateway({
        apps: [defineApp({ name: "demo/llm", worker: exampleWorker("llm"), worldSize: 1, exampleInput: { prompt: "Once", maxTokens: 1500, seed: 3 } })],
      });
      const { page, notFound, pageErrors } = await openPage(`${url}/?app=demo/llm`);
      await page.waitForFunction(() => (document.getElementById("input") as HTMLTextAreaElement).value.includes("maxTokens"), undefined, SLOW);
      await page.evaluate(() => delete document.body.dataset.done);
      await page.click("#run");
      // Tokens on the page while the request still runs.
      await page.waitForFunction(() => document.getElementById("text")!.textContent!.length > 0 && document.body.dataset.done === undefined, undefined, SLOW);
      await page.waitForFunction(() => document.body.dataset.done !== undefined, undefined, SLOW);
      expect(await page.evaluate(() => document.body.dataset.done)).toBe("true");
      await screenshot(page, "10-llm-tokens");
      // The page's text is the model's text, token after token, with nothing added between them.
      const shown = (await page.textContent("#text"))!;
      const direct = (await (await fetch(`${url}/fal/run/demo/llm`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once", maxTokens: 1500, seed: 3 }) })).json()) as { text: string };
      expect(shown).toBe(direct.text);
      expect(notFound).toEqual([]);
      expect(pageErrors).toEqual([]);
    },
    300_000,
  );
});
