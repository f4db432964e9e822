#include <ATen/Version.h>
#include <torch/version.h>

#include <fstream>
#include <opencv2/core/version.hpp>
#include <sstream>
#include <string>

#include "instseg/cli/commands.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg::cli {

namespace {

// The CPU's "flags" line of /proc/cpuinfo, padded with spaces so that " name " finds a whole flag;
// empty where there is none (not Linux).
std::string cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0) return " " + line.substr(line.find(':') + 1) + " ";
  }
  return {};
}

bool has_flag(const std::string& flags, const char* name) { return flags.find(" " + std::string(name) + " ") != std::string::npos; }

const char* yes_no(bool b) { return b ? "yes" : "no"; }

// The instruction set LibTorch picked for its vectorised CPU kernels (ATEN_CPU_CAPABILITY can
// lower it), as its build summary states it ("CPU capability usage: AVX2"); its query function is
// not exported by the shared library.
std::string kernel_capability() {
  std::istringstream config(at::show_config());
  const std::string key = "CPU capability usage: ";
  for (std::string line; std::getline(config, line);) {
    const size_t pos = line.find(key);
    if (pos != std::string::npos) return line.substr(pos + key.size());
  }
  return "unknown";
}

}  // namespace

std::string version_report(const std::string& instseg_version) {
  const std::string flags = cpu_flags();
  bool avx2 = has_flag(flags, "avx2"), avx512 = has_flag(flags, "avx512f");
#if defined(__x86_64__) || defined(__i386__)
  // Without /proc/cpuinfo, ask the CPU (which may list what the OS does not enable).
  if (flags.empty()) {
    avx2 = __builtin_cpu_supports("avx2");
    avx512 = __builtin_cpu_supports("avx512f");
  }
#endif
  const bool bf16 = ops::cpu_has_native_bf16();
  std::ostringstream out;
  out << "instseg " << instseg_version << "\n"
      << "LibTorch " << TORCH_VERSION << " (CPU kernels: " << kernel_capability() << "; " << at::get_mkldnn_version()
      << ")\n"
      << "OpenCV " << CV_VERSION << "\n"
      << "CPU: AVX2 " << yes_no(avx2) << ", AVX-512 " << yes_no(avx512) << ", AVX-512 BF16 " << yes_no(bf16)
      << ", AMX " << yes_no(has_flag(flags, "amx_tile") && has_flag(flags, "amx_bf16")) << "\n"
      << "bfloat16: " << (bf16 ? "native (optim.precision auto trains in bf16)" : "emulated (optim.precision auto trains in fp32)");
  return out.str();
}

}  // namespace instseg::cli
