#include "devices.h"

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_driver.h"
#include "errors.h"
#include "nvml.h"

namespace multirank {
namespace {

struct DeviceInfo {
  int index = 0;
  std::string name;
  std::string uuid;
  std::string pciBusId;
  double totalMemory = 0;  // bytes; exact in a double up to 8 PiB
  int ccMajor = 0;
  int ccMinor = 0;
  std::vector<int> cpus;
  std::string cpuSource;  // "nvml", "sysfs" or "none"
};

// The driver says "0000:3B:00.0" (some versions "00000000:3B:00.0"); sysfs and
// lspci say "0000:3b:00.0". Use the sysfs form everywhere so the fallback path
// and users' own tools agree.
std::string NormalizePciBusId(const std::string& raw) {
  std::string id;
  for (char c : raw) id.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  const size_t colon = id.find(':');
  if (colon != std::string::npos && colon > 4 && id.find(':', colon + 1) != std::string::npos) {
    const std::string domain = id.substr(0, colon);
    const size_t firstNonZero = domain.find_first_not_of('0');
    const std::string trimmed = firstNonZero == std::string::npos ? "" : domain.substr(firstNonZero);
    if (trimmed.size() <= 4) id = std::string(4 - trimmed.size(), '0') + trimmed + id.substr(colon);
  }
  return id;
}

bool Check(const CudaDriver& d, CUresult rc, const char* call, int index, NativeFailure* failure) {
  if (rc == kCudaSuccess) return true;
  failure->status = CudaStatusName(d, rc);
  failure->message = std::string(call) + " failed for device " + std::to_string(index) + ": " + failure->status;
  return false;
}

// Fills `failure` from a driver that did not load or initialise.
void UnavailableFailure(const CudaDriver& d, NativeFailure* failure) {
  failure->status = d.status;
  failure->message = "CUDA is not available: " + d.reason;
}

// Runs on the JS thread or a libuv pool thread (ListDevicesAsync): touches no
// JS values, only the driver, NVML and sysfs.
bool QueryDevices(bool withCpus, std::vector<DeviceInfo>* out, NativeFailure* failure) {
  const CudaDriver& d = LoadCudaDriver();
  if (!d.available) {
    if (d.libraryMissing) return true;  // no driver installed: no devices, not an error
    UnavailableFailure(d, failure);
    return false;
  }
  for (int i = 0; i < d.deviceCount; ++i) {
    DeviceInfo info;
    info.index = i;
    CUdevice dev = 0;
    if (!Check(d, d.cuDeviceGet(&dev, i), "cuDeviceGet", i, failure)) return false;

    char name[256] = {};
    if (!Check(d, d.cuDeviceGetName(name, sizeof(name) - 1, dev), "cuDeviceGetName", i, failure)) return false;
    info.name = name;

    CUuuid uuid = {};
    if (!Check(d, d.cuDeviceGetUuid(&uuid, dev), "cuDeviceGetUuid", i, failure)) return false;
    info.uuid = FormatCudaUuid(uuid);

    char bus[64] = {};
    if (!Check(d, d.cuDeviceGetPCIBusId(bus, sizeof(bus) - 1, dev), "cuDeviceGetPCIBusId", i, failure)) return false;
    info.pciBusId = NormalizePciBusId(bus);

    size_t bytes = 0;
    if (!Check(d, d.cuDeviceTotalMem(&bytes, dev), "cuDeviceTotalMem_v2", i, failure)) return false;
    info.totalMemory = static_cast<double>(bytes);

    if (!Check(d, d.cuDeviceGetAttribute(&info.ccMajor, kAttrComputeCapabilityMajor, dev), "cuDeviceGetAttribute",
               i, failure) ||
        !Check(d, d.cuDeviceGetAttribute(&info.ccMinor, kAttrComputeCapabilityMinor, dev), "cuDeviceGetAttribute",
               i, failure)) {
      return false;
    }

    info.cpuSource = "none";
    if (withCpus) {
      // Locality is a hint: when neither source knows, the plan falls back to
      // an even split of the allowed cores instead of failing.
      std::string why;
      if (NvmlLocalCpus(info.pciBusId, &info.cpus, &why)) {
        info.cpuSource = "nvml";
      } else if (SysfsLocalCpus(info.pciBusId, &info.cpus, &why)) {
        info.cpuSource = "sysfs";
      }
    }
    out->push_back(std::move(info));
  }
  return true;
}

Napi::Array ToJs(Napi::Env env, const std::vector<DeviceInfo>& devices) {
  Napi::Array list = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    const DeviceInfo& info = devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", info.index);
    o.Set("name", info.name);
    o.Set("uuid", info.uuid);
    o.Set("pciBusId", info.pciBusId);
    o.Set("totalMemory", info.totalMemory);
    Napi::Array cc = Napi::Array::New(env, 2);
    cc.Set(0u, info.ccMajor);
    cc.Set(1u, info.ccMinor);
    o.Set("computeCapability", cc);
    Napi::Array cpus = Napi::Array::New(env, info.cpus.size());
    for (size_t c = 0; c < info.cpus.size(); ++c) cpus.Set(static_cast<uint32_t>(c), info.cpus[c]);
    o.Set("cpus", cpus);
    o.Set("cpuSource", info.cpuSource);
    list.Set(static_cast<uint32_t>(i), o);
  }
  return list;
}

bool ReadWithCpus(const Napi::CallbackInfo& info, bool* withCpus) {
  if (info.Length() == 0 || info[0].IsUndefined()) {
    *withCpus = true;
    return true;
  }
  if (!info[0].IsBoolean()) {
    MakeArgumentError(info.Env(), "listDevices: withCpus must be a boolean").ThrowAsJavaScriptException();
    return false;
  }
  *withCpus = info[0].As<Napi::Boolean>().Value();
  return true;
}

class ListDevicesWorker : public Napi::AsyncWorker {
 public:
  ListDevicesWorker(Napi::Env env, bool withCpus)
      : Napi::AsyncWorker(env, "multirank.listDevices"), withCpus_(withCpus), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  // Runs on a libuv pool thread: no JS values here.
  void Execute() override { ok_ = QueryDevices(withCpus_, &devices_, &failure_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (ok_) {
      deferred_.Resolve(ToJs(env, devices_));
    } else {
      deferred_.Reject(MakeNativeError(env, failure_).Value());
    }
  }

 private:
  bool withCpus_;
  bool ok_ = false;
  std::vector<DeviceInfo> devices_;
  NativeFailure failure_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

Napi::Value CudaAvailability(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaDriver& d = LoadCudaDriver();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", d.available);
  o.Set("library", d.library.path());
  if (d.available) {
    o.Set("driverVersion", d.driverVersion);
    o.Set("deviceCount", d.deviceCount);
  } else {
    o.Set("reason", d.reason);
    o.Set("status", d.status);
    o.Set("libraryMissing", d.libraryMissing);
  }
  return o;
}

Napi::Value ListDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool withCpus = true;
  if (!ReadWithCpus(info, &withCpus)) return env.Undefined();
  std::vector<DeviceInfo> devices;
  NativeFailure failure;
  if (!QueryDevices(withCpus, &devices, &failure)) {
    MakeNativeError(env, failure).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return ToJs(env, devices);
}

Napi::Value ListDevicesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool withCpus = true;
  if (!ReadWithCpus(info, &withCpus)) return env.Undefined();
  auto* worker = new ListDevicesWorker(env, withCpus);  // deletes itself after OnOK
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value MakeDeviceCurrent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    MakeArgumentError(env, "makeDeviceCurrent: index must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double raw = info[0].As<Napi::Number>().DoubleValue();
  const CudaDriver& d = LoadCudaDriver();
  NativeFailure failure;
  if (!d.available) {
    UnavailableFailure(d, &failure);
    MakeNativeError(env, failure).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!(raw >= 0 && raw < d.deviceCount) || raw != static_cast<double>(static_cast<int>(raw))) {
    char shown[32];
    std::snprintf(shown, sizeof(shown), "%g", raw);
    MakeNativeError(env,
                    std::string("device index ") + shown + " is out of range: the driver reports " +
                        std::to_string(d.deviceCount) + " device(s)",
                    "CUDA_ERROR_INVALID_DEVICE")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int index = static_cast<int>(raw);
  CUdevice dev = 0;
  CUcontext context = nullptr;
  // The retained primary context is never released: it must outlive every
  // CUDA library the rank loads later, i.e. the process.
  if (!Check(d, d.cuDeviceGet(&dev, index), "cuDeviceGet", index, &failure) ||
      !Check(d, d.cuDevicePrimaryCtxRetain(&context, dev), "cuDevicePrimaryCtxRetain", index, &failure) ||
      !Check(d, d.cuCtxSetCurrent(context), "cuCtxSetCurrent", index, &failure)) {
    MakeNativeError(env, failure).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace multirank
