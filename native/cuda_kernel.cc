#include "cuda_kernel.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cuda_driver.h"
#include "errors.h"

namespace multirank {

// Written by hand (what nvcc -ptx emits for the obvious CUDA C, give or take
// register numbering) for the oldest target every supported driver still
// JIT-compiles: PTX ISA 6.0 (CUDA 9) and sm_52, so Maxwell through Hopper and
// later load the same text. Keep `.entry vecAdd` and the parameter order in
// step with the launch below and the fake driver's check.
const char kVecAddPtx[] = R"PTX(.version 6.0
.target sm_52
.address_size 64

.visible .entry vecAdd(
  .param .u64 vecAdd_a,
  .param .u64 vecAdd_b,
  .param .u64 vecAdd_c,
  .param .u32 vecAdd_n
)
{
  .reg .pred %p<2>;
  .reg .f32 %f<4>;
  .reg .b32 %r<6>;
  .reg .b64 %rd<11>;

  ld.param.u64 %rd1, [vecAdd_a];
  ld.param.u64 %rd2, [vecAdd_b];
  ld.param.u64 %rd3, [vecAdd_c];
  ld.param.u32 %r2, [vecAdd_n];
  mov.u32 %r3, %ctaid.x;
  mov.u32 %r4, %ntid.x;
  mov.u32 %r5, %tid.x;
  mad.lo.s32 %r1, %r3, %r4, %r5;
  setp.ge.s32 %p1, %r1, %r2;
  @%p1 bra $L_done;
  mul.wide.s32 %rd4, %r1, 4;
  cvta.to.global.u64 %rd5, %rd1;
  add.s64 %rd6, %rd5, %rd4;
  ld.global.f32 %f1, [%rd6];
  cvta.to.global.u64 %rd7, %rd2;
  add.s64 %rd8, %rd7, %rd4;
  ld.global.f32 %f2, [%rd8];
  add.rn.f32 %f3, %f1, %f2;
  cvta.to.global.u64 %rd9, %rd3;
  add.s64 %rd10, %rd9, %rd4;
  st.global.f32 [%rd10], %f3;
$L_done:
  ret;
}
)PTX";

