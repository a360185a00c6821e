/** The gateway's default logger writes to stderr, like every other default logger, and keeps stdout for the program. */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
const gatewayModule = new URL("../../src/server/index.ts", import.meta.url).href;

describe("the gateway's default logger", () => {
  it("writes request logs to stderr and nothing to stdout", async () => {
    const script = `
      import { createGateway, defineApp } from ${JSON.stringify(gatewayModule)};
      const gateway = await createGateway({ apps: [defineApp({ name: "t/echo", worker: "./workers/echo.ts" })], host: { gpuCount: 0 }, shutdownGrace: 0 });
      await gateway.server.inject({ method: "GET", url: "/healthz" });
      await gateway.close();
    `;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: root,
      env: { ...process.env, MULTIRANK_LOG_LEVEL: "info" },
      timeout: 60_000,
    });
    expect(stdout).toBe("");
    expect(stderr).toContain('"msg":"incoming request"');
    expect(stderr).toContain('"msg":"gateway stopped"');
  });
});
