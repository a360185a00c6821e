import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../errors.js";
import { kWorkerBrand, type WorkerClass } from "./distributed-worker.js";

const TYPESCRIPT = /\.(c|m)?tsx?$/;
let tsxRegistered = false;

/**
 * Imports a worker module and returns its default export, checked to be a
 * `DistributedWorker` subclass. `.ts` modules run through tsx's loader, so
 * users need no build step; it is registered only when such a module is seen.
 */
export async function loadWorkerClass(modulePath: string, cwd = process.cwd()): Promise<WorkerClass> {
  const path = isAbsolute(modulePath) || modulePath.startsWith("file:") ? modulePath : resolve(cwd, modulePath);
  if (TYPESCRIPT.test(path) && !tsxRegistered) {
    const { register } = await import("tsx/esm/api");
    register();
    tsxRegistered = true;
  }
  const module = (await import(path.startsWith("file:") ? path : pathToFileURL(path).href)) as { default?: unknown };
  const exported = module.default;
  if (typeof exported !== "function" || typeof exported.prototype !== "object" || !(kWorkerBrand in exported.prototype)) {
    const got = exported === undefined ? "no default export" : typeof exported === "function" ? `class/function ${exported.name || "(anonymous)"}` : typeof exported;
    throw new ValidationError(`worker module ${modulePath} must default-export a class that extends DistributedWorker; it has ${got}`);
  }
  return exported as WorkerClass;
}
