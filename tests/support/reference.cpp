#include "support/reference.h"

#include <torch/serialize.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace instseg::testing {

std::string reference_dir(const std::string& script) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(INSTSEG_REFERENCE_DIR) / script;
  const fs::path stamp = dir / "done";
  const std::string source = source_path("tests/reference/" + script + ".py");
  // An edited script makes its cached values stale: the stamp must be newer than the script.
  const auto fresh = [&] { return fs::exists(stamp) && fs::last_write_time(stamp) > fs::last_write_time(source); };
  if (fresh()) return dir.string();
  fs::create_directories(dir);
  // flock serialises concurrent test processes; the script writes the stamp last.
  const std::string cmd = "flock '" + (dir / ".lock").string() + "' sh -c 'test \"" + stamp.string() + "\" -nt \"" +
                          source + "\" || (" INSTSEG_PYTHON " \"" + source + "\" \"" + dir.string() +
                          "\" && touch \"" + stamp.string() + "\")'";
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
