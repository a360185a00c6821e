/**
 * Prints a project's config as JSON, for `multirank dev`: run in a fresh
 * process after each edit, so every module the config imports is read anew.
 * Usage: node probe-config.js <config file>
 */
import { resolve } from "node:path";
import { loadProject } from "../deploy/project-config.js";
import { defineApp, type AppDefinition, type AppOptions } from "../gateway/app.js";

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write("usage: probe-config <config file>\n");
  process.exit(2);
}
const project = await loadProject(configPath);
const apps = project.config.apps.map((raw) => {
  const { memoryMiB, ...app } = Object.isFrozen(raw) ? (raw as AppDefinition) : defineApp(raw as AppOptions);
  // Back to the options defineApp takes; relative workers resolve against the config's folder, wherever the server runs.
  return { ...app, ...(memoryMiB === undefined ? {} : { memory: memoryMiB / 1024 }), worker: app.worker.startsWith("file:") ? app.worker : resolve(project.dir, app.worker) };
});
const functions = project.functions.map((fn) => ({ functionName: fn.functionName, module: fn.module, options: fn.options }));
process.stdout.write(JSON.stringify({ name: project.name, dir: project.dir, apps, functions }));
// The config's modules may hold handles (a remote function's host): this process has done its job.
process.exit(0);
