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
  },
});
