#include "affinity.h"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef __linux__
#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "errors.h"

namespace multirank {
namespace {

#ifdef __linux__
constexpr int kMaxCpus = 1 << 16;

// sched_setaffinity(0) only changes the calling thread; threads Node already
// started (libuv pool, V8 platform workers) keep the old mask. Walk
// /proc/self/task and set every thread, the way taskset -a does.
int SetAllThreads(const cpu_set_t* set, size_t size) {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return sched_setaffinity(0, size, set) == 0 ? 0 : errno;
  int first = 0;
  bool any = false;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const pid_t tid = static_cast<pid_t>(std::strtol(entry->d_name, nullptr, 10));
    if (tid <= 0) continue;
    if (sched_setaffinity(tid, size, set) == 0) {
      any = true;
    } else if (errno != ESRCH && first == 0) {  // ESRCH: the thread just exited
      first = errno;
    }
  }
  closedir(dir);
  if (!any && first == 0) first = ESRCH;
  return any && first == 0 ? 0 : first;
}
#endif

void ThrowErrno(Napi::Env env, const std::string& call, int errnum) {
  MakeNativeError(env, call + " failed: " + ErrnoName(errnum), ErrnoName(errnum), errnum).ThrowAsJavaScriptException();
}

}  // namespace

Napi::Value SetCpuAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    MakeArgumentError(env, "setCpuAffinity: cpus must be an array of CPU numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array array = info[0].As<Napi::Array>();
  std::vector<int> cpus;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value value = array.Get(i);
    if (env.IsExceptionPending()) return env.Undefined();
    const double cpu = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
    if (!(cpu >= 0 && cpu < 65536) || cpu != static_cast<double>(static_cast<int>(cpu))) {
      MakeArgumentError(env, "setCpuAffinity: cpus[" + std::to_string(i) + "] must be an integer from 0 to 65535")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cpus.push_back(static_cast<int>(cpu));
  }
  if (cpus.empty()) {
    MakeArgumentError(env, "setCpuAffinity: cpus must not be empty").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#ifdef __linux__
  int highest = 0;
  for (int cpu : cpus) highest = cpu > highest ? cpu : highest;
  cpu_set_t* set = CPU_ALLOC(highest + 1);
  const size_t size = CPU_ALLOC_SIZE(highest + 1);
  CPU_ZERO_S(size, set);
  for (int cpu : cpus) CPU_SET_S(cpu, size, set);
  const int rc = SetAllThreads(set, size);
  CPU_FREE(set);
  if (rc != 0) ThrowErrno(env, "sched_setaffinity", rc);
#else
  ThrowErrno(env, "sched_setaffinity", ENOSYS);
#endif
  return env.Undefined();
}

Napi::Value GetCpuAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef __linux__
  // The kernel's mask may be wider than CPU_SETSIZE; grow until it fits.
  for (int count = 1024; count <= kMaxCpus; count *= 2) {
    cpu_set_t* set = CPU_ALLOC(count);
    const size_t size = CPU_ALLOC_SIZE(count);
    CPU_ZERO_S(size, set);
    if (sched_getaffinity(0, size, set) != 0) {
      const int err = errno;
      CPU_FREE(set);
      if (err == EINVAL) continue;
      ThrowErrno(env, "sched_getaffinity", err);
      return env.Undefined();
    }
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    for (int cpu = 0; cpu < count; ++cpu) {
      if (CPU_ISSET_S(cpu, size, set)) out.Set(n++, cpu);
    }
    CPU_FREE(set);
    return out;
  }
  ThrowErrno(env, "sched_getaffinity", EINVAL);
#else
  ThrowErrno(env, "sched_getaffinity", ENOSYS);
#endif
  return env.Undefined();
}

}  // namespace multirank
