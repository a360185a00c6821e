/**
 * Runs every benchmark in bench/ one after another (they would disturb each
 * other in parallel on a 2-core machine). `npm run bench -- --quick` for the
 * short version. Each prints its table and writes bench/out/<name>.json.
 */
import { main as coldStart } from "./cold-start.js";
import { main as functions } from "./functions.js";
import { main as invoke } from "./invoke.js";
import { main as jpeg } from "./jpeg.js";
import { main as multihost } from "./multihost.js";
import { main as payload } from "./payload.js";
import { main as reliability } from "./reliability.js";
import { main as stream } from "./stream.js";

const started = Date.now();
// multihost needs root (network namespaces); without it, it prints why and skips.
for (const bench of [invoke, stream, jpeg, payload, coldStart, reliability, functions, multihost]) await bench();
process.stdout.write(`\nall benchmarks done in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
