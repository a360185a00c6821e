import { reduceInto } from "../src/collectives/reduce-ops.js";
const N = 4 * 1024 * 1024;
const a = new Float32Array(N).fill(1), b = new Float32Array(N).fill(2);
for (let k = 0; k < 6; k++) { const t = performance.now(); reduceInto(a, b, "sum"); console.log("sum warm", (performance.now() - t).toFixed(1)); }
for (let k = 0; k < 3; k++) { const c = new Float32Array(N); const t = performance.now(); reduceInto(c, b, "sum"); console.log("sum fresh", (performance.now() - t).toFixed(1)); }
function plain(x: Float32Array, y: Float32Array) { for (let i = 0; i < x.length; i++) x[i] += y[i]; }
for (let k = 0; k < 4; k++) { const t = performance.now(); plain(a, b); console.log("plain", (performance.now() - t).toFixed(1)); }
const t = performance.now(); const big = new Float32Array(16*1024*1024); big.fill(0); console.log("alloc+fill 64MiB", (performance.now() - t).toFixed(1));
const t2 = performance.now(); big.fill(1); console.log("fill again 64MiB", (performance.now() - t2).toFixed(1));
