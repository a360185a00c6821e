// Native failures as JS errors. Every error the addon throws carries
// `code: "MULTIRANK_ERR_NATIVE"` and a `status` (a CUDA status name, an errno
// name such as "EINVAL", or a MULTIRANK_* pseudo-status); the TypeScript layer
// rebuilds them as NativeError.
#pragma once

#include <napi.h>

#include <string>

namespace multirank {

// A failure computed off the JS thread, turned into an error later.
struct NativeFailure {
  std::string message;
  std::string status;
  int errnum = 0;
};

Napi::Error MakeNativeError(Napi::Env env, const std::string& message, const std::string& status, int errnum = 0);
Napi::Error MakeNativeError(Napi::Env env, const NativeFailure& failure);

// "EINVAL" for EINVAL: the errno names the affinity and prctl calls can return.
std::string ErrnoName(int errnum);

// For argument checks at the boundary: a TypeError with code MULTIRANK_ERR_INVALID_ARGUMENT.
Napi::Error MakeArgumentError(Napi::Env env, const std::string& message);

}  // namespace multirank
