#include "parent_death.h"

#include <cerrno>

#ifdef __linux__
#include <sys/prctl.h>
#include <unistd.h>
#endif

#include "errors.h"

namespace multirank {

Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    MakeArgumentError(env, "setParentDeathSignal(signal, expectedParentPid): both must be numbers")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int signal = info[0].As<Napi::Number>().Int32Value();
  const int64_t expected = info[1].As<Napi::Number>().Int64Value();
  if (signal < 1 || signal > 64) {
    MakeArgumentError(env, "setParentDeathSignal: signal must be a signal number from 1 to 64")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
#ifdef __linux__
  // Note: the kernel fires this when the *thread* that forked us exits. Node
  // spawns children from its main thread, which lives as long as the runner.
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(signal), 0, 0, 0) != 0) {
    const int err = errno;
    MakeNativeError(env, "prctl(PR_SET_PDEATHSIG) failed: " + ErrnoName(err), ErrnoName(err), err)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, expected <= 0 || static_cast<int64_t>(getppid()) == expected);
#else
  MakeNativeError(env, "parent-death signals need Linux", "ENOSYS", ENOSYS).ThrowAsJavaScriptException();
  return env.Undefined();
#endif
}

Napi::Value GetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef __linux__
  int signal = 0;
  if (prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0) != 0) {
    const int err = errno;
    MakeNativeError(env, "prctl(PR_GET_PDEATHSIG) failed: " + ErrnoName(err), ErrnoName(err), err)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, signal);
#else
  return Napi::Number::New(env, 0);
#endif
}

}  // namespace multirank
