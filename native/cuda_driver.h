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
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using CUdeviceptr = unsigned long long;  // CUdeviceptr_v2: 64-bit on every platform we build for
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

  // Running a kernel (cuda_kernel.cc). Optional: discovery and pinning work
  // without them, so a driver lacking one is reported only by the kernel
  // check, through `kernelApiMissing`.
  CUresult (*cuCtxGetCurrent)(CUcontext*) = nullptr;
  CUresult (*cuCtxGetDevice)(CUdevice*) = nullptr;
  CUresult (*cuCtxSynchronize)() = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t) = nullptr;                   // cuMemAlloc_v2
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;                             // cuMemFree_v2
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;     // cuMemcpyHtoD_v2
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, size_t) = nullptr;           // cuMemcpyDtoH_v2
  CUresult (*cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,
                             unsigned int, unsigned int, CUstream, void**, void**) = nullptr;
  // The first kernel entry point the library lacks; empty when it has them all.
  std::string kernelApiMissing;

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

// nvidia-smi's form: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
std::string FormatCudaUuid(const CUuuid& uuid);

// "CUDA_ERROR_NO_DEVICE" for 100, via cuGetErrorName when the driver has it.
std::string CudaStatusName(const CudaDriver& driver, CUresult status);

}  // namespace multirank
