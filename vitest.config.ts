import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Ranks and function workers load dist/: rebuild it first when src/ is newer (issue 14, item 9).
    globalSetup: ["test/global-setup.ts"],
    // Integration suites spawn real rank processes; on a 2-core machine running
    // many files at once starves them and turns timeouts into flakes.
    fileParallelism: false,
    // Upper bounds, not expectations: an integration test cold-starts rank
    // processes (about half a second each when idle, many seconds when another
    // job keeps both cores busy), and 30 s failed tests that were only slow
    // (issue 11). A test that hangs still fails, later.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    // A poll may wait through a cold start of rank processes (half a second
    // alone, several under a loaded CI machine); 1 s, vitest's default, flaked.
    expect: { poll: { timeout: 15_000 } },
  },
});
