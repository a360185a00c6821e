// CPU affinity of the calling process (sched_setaffinity / sched_getaffinity).
#pragma once

#include <napi.h>

namespace multirank {

// setCpuAffinity(cpus: number[]): void. Applies to the whole process: every
// thread's mask is set, so libuv pool threads and V8 helpers started before
// pinning are pinned too. Throws status EINVAL when no listed CPU is usable.
Napi::Value SetCpuAffinity(const Napi::CallbackInfo& info);

// getCpuAffinity(): number[], the calling thread's allowed CPUs, ascending.
Napi::Value GetCpuAffinity(const Napi::CallbackInfo& info);

}  // namespace multirank
