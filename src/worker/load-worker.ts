import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import { kWorkerBrand, type WorkerClass } from "./distributed-worker.js";

const TYPESCRIPT = /\.(c|m)?tsx?$/;

/**
 * Imports a worker module and returns its default export, checked to be a
 * `DistributedWorker` subclass. `.ts` modules run through tsx's loader, so
 * users need no build step; it is registered only when such a module is seen.
 * `compiled`: the runner's compiled copy of a `.ts` module, imported instead
 * (no tsx, no compiling in every rank); should it have gone from the cache
 * meanwhile, the source is loaded through tsx after all.
 */
export async function loadWorkerClass(modulePath: string, cwd = process.cwd(), compiled?: string): Promise<WorkerClass> {
  const path = isAbsolute(modulePath) || modulePath.startsWith("file:") ? modulePath : resolve(cwd, modulePath);
  const url = path.startsWith("file:") ? path : pathToFileURL(path).href;
  let module: { default?: unknown } | undefined;
  if (compiled !== undefined && TYPESCRIPT.test(path)) {
    // Stack traces through the bundle's inline source map name the .ts files, as under tsx.
    process.setSourceMapsEnabled(true);
    const compiledUrl = pathToFileURL(compiled).href;
    try {
      module = (await import(compiledUrl)) as { default?: unknown };
    } catch (error) {
      const missing = (error as { code?: string; url?: string }).code === "ERR_MODULE_NOT_FOUND" && (error as Error).message.includes(compiled);
      if (!missing) throw error;
    }
  }
  if (module) {
    // Loaded from the compiled copy above.
  } else if (TYPESCRIPT.test(path)) {
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
