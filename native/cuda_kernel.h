// Running a kernel on the calling thread's current CUDA context: the GPU smoke
// test's proof that a rank computes on the device it was pinned to
// (scripts/smoke-gpu/). The kernel is hand-written PTX embedded in the addon,
// JIT-compiled by the driver, so no CUDA toolkit is needed to build.
#pragma once

#include <napi.h>

namespace multirank {

// The embedded PTX of vecAdd(const float* a, const float* b, float* c, int n),
// exported so a test can assemble it with ptxas where one is installed.
extern const char kVecAddPtx[];

// cudaCurrentDevice(): { index, uuid } of the device the calling thread's
// current context is on (cuCtxGetCurrent, cuCtxGetDevice, cuDeviceGetUuid).
// Throws status CUDA_ERROR_INVALID_CONTEXT when no context is current.
Napi::Value CudaCurrentDevice(const Napi::CallbackInfo& info);

// cudaVectorAddCheck(n): { ok, n, maxError, index, uuid, ms }. On the current
// context: allocates three n-float buffers, copies a and b in, launches vecAdd,
// synchronises, copies c back, compares with the host's a + b and frees
// everything. Throws (code MULTIRANK_ERR_NATIVE, status the CUDA status) naming
// the call that failed. Runs on the JS thread, because that is the thread the
// rank's context is current on (makeDeviceCurrent).
Napi::Value CudaVectorAddCheck(const Napi::CallbackInfo& info);

// cudaVecAddPtx(): the embedded PTX text.
Napi::Value CudaVecAddPtx(const Napi::CallbackInfo& info);

}  // namespace multirank
