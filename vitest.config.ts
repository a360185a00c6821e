import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Integration suites spawn real rank processes; on a 2-core machine running
    // many files at once starves them and turns timeouts into flakes.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // A poll may wait through a cold start of rank processes (half a second
    // alone, several under a loaded CI machine); 1 s, vitest's default, flaked.
    expect: { poll: { timeout: 15_000 } },
  },
});
