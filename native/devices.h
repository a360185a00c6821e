// CUDA device discovery and making a device current, over the dlopen()ed
// driver (cuda_driver.h) and NVML/sysfs for CPU locality (nvml.h).
#pragma once

#include <napi.h>

namespace multirank {

// cudaAvailability(): { available: true, driverVersion, deviceCount, library }
// or { available: false, reason, status, libraryMissing }. Never throws.
Napi::Value CudaAvailability(const Napi::CallbackInfo& info);

// listDevices(withCpus: boolean): DeviceInfo[]. [] when the driver library is
// absent; throws (code MULTIRANK_ERR_NATIVE, status) when it is present but fails.
Napi::Value ListDevices(const Napi::CallbackInfo& info);

// listDevicesAsync(withCpus: boolean): Promise<DeviceInfo[]>, the same on a
// libuv pool thread (cuInit can take seconds on a cold GPU).
Napi::Value ListDevicesAsync(const Napi::CallbackInfo& info);

// makeDeviceCurrent(index: number): void. Retains the device's primary context
// and makes it current on the calling (JS main) thread, so CUDA libraries
// loaded later use this device. Throws CUDA_ERROR_INVALID_DEVICE when out of range.
Napi::Value MakeDeviceCurrent(const Napi::CallbackInfo& info);

}  // namespace multirank
