#include "shared_memory.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "errors.h"

namespace multirank {
namespace {

constexpr const char* kShmDir = "/dev/shm";
// Names become files in /dev/shm: NAME_MAX bytes at most.
constexpr size_t kMaxNameLength = 255;
// JS numbers are exact up to 2^53 - 1; sizes beyond that cannot be asked for exactly.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Every live mapping handed to JS, by an id that is never reused. The
// finalizer and shmClose both look mappings up here, so whichever runs second
// finds nothing and cannot unmap twice (or unmap a later mapping that the
// kernel placed at the same address). Worker threads share the table.
struct Mapping {
  void* address;
  size_t size;
};
std::mutex g_mutex;
std::unordered_map<uint64_t, Mapping> g_mappings;
uint64_t g_next_id = 1;

// Status names for the errnos these calls return; the rest via ErrnoName.
std::string StatusOf(int err) {
  switch (err) {
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EFBIG: return "EFBIG";
    case ENODEV: return "ENODEV";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOTDIR: return "ENOTDIR";
    case EROFS: return "EROFS";
    default: return ErrnoName(err);
  }
}

void ThrowErrno(Napi::Env env, const std::string& what, int err) {
  MakeNativeError(env, what + ": " + StatusOf(err) + " (" + std::strerror(err) + ")", StatusOf(err), err)
      .ThrowAsJavaScriptException();
}

// info[index] as a POSIX shared-memory name ("/name"); a leading "/" is optional.
bool PosixName(const Napi::CallbackInfo& info, size_t index, const char* fn, std::string* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsString()) {
    MakeArgumentError(env, std::string(fn) + ": name must be a string").ThrowAsJavaScriptException();
    return false;
  }
  std::string name = info[index].As<Napi::String>().Utf8Value();
  if (!name.empty() && name[0] == '/') name.erase(0, 1);
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name.size() > kMaxNameLength) {
    MakeArgumentError(env, std::string(fn) + ": name must be 1 to 255 bytes without \"/\" or NUL (got \"" + name + "\")")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = "/" + name;
  return true;
}

// 0 and the free bytes of `dir`, or the errno of statvfs.
int FreeBytesOf(const char* dir, uint64_t* free) {
  struct statvfs st;
  if (statvfs(dir, &st) != 0) return errno;
  *free = static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
  return 0;
}

std::string NoSpaceMessage(const std::string& name, uint64_t size) {
  uint64_t free = 0;
  const std::string freeText = FreeBytesOf(kShmDir, &free) == 0 ? std::to_string(free) : "an unknown number of";
  return "cannot create shared memory segment \"" + name.substr(1) + "\" of " + std::to_string(size) + " bytes: " +
         kShmDir + " has " + freeText + " bytes free";
}

// The id of the live mapping at `address` of `size` bytes, or 0 when there is none.
uint64_t MappingIdOf(const void* address, size_t size) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const auto& entry : g_mappings) {
    if (entry.second.address == address && entry.second.size == size) return entry.first;
  }
  return 0;
}

void Finalize(napi_env /*env*/, void* /*data*/, void* hint) {
  const uint64_t id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(hint));
  Mapping mapping{};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_mappings.find(id);
    if (it == g_mappings.end()) return;  // closed explicitly already
    mapping = it->second;
    g_mappings.erase(it);
  }
  munmap(mapping.address, mapping.size);
}

// Wraps a mapping as an external ArrayBuffer whose finalizer unmaps it. On
// failure throws, unmaps, and returns an empty value.
Napi::Value WrapMapping(Napi::Env env, void* address, size_t size) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    id = g_next_id++;
    g_mappings[id] = Mapping{address, size};
  }
  napi_value result = nullptr;
  const napi_status status = napi_create_external_arraybuffer(
      env, address, size, Finalize, reinterpret_cast<void*>(static_cast<uintptr_t>(id)), &result);
  if (status == napi_ok) return Napi::Value(env, result);
  // Node may already have queued the finalizer; taking the id out first makes it a no-op.
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_mappings.erase(id);
  }
  munmap(address, size);
  std::string detail;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value exception = nullptr;
    napi_get_and_clear_last_exception(env, &exception);
    detail = Napi::Value(env, exception).ToString().Utf8Value();
  }
  if (status == napi_no_external_buffers_allowed) {
    MakeNativeError(env,
                    "this runtime does not allow external ArrayBuffers (V8 sandbox), so shared memory cannot be "
                    "mapped into JS; use the file fallback",
                    "MULTIRANK_EXTERNAL_BUFFERS_FORBIDDEN")
        .ThrowAsJavaScriptException();
  } else {
    MakeNativeError(env,
                    "cannot wrap a shared memory mapping of " + std::to_string(size) +
                        " bytes as an ArrayBuffer (napi status " + std::to_string(status) + ")" +
                        (detail.empty() ? "" : ": " + detail),
                    "MULTIRANK_ARRAYBUFFER_FAILED")
        .ThrowAsJavaScriptException();
  }
  return Napi::Value();
}

