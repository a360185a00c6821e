#include "errors.h"

#include <cerrno>

namespace multirank {

Napi::Error MakeNativeError(Napi::Env env, const std::string& message, const std::string& status, int errnum) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, "MULTIRANK_ERR_NATIVE"));
  error.Set("status", Napi::String::New(env, status));
  // Like Node's own system errors: a negative errno, so callers can compare
  // with os.constants.errno after negation.
  if (errnum != 0) error.Set("errno", Napi::Number::New(env, -errnum));
  return error;
}

Napi::Error MakeNativeError(Napi::Env env, const NativeFailure& failure) {
  return MakeNativeError(env, failure.message, failure.status, failure.errnum);
}

std::string ErrnoName(int errnum) {
  switch (errnum) {
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    default: return "ERRNO_" + std::to_string(errnum);
  }
}

Napi::Error MakeArgumentError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "MULTIRANK_ERR_INVALID_ARGUMENT"));
  return error;
}

}  // namespace multirank
