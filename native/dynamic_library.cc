#include "dynamic_library.h"

#include <dlfcn.h>

#include <cstdlib>

namespace multirank {

DynamicLibrary::~DynamicLibrary() {
  // Driver libraries are opened once per process and stay open: unloading
  // libcuda while a context is alive crashes at exit, so this only runs for
  // the failure paths where nothing was initialised.
  if (handle_ != nullptr) dlclose(handle_);
}

bool DynamicLibrary::Open(const std::string& path) {
  path_ = path;
  // RTLD_LOCAL keeps the driver's symbols out of the global namespace, so a
  // CUDA library the user loads later resolves the real driver on its own.
  handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* message = dlerror();
    error_ = message != nullptr ? message : (path + ": cannot be opened");
    return false;
  }
  return true;
}

void* DynamicLibrary::Symbol(const char* name) const {
  if (handle_ == nullptr) return nullptr;
  dlerror();  // clear any stale error so a null result is unambiguous
  return dlsym(handle_, name);
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? std::string(value) : fallback;
}

}  // namespace multirank
