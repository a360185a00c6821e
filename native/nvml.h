// NVML, opened at run time from libnvidia-ml.so.1 (or MULTIRANK_NVML_LIBRARY /
// MULTIRANK_FAKE_DRIVER), used only to learn which CPU cores are local to a GPU.
#pragma once

#include <string>
#include <vector>

namespace multirank {

// CPU cores NVML reports as local to the GPU at `pciBusId` ("0000:3b:00.0").
// Returns false (and leaves `cpus` empty) when NVML is missing or the call
// fails; `why` then says what happened. NVML is initialised once and kept.
// Thread-safe: may run on a libuv pool thread.
bool NvmlLocalCpus(const std::string& pciBusId, std::vector<int>* cpus, std::string* why);

// The same from sysfs: <root>/<pciBusId>/local_cpulist, where root is
// MULTIRANK_SYSFS_PCI_ROOT or /sys/bus/pci/devices. Thread-safe.
bool SysfsLocalCpus(const std::string& pciBusId, std::vector<int>* cpus, std::string* why);

// Parses a kernel cpulist ("0-3,8,10-11"); false on malformed input.
bool ParseCpuList(const std::string& text, std::vector<int>* cpus);

}  // namespace multirank
