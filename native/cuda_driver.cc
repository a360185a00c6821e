#include "cuda_driver.h"

#include <cstdio>
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
    case 200: return "CUDA_ERROR_INVALID_IMAGE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 218: return "CUDA_ERROR_INVALID_PTX";
    case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
    case 304: return "CUDA_ERROR_OPERATING_SYSTEM";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 708: return "CUDA_ERROR_CONTEXT_IS_DESTROYED";
    case 719: return "CUDA_ERROR_LAUNCH_FAILED";
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

// The kernel entry points are optional (see CudaDriver::kernelApiMissing).
void ResolveKernelApi(CudaDriver& d) {
  const auto optional = [&d](const char* name, auto* out) {
    if (!d.library.Resolve(name, out) && d.kernelApiMissing.empty()) d.kernelApiMissing = name;
  };
  optional("cuCtxGetCurrent", &d.cuCtxGetCurrent);
  optional("cuCtxGetDevice", &d.cuCtxGetDevice);
  optional("cuCtxSynchronize", &d.cuCtxSynchronize);
  optional("cuModuleLoadData", &d.cuModuleLoadData);
  optional("cuModuleGetFunction", &d.cuModuleGetFunction);
  optional("cuModuleUnload", &d.cuModuleUnload);
  optional("cuMemAlloc_v2", &d.cuMemAlloc);
  optional("cuMemFree_v2", &d.cuMemFree);
  optional("cuMemcpyHtoD_v2", &d.cuMemcpyHtoD);
  optional("cuMemcpyDtoH_v2", &d.cuMemcpyDtoH);
  optional("cuLaunchKernel", &d.cuLaunchKernel);
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
  ResolveKernelApi(d);
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

std::string FormatCudaUuid(const CUuuid& uuid) {
  char text[64];
  const unsigned char* b = uuid.bytes;
  std::snprintf(text, sizeof(text),
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return text;
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