namespace {

constexpr int kMaxElements = 1 << 24;  // floats stay exact integers/quarters up to here
constexpr unsigned kBlock = 256;

struct CurrentDevice {
  CUdevice index = 0;
  std::string uuid;
};

// Throws and returns false when the driver cannot run kernels here.
bool RequireKernelApi(Napi::Env env, const CudaDriver& d) {
  if (!d.available) {
    MakeNativeError(env, "CUDA is not available: " + d.reason, d.status).ThrowAsJavaScriptException();
    return false;
  }
  if (!d.kernelApiMissing.empty()) {
    MakeNativeError(env, d.library.path() + " lacks the symbol " + d.kernelApiMissing + ", needed to run a kernel",
                    "MULTIRANK_SYMBOL_NOT_FOUND")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

bool Fail(Napi::Env env, const CudaDriver& d, CUresult rc, const std::string& call, const std::string& where) {
  if (rc == kCudaSuccess) return false;
  const std::string status = CudaStatusName(d, rc);
  MakeNativeError(env, call + " failed" + where + ": " + status, status).ThrowAsJavaScriptException();
  return true;
}

// The device of the calling thread's current context; throws when there is none.
bool QueryCurrentDevice(Napi::Env env, const CudaDriver& d, CurrentDevice* out) {
  CUcontext context = nullptr;
  if (Fail(env, d, d.cuCtxGetCurrent(&context), "cuCtxGetCurrent", "")) return false;
  if (context == nullptr) {
    MakeNativeError(env,
                    "no CUDA context is current on this thread: pin the process to a device first "
                    "(a rank on a CUDA device has one)",
                    "CUDA_ERROR_INVALID_CONTEXT")
        .ThrowAsJavaScriptException();
    return false;
  }
  if (Fail(env, d, d.cuCtxGetDevice(&out->index), "cuCtxGetDevice", "")) return false;
  CUuuid uuid = {};
  if (Fail(env, d, d.cuDeviceGetUuid(&uuid, out->index), "cuDeviceGetUuid",
           " for device " + std::to_string(out->index))) {
    return false;
  }
  out->uuid = FormatCudaUuid(uuid);
  return true;
}

// What the check allocated, released on every path out (errors ignored: the
// first failure is the one worth reporting).
class KernelResources {
 public:
  explicit KernelResources(const CudaDriver& d) : d_(d) {}
  ~KernelResources() {
    for (CUdeviceptr p : buffers) d_.cuMemFree(p);
    if (module != nullptr) d_.cuModuleUnload(module);
  }
  KernelResources(const KernelResources&) = delete;
  KernelResources& operator=(const KernelResources&) = delete;

  std::vector<CUdeviceptr> buffers;
  CUmodule module = nullptr;

 private:
  const CudaDriver& d_;
};

}  // namespace

Napi::Value CudaCurrentDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaDriver& d = LoadCudaDriver();
  CurrentDevice current;
  if (!RequireKernelApi(env, d) || !QueryCurrentDevice(env, d, &current)) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", current.index);
  o.Set("uuid", current.uuid);
  return o;
}

Napi::Value CudaVectorAddCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    MakeArgumentError(env, "cudaVectorAddCheck: n must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double raw = info[0].As<Napi::Number>().DoubleValue();
  if (!(raw >= 1 && raw <= kMaxElements) || raw != std::floor(raw)) {
    MakeArgumentError(env, "cudaVectorAddCheck: n must be an integer from 1 to " + std::to_string(kMaxElements))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int n = static_cast<int>(raw);
  const CudaDriver& d = LoadCudaDriver();
  CurrentDevice current;
  if (!RequireKernelApi(env, d) || !QueryCurrentDevice(env, d, &current)) return env.Undefined();
  const std::string where = " on device " + std::to_string(current.index) + " (" + current.uuid + ")";

  // Exact in float (small multiples of 0.25), so the device's correctly
  // rounded add must match the host's bit for bit. c starts as NaN on both
  // sides: a kernel that never ran cannot pass.
  std::vector<float> a(n), b(n), c(n, std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i % 4096) * 0.5f;
    b[i] = static_cast<float>((n - i) % 8192) * 0.25f;
  }
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  const auto started = std::chrono::steady_clock::now();
  {
    KernelResources held(d);
    CUdeviceptr buffers[3] = {};
    for (CUdeviceptr& p : buffers) {
      if (Fail(env, d, d.cuMemAlloc(&p, bytes), "cuMemAlloc_v2", where)) return env.Undefined();
      held.buffers.push_back(p);
    }
    if (Fail(env, d, d.cuMemcpyHtoD(buffers[0], a.data(), bytes), "cuMemcpyHtoD_v2", where) ||
        Fail(env, d, d.cuMemcpyHtoD(buffers[1], b.data(), bytes), "cuMemcpyHtoD_v2", where) ||
        Fail(env, d, d.cuMemcpyHtoD(buffers[2], c.data(), bytes), "cuMemcpyHtoD_v2", where) ||
        Fail(env, d, d.cuModuleLoadData(&held.module, kVecAddPtx), "cuModuleLoadData", where)) {
      return env.Undefined();
    }
    CUfunction function = nullptr;
    if (Fail(env, d, d.cuModuleGetFunction(&function, held.module, "vecAdd"), "cuModuleGetFunction", where)) {
      return env.Undefined();
    }
    int count = n;
    void* params[] = {&buffers[0], &buffers[1], &buffers[2], &count};
    const unsigned grid = (static_cast<unsigned>(n) + kBlock - 1) / kBlock;
    if (Fail(env, d, d.cuLaunchKernel(function, grid, 1, 1, kBlock, 1, 1, 0, nullptr, params, nullptr),
             "cuLaunchKernel", where) ||
        Fail(env, d, d.cuCtxSynchronize(), "cuCtxSynchronize", where) ||
        Fail(env, d, d.cuMemcpyDtoH(c.data(), buffers[2], bytes), "cuMemcpyDtoH_v2", where)) {
      return env.Undefined();
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

  double maxError = 0;
  for (int i = 0; i < n; ++i) {
    const double error = std::fabs(static_cast<double>(c[i]) - static_cast<double>(a[i] + b[i]));
    // NaN compares false: count it as the worst error instead of skipping it.
    if (!(error <= maxError)) maxError = std::isnan(error) ? std::numeric_limits<double>::infinity() : error;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", maxError == 0);
  o.Set("n", n);
  o.Set("maxError", maxError);
  o.Set("index", current.index);
  o.Set("uuid", current.uuid);
  o.Set("ms", ms);
  return o;
}

Napi::Value CudaVecAddPtx(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kVecAddPtx); }

}  // namespace multirank
