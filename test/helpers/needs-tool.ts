/**
 * Suites and tests that need a tool beyond npm (redis-server, the llama.cpp
 * engine): where the tool is missing they are skipped with the reason in
 * their name (and one line on stderr), unless CI is set: there they run and
 * fail with that reason, because `.ci/run` installs every such tool.
 */
import { beforeAll, describe, it } from "vitest";

/** Whether a tool is here; when not, why, and what installs it in CI. */
export interface ToolCheck {
  /** Names the tool in the stderr note ("the Redis suites"). */
  what: string;
  available: boolean;
  /** Why it is missing and how to install it locally. */
  reason: string;
  /** What puts it there in CI (".ci/run installs redis-server"). */
  installedInCi: string;
}

const noted = new Set<string>();

function skipped(tool: ToolCheck): boolean {
  const skip = !tool.available && !process.env.CI;
  if (skip && !noted.has(tool.what)) {
    noted.add(tool.what);
    process.stderr.write(`${tool.reason}: ${tool.what} are skipped (in CI, where CI is set, they fail instead)\n`);
  }
  return skip;
}

const missing = (tool: ToolCheck): Error => new Error(`${tool.reason}: CI must have it (${tool.installedInCi})`);

/** `describe` for a suite that needs `tool`; its body runs only where the tool is, or fails in CI. */
export function describeNeeding(tool: ToolCheck, name: string, fn: () => void): void {
  const skip = skipped(tool);
  describe.skipIf(skip)(skip ? `${name} (skipped: ${tool.reason})` : name, () => {
    beforeAll(() => {
      if (!tool.available) throw missing(tool);
    });
    fn();
  });
}

/** `it` for one test that needs `tool`, in a suite that does not. */
export function itNeeding(tool: ToolCheck, name: string, fn: () => Promise<void>, timeout?: number): void {
  const skip = skipped(tool);
  it.skipIf(skip)(
    skip ? `${name} (skipped: ${tool.reason})` : name,
    async () => {
      if (!tool.available) throw missing(tool);
      await fn();
    },
    timeout,
  );
}
