#pragma once
// Small helpers the benchmark programs share: the median of timings, running the reference
// (Python) side of a benchmark with its standard output captured, the generated benchmark
// checkpoint, and the CPU a run measured.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace instseg::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

// Runs a shell command and returns its standard output; throws when it cannot start or fails.
inline std::string run_capture(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run: " + command);
  char buf[4096];
  while (fgets(buf, sizeof buf, pipe)) out += buf;
  if (pclose(pipe) != 0) throw std::runtime_error("failed: " + command);
  return out;
}

// The seeded torchvision checkpoint of bench/make_checkpoint.py for `variant` ("v1" or "v2"),
// written to the temp folder on first use and kept. The file name carries the recipe
// ("calibrated": batch-norm statistics measured on tiny_coco train images), so a file made by an
// older recipe is never picked up in its place.
inline std::string bench_checkpoint(const std::string& source_dir, const std::string& variant) {
  const auto path = std::filesystem::temp_directory_path() / ("instseg_bench_" + variant + "_calibrated.pth");
  if (!std::filesystem::exists(path)) {
    const auto partial = path.string() + ".partial";
    run_capture("/usr/bin/python3 " + source_dir + "/bench/make_checkpoint.py " + partial + " " + variant);
    std::filesystem::rename(partial, path);
  }
  return path.string();
}

// The CPU as /proc/cpuinfo names it, for the header of a benchmark's output. "model name" alone
// can be as vague as "Intel(R) Xeon(R) Processor" on a VM, so family / model / stepping come too,
// and whether each flag that decides the fast kernels (oneDNN's AVX-512, bf16, AMX) is exposed.
struct CpuInfo {
  std::string model = "unknown CPU";
  std::string family, model_number, stepping;  // as written there (decimal), empty when absent
  std::map<std::string, bool> flags;           // the flags asked for -> present

  // "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2); avx512f yes, avx512_bf16 yes, ..."
  std::string describe() const {
    std::ostringstream out;
    out << model;
    if (!family.empty()) out << " (family " << family << ", model " << model_number << ", stepping " << stepping << ")";
    const char* separator = "; ";
    for (const auto& [flag, present] : flags) {
      out << separator << flag << (present ? " yes" : " no");
      separator = ", ";
    }
    return out.str();
  }
};

inline CpuInfo cpu_info(const std::vector<std::string>& wanted_flags = {"avx512f", "avx512_bf16", "amx_bf16",
                                                                          "amx_tile"}) {
  CpuInfo info;
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  auto value_of = [](const std::string& l) {
    const auto colon = l.find(':');
    return colon == std::string::npos || colon + 2 > l.size() ? std::string() : l.substr(colon + 2);
  };
  auto key_of = [](const std::string& l) {
    const auto colon = l.find(':');
    if (colon == std::string::npos || colon == 0) return std::string();
    const auto end = l.find_last_not_of(" \t", colon - 1);
    return end == std::string::npos ? std::string() : l.substr(0, end + 1);
  };
  // The first processor's entries (every core of these VMs reports the same).
  while (std::getline(in, line)) {
    if (line.empty() && !flags.empty()) break;
    const std::string key = key_of(line);
    if (key == "model name") info.model = value_of(line);
    else if (key == "cpu family") info.family = value_of(line);
    else if (key == "model") info.model_number = value_of(line);
    else if (key == "stepping") info.stepping = value_of(line);
    else if (key == "flags") flags = " " + value_of(line) + " ";
  }
  for (const auto& flag : wanted_flags) info.flags[flag] = flags.find(" " + flag + " ") != std::string::npos;
  return info;
}

}  // namespace instseg::bench
