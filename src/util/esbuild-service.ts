/** Users of esbuild in this process right now (its service is stopped when none is). */
let active = 0;

/**
 * Runs `work` with esbuild loaded, and stops esbuild's service once no other
 * caller is using it: esbuild serves builds from a child process of its own,
 * and a caller's process must hold no helper it did not start (and exit when
 * its own work is done). Shared by function bundling and worker compiling,
 * so neither stops the service under the other's build.
 */
export async function withEsbuild<T>(work: (esbuild: typeof import("esbuild")) => Promise<T>): Promise<T> {
  const esbuild = await import("esbuild");
  active++;
  try {
    return await work(esbuild);
  } finally {
    if (--active === 0) await esbuild.stop();
  }
}
