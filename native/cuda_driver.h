// The few CUDA driver API entry points the addon uses, resolved from
// libcuda.so.1 (or MULTIRANK_CUDA_LIBRARY / MULTIRANK_FAKE_DRIVER) at run time.
// Types are declared here so no CUDA header or toolkit is needed to build.
#pragma once

#include <cstddef>
#include <string>

#include "dynamic_library.h"

namespace multirank {

using CUresult = int;
using CUdevice = int;
using CUcontext = struct CUctx_st*;
struct CUuuid {
  unsigned char bytes[16];
};

constexpr CUresult kCudaSuccess = 0;
// CUdevice_attribute values (stable across driver versions).
constexpr int kAttrPciBusId = 33;
constexpr int kAttrPciDeviceId = 34;
constexpr int kAttrPciDomainId = 50;
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;

struct CudaDriver {
  DynamicLibrary library;

  CUresult (*cuInit)(unsigned int) = nullptr;
  CUresult (*cuDriverGetVersion)(int*) = nullptr;
  CUresult (*cuDeviceGetCount)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*cuDeviceGetUuid)(CUuuid*, CUdevice) = nullptr;  // _v2 when present
  CUresult (*cuDeviceTotalMem)(size_t*, CUdevice) = nullptr;  // cuDeviceTotalMem_v2
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuDeviceGetPCIBusId)(char*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;  // optional

  // Set once by LoadCudaDriver(). When `available` is false, `reason` says why
  // and `status` names the driver status (or a MULTIRANK_* pseudo-status).
  bool available = false;
  std::string reason;
  std::string status;
  bool libraryMissing = false;
  int driverVersion = 0;
  int deviceCount = 0;
};

// Opens the driver, resolves every symbol and calls cuInit(0) exactly once per
// process; later calls return the same object. Thread-safe (std::call_once),
// so it may run on a libuv pool thread.
const CudaDriver& LoadCudaDriver();

// "CUDA_ERROR_NO_DEVICE" for 100, via cuGetErrorName when the driver has it.
std::string CudaStatusName(const CudaDriver& driver, CUresult status);

}  // namespace multirank
