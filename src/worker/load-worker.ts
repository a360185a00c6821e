import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import { kWorkerBrand, type WorkerClass } from "./distributed-worker.js";

const TYPESCRIPT = /\.(c|m)?tsx?$/;

/**
 * Imports a worker module and returns its default export, checked to be a
 * `DistributedWorker` subclass. `.ts` modules run through tsx's loader, so
 * users need no build step; it is registered only when such a module is seen.
 */
export async function loadWorkerClass(modulePath: string, cwd = process.cwd()): Promise<WorkerClass> {
  const path = isAbsolute(modulePath) || modulePath.startsWith("file:") ? modulePath : resolve(cwd, modulePath);
  const url = path.startsWith("file:") ? path : pathToFileURL(path).href;
  let module: { default?: unknown };
  if (TYPESCRIPT.test(path)) {
    // tsImport loads the module as ESM whatever the nearest package.json says,
    // so a `.ts` worker in a project without "type": "module" still works.
    const { tsImport } = await import("tsx/esm/api");
    module = (await tsImport(url, import.meta.url)) as { default?: unknown };
  } else {
    module = (await import(url)) as { default?: unknown };
  }
  let exported = module.default;
  // A `.ts` file compiled as CommonJS (no "type": "module" nearby) arrives as
  // its `exports` object, with the class one level down.
  if (typeof exported === "object" && exported !== null && typeof (exported as { default?: unknown }).default === "function") {
    exported = (exported as { default: unknown }).default;
  }
  if (typeof exported !== "function" || typeof exported.prototype !== "object" || !(kWorkerBrand in exported.prototype)) {
    const got = exported === undefined ? "no default export" : typeof exported === "function" ? `class/function ${exported.name || "(anonymous)"}` : typeof exported;
    throw new ValidationError(`worker module ${modulePath} must default-export a class that extends DistributedWorker; it has ${got}`);
  }
  return exported as WorkerClass;
}
