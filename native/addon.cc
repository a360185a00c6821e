// Registration: the one place that names what the addon exports. The shape is
// declared for TypeScript in src/devices/addon.ts (NativeAddon); keep the two
// in step.
#include <napi.h>

#include "affinity.h"
#include "cuda_kernel.h"
#include "devices.h"
#include "parent_death.h"
#include "reduce_kernel.h"
#include "shared_memory.h"

namespace multirank {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  exports.Set("cudaAvailability", Napi::Function::New(env, CudaAvailability, "cudaAvailability"));
  exports.Set("listDevices", Napi::Function::New(env, ListDevices, "listDevices"));
  exports.Set("listDevicesAsync", Napi::Function::New(env, ListDevicesAsync, "listDevicesAsync"));
  exports.Set("makeDeviceCurrent", Napi::Function::New(env, MakeDeviceCurrent, "makeDeviceCurrent"));
  exports.Set("cudaCurrentDevice", Napi::Function::New(env, CudaCurrentDevice, "cudaCurrentDevice"));
  exports.Set("cudaVectorAddCheck", Napi::Function::New(env, CudaVectorAddCheck, "cudaVectorAddCheck"));
  exports.Set("cudaVecAddPtx", Napi::Function::New(env, CudaVecAddPtx, "cudaVecAddPtx"));
  exports.Set("setCpuAffinity", Napi::Function::New(env, SetCpuAffinity, "setCpuAffinity"));
  exports.Set("getCpuAffinity", Napi::Function::New(env, GetCpuAffinity, "getCpuAffinity"));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal, "setParentDeathSignal"));
  exports.Set("getParentDeathSignal", Napi::Function::New(env, GetParentDeathSignal, "getParentDeathSignal"));
  exports.Set("shmCreate", Napi::Function::New(env, ShmCreate, "shmCreate"));
  exports.Set("shmOpen", Napi::Function::New(env, ShmOpen, "shmOpen"));
  exports.Set("shmRemap", Napi::Function::New(env, ShmRemap, "shmRemap"));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink, "shmUnlink"));
  exports.Set("shmClose", Napi::Function::New(env, ShmClose, "shmClose"));
  exports.Set("shmFreeBytes", Napi::Function::New(env, ShmFreeBytes, "shmFreeBytes"));
  exports.Set("reduceArrays", Napi::Function::New(env, ReduceArrays, "reduceArrays"));
  return exports;
}

}  // namespace multirank

// NODE_API_MODULE pastes the name into an identifier, so it must be unqualified.
static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return multirank::Init(env, exports); }

NODE_API_MODULE(multirank, InitAddon)
