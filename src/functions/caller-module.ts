import { fileURLToPath } from "node:url";

/**
 * The file of the code that called the function that calls this one: the
 * module where `remote()` was written. Read from V8's structured stack, which
 * tsx's source maps point at the `.ts` source.
 */
export function callerModule(skipFiles: readonly string[]): string | undefined {
  const original = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_error, frames) => frames;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, callerModule);
    for (const frame of holder.stack ?? []) {
      const file = frame.getFileName();
      if (!file || file.startsWith("node:")) continue;
      const path = file.startsWith("file:") ? fileURLToPath(file) : file;
      if (skipFiles.some((skip) => path === skip)) continue;
      return path;
    }
    return undefined;
  } finally {
    Error.prepareStackTrace = original;
  }
}
