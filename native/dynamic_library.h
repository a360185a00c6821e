// A dlopen()ed shared library with typed symbol lookup. The addon never links
// against CUDA: the driver and NVML are opened at run time so the same binary
// works on machines without them.
#pragma once

#include <string>

namespace multirank {

class DynamicLibrary {
 public:
  DynamicLibrary() = default;
  ~DynamicLibrary();
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;

  // Opens `path` (a soname like "libcuda.so.1" or a file path). Returns false
  // and fills error() with dlerror()'s text when it cannot be opened.
  bool Open(const std::string& path);
  bool IsOpen() const { return handle_ != nullptr; }
  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

  // Looks up `name`; nullptr when the library lacks it (never aborts).
  void* Symbol(const char* name) const;

  template <typename Fn>
  bool Resolve(const char* name, Fn* out) const {
    *out = reinterpret_cast<Fn>(Symbol(name));
    return *out != nullptr;
  }

 private:
  void* handle_ = nullptr;
  std::string path_;
  std::string error_;
};

// Reads an environment variable, falling back to `fallback` when unset or empty.
std::string EnvOr(const char* name, const std::string& fallback);

}  // namespace multirank
