#include "instseg/checkpoint/load.h"

#include <torch/torch.h>

#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "instseg/errors.h"

namespace instseg {
namespace {

constexpr size_t kMaxListed = 10;  // per kind of problem; the count is always given

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_batch_counter(const std::string& key) { return ends_with(key, ".num_batches_tracked"); }

std::string shape(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void append_list(std::string& message, const std::vector<std::string>& items, const std::string& what) {
  if (items.empty()) return;
  message += "; " + std::to_string(items.size()) + " " + what + ": ";
  for (size_t i = 0; i < items.size() && i < kMaxListed; ++i) message += (i ? ", " : "") + items[i];
  if (items.size() > kMaxListed) message += ", ... (" + std::to_string(items.size() - kMaxListed) + " more)";
}

}  // namespace

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state_dict, const std::string& source,
                           const LoadOptions& options) {
  std::unordered_map<std::string, torch::Tensor> targets;
  std::vector<std::string> target_order;
  for (auto& [name, tensor] : module_state_dict(module)) {
    if (name.compare(0, options.scope.size(), options.scope) != 0) continue;
    targets.emplace(name, tensor);
    target_order.push_back(name);
  }

  LoadReport report;
  std::vector<std::string> mismatched;
  std::unordered_set<std::string> seen;
  for (const auto& [key, value] : state_dict) {
    auto it = targets.find(key);
    if (it == targets.end()) {
      if (!is_batch_counter(key)) report.unexpected.push_back("'" + key + "'");
      continue;
    }
    seen.insert(key);
    if (it->second.sizes() != value.sizes()) {
      mismatched.push_back("key '" + key + "' has shape " + shape(value) + ", model expects " + shape(it->second));
    }
  }
  for (const auto& name : target_order) {
    if (!seen.count(name) && !is_batch_counter(name)) report.missing.push_back("'" + name + "'");
  }

  const bool fatal = !mismatched.empty() || (options.strict && (!report.missing.empty() || !report.unexpected.empty()));
  if (fatal) {
    std::string message = source + ": state dict does not fit the model";
    if (!options.scope.empty()) message += " (under '" + options.scope + "')";
    append_list(message, mismatched, "mis-shaped");
    if (options.strict) {
      append_list(message, report.missing, "missing");
      append_list(message, report.unexpected, "unexpected");
    }
    throw CheckpointError(message);
  }

  // Nothing is copied unless everything fits, so a failed load leaves the module untouched.
  torch::NoGradGuard no_grad;
  for (const auto& [key, value] : state_dict) {
    auto it = targets.find(key);
    if (it == targets.end()) continue;
    it->second.copy_(value);
    ++report.loaded;
  }
  return report;
}

}  // namespace instseg
