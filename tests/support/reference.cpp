#include "support/reference.h"

#include <torch/serialize.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace instseg::testing {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("reference: cannot read " + path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// FNV-1a, 64 bit: stable across runs and compilers (std::hash is not).
class Fnv {
 public:
  void add(const std::string& bytes) {
    for (const unsigned char c : bytes) h_ = (h_ ^ c) * 0x100000001b3ULL;
    h_ = (h_ ^ 0xff) * 0x100000001b3ULL;  // separator: ("ab","c") != ("a","bc")
  }
  std::string hex() const {
    char s[17];
    std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h_));
    return s;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

// Folders a reference script imports local modules from: its own and bench/ (make_checkpoint.py).
const std::vector<fs::path>& module_dirs() {
  static const std::vector<fs::path> dirs{source_path("tests/reference"), source_path("bench")};
  return dirs;
}

// The script, every local module it imports (transitively), and every repository file or folder it
// declares on a "# reference-inputs: <path> ..." line.
void add_script(const fs::path& script, Fnv& key, std::set<fs::path>& seen) {
  if (!seen.insert(script).second) return;
  const std::string text = read_all(script);
  key.add(script.filename().string());
  key.add(text);
  static const std::regex import_re(R"(^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*))");
  static const std::regex inputs_re(R"(^#\s*reference-inputs:(.*)$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, import_re)) {
      for (const auto& dir : module_dirs()) {
        const fs::path module = dir / (m[1].str() + ".py");
        if (fs::exists(module)) add_script(module, key, seen);
      }
    } else if (std::regex_search(line, m, inputs_re)) {
      std::istringstream paths(m[1].str());
      for (std::string relative; paths >> relative;) {
        const fs::path input = source_path(relative);
        if (!fs::exists(input)) {
          throw std::runtime_error(script.string() + ": declared reference input " + relative + " does not exist");
        }
        std::vector<fs::path> files;
        if (fs::is_directory(input)) {
          for (const auto& e : fs::recursive_directory_iterator(input)) {
            if (e.is_regular_file()) files.push_back(e.path());
          }
          std::sort(files.begin(), files.end());
        } else {
          files.push_back(input);
        }
        for (const auto& f : files) {
          key.add(fs::relative(f, source_path("")).string());
          key.add(read_all(f));
        }
      }
    }
  }
}

// What the cached values depend on; a change to any part reruns the script.
std::string cache_key(const fs::path& script) {
  Fnv key;
  std::set<fs::path> seen;
  add_script(script, key, seen);
  // The installed torch / torchvision (their version.py files; folders found when CMake configured, ':'-separated).
  std::istringstream packages(INSTSEG_REFERENCE_PACKAGES);
  for (std::string dir; std::getline(packages, dir, ':');) {
    const fs::path version = fs::path(dir) / "version.py";
    key.add(fs::exists(version) ? read_all(version) : "missing " + version.string());
  }
  return key.hex();
}

}  // namespace

std::string reference_dir(const std::string& script) {
  const fs::path dir = fs::path(INSTSEG_REFERENCE_DIR) / script;
  const fs::path stamp = dir / "done";
  const fs::path source = source_path("tests/reference/" + script + ".py");
  const std::string key = cache_key(source);
  const auto fresh = [&] { return fs::exists(stamp) && read_all(stamp) == key + "\n"; };
  if (fresh()) return dir.string();
  fs::create_directories(dir);
  // flock serialises concurrent test processes; stale outputs are removed before the script runs
  // and the stamp (holding the key) is written last.
  const std::string quoted_stamp = "'" + stamp.string() + "'";
  const std::string cmd = "flock '" + (dir / ".lock").string() + "' sh -c \"test \\\"\\$(cat " + quoted_stamp +
                          " 2>/dev/null)\\\" = " + key + " || (find '" + dir.string() +
                          "' -mindepth 1 ! -name .lock -delete && " INSTSEG_PYTHON " '" + source.string() + "' '" +
                          dir.string() + "' && echo " + key + " > " + quoted_stamp + ")\"";
  if (std::system(cmd.c_str()) != 0 || !fresh()) {
    throw std::runtime_error("reference script failed: " + cmd);
  }
  return dir.string();
}

std::map<std::string, torch::Tensor> load_tensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto dict = torch::pickle_load(bytes).toGenericDict();
  std::map<std::string, torch::Tensor> out;
  for (const auto& entry : dict) out[entry.key().toStringRef()] = entry.value().toTensor();
  return out;
}

std::string source_path(const std::string& relative) {
  return std::string(INSTSEG_SOURCE_DIR) + "/" + relative;
}

}  // namespace instseg::testing
