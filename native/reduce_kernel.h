// The element-wise reduction kernel: acc = sources[0] op sources[1] op ...
// over float32, float64 and int32 arrays, for sum, prod, min and max. The
// shared-memory all-reduce (src/collectives/algorithms/shared-memory.ts, via
// reduceParts in src/collectives/shm.ts) runs it straight over the peers'
// mapped segments; it does not map anything itself.
#pragma once

#include <napi.h>

namespace multirank {

// reduceArrays(acc: TypedArray, sources: TypedArray[], op: string): void.
// The reduction step of the shared-memory all-reduce: acc = sources[0] op
// sources[1] op ... in that order, element by element, where the sources are
// usually views of peers' mapped segments. One pass over memory (blocked so
// acc stays in cache) instead of one JS loop per source. Bit-identical to
// src/collectives/reduce-ops.ts reduceInto applied in the same order: IEEE
// float/double arithmetic (no fast-math), int32 sum/prod wrapping, NaN
// winning min/max. acc and every source: the same type (Float32Array,
// Float64Array, Int32Array) and length; acc may be sources[0] itself but must
// not otherwise overlap a source. op: "sum" | "avg" (accumulated as sum) |
// "prod" | "min" | "max". Runs on the JS main thread: it is memory-bound and
// short (a few ms for 64 MiB), and its inputs are JS-owned views.
Napi::Value ReduceArrays(const Napi::CallbackInfo& info);

}  // namespace multirank
