#include "cuda_driver.h"

#include <mutex>

namespace multirank {
namespace {

// Names for the statuses we can meet before or without cuGetErrorName.
const char* KnownCudaStatus(CUresult status) {
  switch (status) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 4: return "CUDA_ERROR_DEINITIALIZED";
    case 34: return "CUDA_ERROR_STUB_LIBRARY";
    case 35: return "CUDA_ERROR_INSUFFICIENT_DRIVER";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 304: return "CUDA_ERROR_OPERATING_SYSTEM";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 708: return "CUDA_ERROR_CONTEXT_IS_DESTROYED";
    case 801: return "CUDA_ERROR_NOT_SUPPORTED";
    case 803: return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
    case 999: return "CUDA_ERROR_UNKNOWN";
    default: return nullptr;
  }
}

template <typename Fn>
bool Require(CudaDriver& d, const char* name, Fn* out) {
  if (d.library.Resolve(name, out)) return true;
  d.reason = d.library.path() + " lacks the symbol " + name;
  d.status = "MULTIRANK_SYMBOL_NOT_FOUND";
  return false;
}

bool ResolveAll(CudaDriver& d) {
  // cuDeviceGetUuid_v2 (CUDA 11.4+) reports MIG-aware UUIDs; older drivers
  // only have the plain name. Either is fine for whole GPUs.
  if (!d.library.Resolve("cuDeviceGetUuid_v2", &d.cuDeviceGetUuid) &&
      !Require(d, "cuDeviceGetUuid", &d.cuDeviceGetUuid)) {
    return false;
  }
  d.library.Resolve("cuGetErrorName", &d.cuGetErrorName);
  return Require(d, "cuInit", &d.cuInit) && Require(d, "cuDriverGetVersion", &d.cuDriverGetVersion) &&
         Require(d, "cuDeviceGetCount", &d.cuDeviceGetCount) && Require(d, "cuDeviceGet", &d.cuDeviceGet) &&
         Require(d, "cuDeviceGetName", &d.cuDeviceGetName) &&
         Require(d, "cuDeviceTotalMem_v2", &d.cuDeviceTotalMem) &&
         Require(d, "cuDeviceGetAttribute", &d.cuDeviceGetAttribute) &&
         Require(d, "cuDeviceGetPCIBusId", &d.cuDeviceGetPCIBusId) &&
         Require(d, "cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain) &&
         Require(d, "cuCtxSetCurrent", &d.cuCtxSetCurrent);
}

void Load(CudaDriver& d) {
  const std::string path =
      EnvOr("MULTIRANK_CUDA_LIBRARY", EnvOr("MULTIRANK_FAKE_DRIVER", "libcuda.so.1"));
  if (!d.library.Open(path)) {
    d.libraryMissing = true;
    d.status = "MULTIRANK_LIBRARY_NOT_FOUND";
    d.reason = path + " not found (" + d.library.error() + ")";
    return;
  }
  if (!ResolveAll(d)) return;
  const CUresult init = d.cuInit(0);
  if (init != kCudaSuccess) {
    d.status = CudaStatusName(d, init);
    d.reason = "cuInit failed: " + d.status;
    return;
  }
  CUresult rc = d.cuDriverGetVersion(&d.driverVersion);
  if (rc == kCudaSuccess) rc = d.cuDeviceGetCount(&d.deviceCount);
  if (rc != kCudaSuccess) {
    d.status = CudaStatusName(d, rc);
    d.reason = "querying the driver failed: " + d.status;
    return;
  }
  d.available = true;
}

}  // namespace

const CudaDriver& LoadCudaDriver() {
  // Leaked on purpose: unloading libcuda in a static destructor at exit races
  // with the driver's own teardown.
  static CudaDriver* driver = new CudaDriver();
  static std::once_flag once;
  std::call_once(once, [] { Load(*driver); });
  return *driver;
}

std::string CudaStatusName(const CudaDriver& driver, CUresult status) {
  if (driver.cuGetErrorName != nullptr) {
    const char* name = nullptr;
    if (driver.cuGetErrorName(status, &name) == kCudaSuccess && name != nullptr) return name;
  }
  const char* known = KnownCudaStatus(status);
  return known != nullptr ? known : "CUDA_ERROR_" + std::to_string(status);
}

}  // namespace multirank
