#include "nvml.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "dynamic_library.h"

namespace multirank {
namespace {

using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;

struct Nvml {
  DynamicLibrary library;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*byPciBusId)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*cpuAffinity)(nvmlDevice_t, unsigned int, unsigned long*) = nullptr;
  bool ready = false;
  std::string why;
};

const Nvml& LoadNvml() {
  // Leaked on purpose, like the CUDA driver: no nvmlShutdown/dlclose at exit,
  // where other libraries may still be using NVML.
  static Nvml* nvml = new Nvml();
  static std::once_flag once;
  std::call_once(once, [] {
    Nvml& n = *nvml;
    const std::string path =
        EnvOr("MULTIRANK_NVML_LIBRARY", EnvOr("MULTIRANK_FAKE_DRIVER", "libnvidia-ml.so.1"));
    if (!n.library.Open(path)) {
      n.why = path + " not found (" + n.library.error() + ")";
      return;
    }
    if (!n.library.Resolve("nvmlInit_v2", &n.init) ||
        !n.library.Resolve("nvmlDeviceGetHandleByPciBusId_v2", &n.byPciBusId) ||
        !n.library.Resolve("nvmlDeviceGetCpuAffinity", &n.cpuAffinity)) {
      n.why = path + " lacks an NVML symbol the addon needs";
      return;
    }
    const nvmlReturn_t rc = n.init();
    if (rc != 0) {
      n.why = "nvmlInit_v2 failed with status " + std::to_string(rc);
      return;
    }
    n.ready = true;
  });
  return *nvml;
}

}  // namespace

bool NvmlLocalCpus(const std::string& pciBusId, std::vector<int>* cpus, std::string* why) {
  cpus->clear();
  const Nvml& n = LoadNvml();
  if (!n.ready) {
    *why = n.why;
    return false;
  }
  nvmlDevice_t device = nullptr;
  nvmlReturn_t rc = n.byPciBusId(pciBusId.c_str(), &device);
  if (rc != 0) {
    *why = "nvmlDeviceGetHandleByPciBusId_v2(" + pciBusId + ") failed with status " + std::to_string(rc);
    return false;
  }
  // 64 words of 64 bits covers 4096 CPUs, more than any machine we target.
  constexpr unsigned int kWords = 64;
  unsigned long mask[kWords] = {};
  rc = n.cpuAffinity(device, kWords, mask);
  if (rc != 0) {
    *why = "nvmlDeviceGetCpuAffinity failed with status " + std::to_string(rc);
    return false;
  }
  constexpr int kBits = static_cast<int>(sizeof(unsigned long) * 8);
  for (unsigned int word = 0; word < kWords; ++word) {
    for (int bit = 0; bit < kBits; ++bit) {
      if ((mask[word] >> bit) & 1UL) cpus->push_back(static_cast<int>(word) * kBits + bit);
    }
  }
  return !cpus->empty();
}

bool SysfsLocalCpus(const std::string& pciBusId, std::vector<int>* cpus, std::string* why) {
  cpus->clear();
  const std::string path = EnvOr("MULTIRANK_SYSFS_PCI_ROOT", "/sys/bus/pci/devices") + "/" + pciBusId + "/local_cpulist";
  std::ifstream file(path);
  std::string text;
  if (!file || !std::getline(file, text)) {
    *why = "cannot read " + path;
    return false;
  }
  if (!ParseCpuList(text, cpus) || cpus->empty()) {
    *why = "cannot parse " + path + ": '" + text + "'";
    cpus->clear();
    return false;
  }
  return true;
}

bool ParseCpuList(const std::string& text, std::vector<int>* cpus) {
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    part.erase(std::remove_if(part.begin(), part.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r'; }),
               part.end());
    if (part.empty()) continue;
    char* end = nullptr;
    errno = 0;
    const long first = std::strtol(part.c_str(), &end, 10);
    long last = first;
    if (*end == '-') last = std::strtol(end + 1, &end, 10);
    if (errno != 0 || *end != '\0' || first < 0 || last < first || last > 1 << 20) return false;
    for (long cpu = first; cpu <= last; ++cpu) cpus->push_back(static_cast<int>(cpu));
  }
  std::sort(cpus->begin(), cpus->end());
  cpus->erase(std::unique(cpus->begin(), cpus->end()), cpus->end());
  return true;
}

}  // namespace multirank