int MapFlags(bool shared) {
  int flags = shared ? MAP_SHARED : MAP_PRIVATE;
#ifdef MAP_POPULATE
  // Fill the page tables now, not one fault per page in the first collective.
  // Never for private writable mappings: populating those breaks copy-on-write
  // and copies the whole segment.
  if (shared) flags |= MAP_POPULATE;
#endif
  return flags;
}

}  // namespace

Napi::Value ShmCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!PosixName(info, 0, "shmCreate", &name)) return env.Undefined();
  const double requested = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!(requested >= 1 && requested <= kMaxSafeInteger) || requested != static_cast<double>(static_cast<uint64_t>(requested)) ||
      static_cast<uint64_t>(requested) > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    MakeArgumentError(env, "shmCreate: size must be a positive integer number of bytes").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint64_t size = static_cast<uint64_t>(requested);

  // Refuse up front what cannot fit: tmpfs allocates lazily, and a page it
  // cannot allocate later is a SIGBUS in whoever touches it.
  uint64_t free = 0;
  if (FreeBytesOf(kShmDir, &free) == 0 && size > free) {
    MakeNativeError(env, NoSpaceMessage(name, size), "ENOSPC", ENOSPC).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    ThrowErrno(env, "shm_open(\"" + name.substr(1) + "\", O_CREAT | O_EXCL)", errno);
    return env.Undefined();
  }
  auto fail = [&](const std::string& what, int err) {
    close(fd);
    shm_unlink(name.c_str());
    if (err == ENOSPC) {
      MakeNativeError(env, NoSpaceMessage(name, size), "ENOSPC", ENOSPC).ThrowAsJavaScriptException();
    } else {
      ThrowErrno(env, what, err);
    }
    return env.Undefined();
  };
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return fail("ftruncate", errno);
#ifdef __linux__
  // Reserve the pages now, so a full /dev/shm is ENOSPC here. Filesystems
  // without fallocate (not tmpfs) just skip the reservation.
  if (fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    if (err != EOPNOTSUPP && err != ENOSYS) return fail("fallocate", err);
  }
#endif
  void* address = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MapFlags(true), fd, 0);
  if (address == MAP_FAILED) return fail("mmap", errno);
  close(fd);  // the mapping keeps the memory; the name keeps the segment findable
  Napi::Value result = WrapMapping(env, address, static_cast<size_t>(size));
  if (result.IsEmpty()) {
    shm_unlink(name.c_str());
    return env.Undefined();
  }
  return result;
}

Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!PosixName(info, 0, "shmOpen", &name)) return env.Undefined();
  if (info.Length() > 1 && !info[1].IsBoolean() && !info[1].IsUndefined()) {
    MakeArgumentError(env, "shmOpen: readOnly must be a boolean").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const bool readOnly = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  const int fd = shm_open(name.c_str(), readOnly ? O_RDONLY : O_RDWR, 0);
  if (fd < 0) {
    ThrowErrno(env, "shm_open(\"" + name.substr(1) + "\")", errno);
    return env.Undefined();
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    ThrowErrno(env, "fstat", err);
    return env.Undefined();
  }
  if (st.st_size <= 0) {
    close(fd);
    MakeNativeError(env, "shared memory segment \"" + name.substr(1) + "\" is empty", "EINVAL", EINVAL)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t size = static_cast<size_t>(st.st_size);
  // Read-only: a private copy-on-write mapping, writable so that a stray JS
  // write changes this process's copy instead of raising SIGSEGV.
  void* address = mmap(nullptr, size, PROT_READ | PROT_WRITE, MapFlags(!readOnly), fd, 0);
  const int err = errno;
  close(fd);
  if (address == MAP_FAILED) {
    ThrowErrno(env, "mmap", err);
    return env.Undefined();
  }
  Napi::Value result = WrapMapping(env, address, size);
  return result.IsEmpty() ? env.Undefined() : result;
}

Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!PosixName(info, 0, "shmUnlink", &name)) return env.Undefined();
  if (shm_unlink(name.c_str()) != 0) ThrowErrno(env, "shm_unlink(\"" + name.substr(1) + "\")", errno);
  return env.Undefined();
}

Napi::Value ShmClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    MakeArgumentError(env, "shmClose: buffer must be an ArrayBuffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  napi_value buffer = info[0];
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, buffer, &detached) != napi_ok || detached) return Napi::Boolean::New(env, false);
  void* data = nullptr;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, buffer, &data, &length) != napi_ok) return Napi::Boolean::New(env, false);
  const uint64_t id = MappingIdOf(data, length);
  if (id == 0) return Napi::Boolean::New(env, false);
  // Detach first: afterwards no view can reach the memory we unmap.
  const napi_status status = napi_detach_arraybuffer(env, buffer);
  if (status != napi_ok) {
    MakeNativeError(env, "shmClose: the ArrayBuffer cannot be detached (napi status " + std::to_string(status) + ")",
                    "MULTIRANK_NOT_DETACHABLE")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Mapping mapping{};
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_mappings.find(id);
    if (it != g_mappings.end()) {
      mapping = it->second;
      g_mappings.erase(it);
      found = true;
    }
  }
  if (found) munmap(mapping.address, mapping.size);
  return Napi::Boolean::New(env, true);
}

Napi::Value ShmRemap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArrayBuffer()) {
    MakeArgumentError(env, "shmRemap: buffer must be an ArrayBuffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name;
  if (!PosixName(info, 1, "shmRemap", &name)) return env.Undefined();
  napi_value buffer = info[0];
  bool detached = false;
  void* data = nullptr;
  size_t length = 0;
  if (napi_is_detached_arraybuffer(env, buffer, &detached) != napi_ok || detached ||
      napi_get_arraybuffer_info(env, buffer, &data, &length) != napi_ok) {
    MakeNativeError(env, "shmRemap: the buffer is detached or unreadable", "EINVAL", EINVAL).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // MAP_FIXED over memory that is not one of our mappings would corrupt the process.
  if (MappingIdOf(data, length) == 0) {
    MakeNativeError(env, "shmRemap: the buffer is not a live shared memory mapping", "EINVAL", EINVAL).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) {
    ThrowErrno(env, "shm_open(\"" + name.substr(1) + "\")", errno);
    return env.Undefined();
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != length) {
    const int err = errno;
    close(fd);
    MakeNativeError(env, "shmRemap: segment \"" + name.substr(1) + "\" is not " + std::to_string(length) + " bytes long", "EINVAL",
                    err ? err : EINVAL)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Map anew elsewhere, then move that mapping over the old one in one step
  // (mremap replaces the range atomically): a failure leaves the old mapping
  // as it was, never a hole. Same address, same length: the ArrayBuffer and
  // its views stay valid and now show the segment's current bytes; private
  // copies made by writes are dropped.
  void* fresh = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int mapErr = errno;
  close(fd);
  if (fresh == MAP_FAILED) {
    ThrowErrno(env, "mmap", mapErr);
    return env.Undefined();
  }
  void* moved = mremap(fresh, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, data);
  if (moved == MAP_FAILED) {
    const int err = errno;
    munmap(fresh, length);
    ThrowErrno(env, "mremap", err);
    return env.Undefined();
  }
  return env.Undefined();
}

Napi::Value ShmFreeBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = kShmDir;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) {
      MakeArgumentError(env, "shmFreeBytes: dir must be a string").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    dir = info[0].As<Napi::String>().Utf8Value();
  }
  uint64_t free = 0;
  const int err = FreeBytesOf(dir.c_str(), &free);
  if (err != 0) {
    ThrowErrno(env, "statvfs(\"" + dir + "\")", err);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(free));
}

}  // namespace multirank
